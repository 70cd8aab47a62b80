"""Runs `notebooks/03_layer_modules.ipynb` end to end on its tiny configuration (nbclient)."""

import re

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

from tests.notebooks.notebook_tools import NOTEBOOKS, cell_outputs, execute

DEEPARC = NOTEBOOKS / "03_layer_modules.ipynb"


def _stdout(nb) -> str:
    outputs = cell_outputs(nb)
    return "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")


def _pngs(nb):
    return [
        o for o in cell_outputs(nb) if o.output_type == "display_data" and "image/png" in o.data
    ]


def test_committed_deeparc_notebook_holds_the_outputs_of_a_normal_run():
    nb = nbformat.read(DEEPARC, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "run all cells"
    assert not [o for o in cell_outputs(nb) if o.output_type == "error"]
    text = _stdout(nb)
    assert "[TINY]" not in text and "resnet20" in text, text
    assert len(re.findall(r"^theta=0\.\d\d: \d+ modules, modularity ", text, re.MULTILINE)) == 2
    assert re.search(r"^4 removed \[.*\]: accuracy ", text, re.MULTILINE), text
    assert "parameters trained: " in text
    assert len(_pngs(nb)) == 4  # heatmap, modularity, removal, repair
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and params[0] is code[0]
    for name in ("RUN_DIR", "DATA_DIR", "THRESHOLDS", "MAX_REMOVE", "OUTPUT_DIR", "TINY"):
        assert re.search(rf"^{name} = ", params[0].source, re.MULTILINE), name


@pytest.mark.slow
def test_deeparc_notebook_tiny(tmp_path):
    nb = execute(DEEPARC, OUTPUT_DIR=str(tmp_path))
    assert not [o for o in cell_outputs(nb) if o.output_type == "error"]
    text = _stdout(nb)
    assert "[TINY]" in text and "resnet14" in text
    assert len(re.findall(r"^theta=0\.\d\d: \d+ modules", text, re.MULTILINE)) == 2
    assert re.search(r"^2 removed \[\d+, \d+\]: accuracy ", text, re.MULTILINE), text
    assert len(_pngs(nb)) == 4
    for name in (
        "arch/cka.csv",
        "arch/cka.png",
        "arch/modules.json",
        "shrink/shrink.csv",
        "repair/repair.json",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
