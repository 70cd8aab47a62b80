"""Test set-up: 8 fake CPU devices and fast compiles, before any JAX operation."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_disable_most_optimizations", True)

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def optimized_compiles():
    """XLA's optimizations back on for one test (the suite turns most off for compile speed).

    Under `jax_disable_most_optimizations`, XLA:CPU in jaxlib 0.10.2 returns wrong conv kernel
    gradients when BatchNorm (train mode) follows the conv: 10x off a float64 central difference
    on LeNet5 with BN, exact without the flag. Tests that judge gradients against a reference
    computed by JAX itself must use this fixture, or both sides are wrong alike.
    """
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


def _shared_datasets() -> pathlib.Path | None:
    env = os.environ.get("MODJAX_DATA_DIR")
    for cand in ([pathlib.Path(env)] if env else []) + [REPO.parent / "shared" / "datasets"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def real_data_dir() -> pathlib.Path:
    """The directory of real datasets (`MODJAX_DATA_DIR` or `../shared/datasets`); skips if absent."""
    path = _shared_datasets()
    if path is None:
        pytest.skip("real datasets not found: set MODJAX_DATA_DIR or place ../shared/datasets")
    return path
