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
