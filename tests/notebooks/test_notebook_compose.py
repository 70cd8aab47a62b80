"""Runs `notebooks/02_composing_modules.ipynb` end to end on its tiny configuration (nbclient)."""

import re

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

from tests.notebooks.notebook_tools import NOTEBOOKS, cell_outputs, execute  # noqa: E402

COMPOSE = NOTEBOOKS / "02_composing_modules.ipynb"
# Injected after the parameters cell: 2 + 3 digit modules, ids 0..4 after relabel.
CLASSES_A, CLASSES_B = [1, 4], [5, 8, 9]


def test_committed_compose_notebook_holds_the_outputs_of_a_normal_run():
    nb = nbformat.read(COMPOSE, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    # Committed executed (not in tiny mode), all cells in order, so its figure shows on GitHub.
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "run all cells"
    outputs = cell_outputs(nb)
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert "[TINY]" not in text and "composed accuracy: " in text, text
    assert any(o.output_type == "display_data" and "image/png" in o.data for o in outputs)
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and params[0] is code[0]
    for name in ("DATA_DIR", "DATASET_A", "DATASET_B", "CLASSES_A", "CLASSES_B",
                 "DIGITS_CLASSES_A", "DIGITS_CLASSES_B", "EPOCHS", "OUTPUT_DIR", "TINY"):
        assert re.search(rf"^{name} = ", params[0].source, re.M), name


@pytest.mark.slow
def test_compose_notebook_tiny(tmp_path):
    nb = execute(
        COMPOSE, DIGITS_CLASSES_A=CLASSES_A, DIGITS_CLASSES_B=CLASSES_B, OUTPUT_DIR=str(tmp_path)
    )

    outputs = cell_outputs(nb)
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert "[TINY]" in text and "digits[0-4]" in text and "digits[5-9]" in text, text

    k = len(CLASSES_A) + len(CLASSES_B)
    found = re.search(
        r"composed accuracy: ([0-9.]+) on (\d+) test samples \((\d+) classes from (\d+) parents",
        text,
    )
    assert found, text
    accuracy, count, classes, num_parents = found.groups()
    assert 0.0 <= float(accuracy) <= 1.0
    assert int(count) > 0 and int(classes) == k and int(num_parents) == 2
    ids = re.search(r"composed classes: \[([0-9, ]+)\]", text)
    assert ids and [int(i) for i in ids.group(1).split(",")] == list(range(k)), text

    # One row per composed class in the accuracy table: id, dataset, class, n, 4 accuracies.
    rows = re.findall(r"^\s*(\d+)\s+(digits\[\d-\d\])\s+(\d)\s+(\d+)((?:\s+[0-9.]+){4})$",
                      text, re.M)
    assert [int(r[2]) for r in rows] == CLASSES_A + CLASSES_B, text
    for r in rows:
        assert all(0.0 <= float(a) <= 1.0 for a in r[4].split())

    assert re.search(r"one-by-one / fused time on a batch of \d+: [0-9.]+x", text), text
    pngs = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert pngs
    assert (tmp_path / "module_sizes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
