"""Runs the notebooks in `notebooks/` end to end on their tiny configuration (nbclient)."""

import re

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

from tests.notebooks.notebook_tools import NOTEBOOKS, cell_outputs, execute  # noqa: E402

MODULAR = NOTEBOOKS / "01_modular_training.ipynb"
from modjax.modules import registry  # noqa: E402
from modjax.runs.config import methods as _train_methods  # noqa: E402


def methods() -> tuple[str, ...]:
    """The notebook's rows: `standard` and every objective whose modules are cut (a training-only
    objective such as NeMo, whose modules come later, is not in the notebook)."""
    return tuple(m for m in _train_methods() if m == "standard" or m in registry.methods())


FIGURES = (
    "mwt_mask_frequency",
    "moda_activation_frequency",
    "moda_mean_activation",
    "per_layer_means",
)


def _results_table(text: str) -> dict[str, tuple[float, str]]:
    """`{method: (test_acc, kernel_rate cell)}` from the printed results table."""
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["method", "test_acc"])
    rows = {}
    for line in lines[header + 1 :]:
        fields = line.split()
        if len(fields) != 5 or fields[0] not in methods():
            break
        rows[fields[0]] = (float(fields[1]), fields[2])
    return rows


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The modular-training notebook executed in tiny mode, and its OUTPUT_DIR."""
    out = tmp_path_factory.mktemp("figures")
    nb = execute(MODULAR, OUTPUT_DIR=str(out))
    return nb, out


def test_committed_notebook_holds_the_outputs_of_a_normal_run():
    nb = nbformat.read(MODULAR, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    # Committed executed (not in tiny mode), all cells in order, so its figures show on GitHub.
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "run all cells"
    outputs = cell_outputs(nb)
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert "[TINY]" not in text and sorted(_results_table(text)) == sorted(methods()), text
    pngs = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(pngs) == len(FIGURES)
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and params[0] is code[0]
    for name in (
        "DATA_DIR",
        "DATASET",
        "MODEL",
        "WIDTH",
        "IMAGE_SIZE",
        "TRAIN_EXAMPLES",
        "EPOCHS",
        "BATCH",
        "OUTPUT_DIR",
        "TINY",
    ):
        assert re.search(rf"^{name} = ", params[0].source, re.M), name


@pytest.mark.slow
def test_modular_training_notebook_tiny(executed):
    nb, out = executed
    outputs = cell_outputs(nb)
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
    assert "[TINY]" in text and "digits" in text

    rows = _results_table(text)
    assert sorted(rows) == sorted(methods()), text
    for method, (accuracy, _) in rows.items():
        # 48 steps on real digits: each method learns something (chance is 0.1).
        assert 0.15 < accuracy <= 1.0, (method, accuracy)
    assert rows["standard"][1] == rows["moda"][1] == "-"
    kernel_rate = float(rows["mwt"][1])
    assert 0.0 < kernel_rate <= 1.0

    pngs = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(pngs) == len(FIGURES)  # three heatmaps and the per-layer summary

    # OUTPUT_DIR: each figure saved with its data; frequencies are [classes, units] in [0, 1].
    for stem in FIGURES:
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem
    with np.load(out / "mwt_mask_frequency.npz") as mwt:
        assert list(mwt) == ["conv_1"]  # LeNet-5's only masked layer
        assert mwt["conv_1"].shape == (10, 8)  # 16 kernels x width 0.5
        assert np.all((0 <= mwt["conv_1"]) & (mwt["conv_1"] <= 1))
    with np.load(out / "moda_activation_frequency.npz") as moda:
        assert list(moda) == ["conv_0", "conv_1", "fc_0", "fc_1"]
        for f in moda.values():
            assert f.shape[0] == 10 and np.all((0 <= f) & (f <= 1))
    with np.load(out / "moda_mean_activation.npz") as relative:
        for f in relative.values():  # each live unit's class means over its largest one
            assert np.all((0 <= f) & (f <= 1 + 1e-12))
            assert np.allclose(f.max(axis=0)[f.max(axis=0) > 0], 1.0)
    with np.load(out / "per_layer_means.npz") as summary:
        # The table's kernel rate is the class-weighted mean of the per-class MwT means.
        assert summary["mwt"].shape == (10, 1)
        assert summary["moda"].shape == summary["moda_mean_act"].shape == (10, 4)
        assert summary["mwt"].min() <= kernel_rate + 1e-4
        assert summary["mwt"].max() >= kernel_rate - 1e-4
