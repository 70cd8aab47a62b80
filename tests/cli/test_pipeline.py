"""`modjax pipeline`: train → modules → composed classifier in one workdir, resumable."""

import json
import re

import jax
import numpy as np
import pytest

from modjax.cli import main
from modjax.modules import export
from modjax.runs import training
from tests.conftest import REPO

SMOKE_MODA = str(REPO / "experiments" / "configs" / "smoke_moda.py")


def test_pipeline_trains_modularizes_composes_and_exports(tmp_path, capsys):
    workdir = tmp_path / "run"
    argv = [
        "pipeline",
        "--config",
        SMOKE_MODA,
        "--workdir",
        str(workdir),
        "--no-progress",
        "--classes",
        "3,8",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for text in (
        "parent (mlp, 10 classes)",
        "module 9",
        "parent restricted to the sub-task",
        "composed from modules",
        "composed.jaxexport",
    ):
        assert text in out
    result = json.loads((workdir / "pipeline.json").read_text())
    assert result["classes"] == [3, 8]
    assert sorted(p.name for p in (workdir / "modules").iterdir() if p.is_dir()) == sorted(
        f"class_{c}" for c in range(10)
    )
    assert 0 < result["composed_size"]["relative_params"] < 1
    assert 0.0 <= result["composed_accuracy"] <= 1.0
    # The restricted parent against a one-shot reference: argmax over the task's logit columns.
    restored = training.load_run(workdir)
    images, labels = restored.test_data
    sel = np.isin(labels, [3, 8])
    x = restored.preprocess(images[sel], jax.random.key(0))
    logits = np.asarray(restored.model.apply(restored.variables, x, train=False)[0])
    expected = np.mean(np.array([3, 8])[logits[:, [3, 8]].argmax(-1)] == labels[sel])
    assert result["restricted_accuracy"] == pytest.approx(expected, abs=1e-12)
    # The exported file classifies alone: its outputs are the composed classes.
    predict, meta = export.load_classifier(workdir / "composed.jaxexport")
    assert meta["classes"] == [3, 8]
    assert np.asarray(predict(np.zeros((2, 8, 8, 1), np.float32))).shape == (2, 2)
    # A second run resumes every stage and reports the same numbers.
    assert main(argv) == 0
    again = json.loads((workdir / "pipeline.json").read_text())
    assert again["composed_accuracy"] == result["composed_accuracy"]
    assert again["step"] == result["step"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--classes", "3"], "at least 2 distinct class ids"),
        (["--classes", "3,42"], r"in \[0, 10\)"),
        (["--classes", "a,b"], "comma-separated class ids"),
        (
            ["--method", "standard"],
            r"the pipeline needs a run trained with one of \['mwt', 'moda'\]",
        ),
    ],
)
def test_pipeline_bad_input_is_refused_before_work(tmp_path, capsys, extra, message):
    workdir = tmp_path / "run"
    try:
        code = main(["pipeline", "--config", SMOKE_MODA, "--workdir", str(workdir), *extra])
    except SystemExit as exit_:  # argparse rejects a malformed flag value itself
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(message, err), err
    assert not workdir.exists()
