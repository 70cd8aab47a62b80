"""Runs `notebooks/02_composing_modules.ipynb` on its tiny configuration and checks its results."""

import pathlib
import re

import pytest

from tests.test_notebooks import _kernel_env, _outputs

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "02_composing_modules.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") for c in code)
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1


@pytest.mark.slow
def test_composition_notebook_tiny(monkeypatch):
    for key, value in _kernel_env().items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError on any failing cell
    outputs = [o for o in _outputs(nb)]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert any("image/png" in o.get("data", {}) for o in outputs)
    match = re.search(r"composed accuracy: ([0-9.]+) on (\d+) test samples \((\d+) classes from "
                      r"(\d+) parents", text)
    assert match, text[-2000:]
    accuracy, samples, classes, parents = match.groups()
    assert 0.0 <= float(accuracy) <= 1.0 and int(samples) > 0
    assert int(classes) == 6 and int(parents) == 2
    speed = re.search(r"one-by-one / fused time on a batch of \d+: ([0-9.]+)x", text)
    assert speed and float(speed.group(1)) > 0
