"""Helpers for the notebook tests: tiny-mode kernel environment, parameter injection, execution."""

import os
import pathlib
import re

import nbformat

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[2] / "notebooks"


def kernel_env() -> dict[str, str]:
    """The test process's environment for the kernel, tiny mode, without 8 fake devices."""
    env = dict(os.environ)
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = flags.strip()
    env.update(
        MODJAX_NOTEBOOK_TINY="1",
        MPLBACKEND="Agg",
        JAX_PLATFORMS="cpu",
        JAX_DISABLE_MOST_OPTIMIZATIONS="1",  # fast compiles, as in conftest.py
    )
    return env


def with_parameters(nb, **values):
    """Papermill-style injection: a cell assigning `values` right after the `parameters` cell."""
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    return nb


def cell_outputs(nb):
    """Every output of every code cell, in order."""
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def execute(path: pathlib.Path, **parameters):
    """Runs the notebook at `path` in tiny mode with `parameters` injected; returns it executed.

    Raises nbclient's CellExecutionError on the first failing cell.
    """
    import nbclient

    nb = with_parameters(nbformat.read(path, as_version=4), **parameters)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute(env=kernel_env())
    return nb
