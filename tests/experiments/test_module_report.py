"""python -m experiments.module_report: the smoke report on a MODA run's modules."""

import importlib

import pytest

from modjax.runs import config as config_lib
from modjax.runs.pipeline import run_pipeline
from tests.conftest import REPO

module_report = importlib.import_module("experiments.module_report.__main__")
SMOKE = REPO / "experiments" / "module_report" / "configs" / "smoke.py"


@pytest.mark.slow
def test_smoke_report(tmp_path, capsys):
    values = config_lib.load_config_file(REPO / "experiments" / "configs" / "smoke_moda.py")
    run_pipeline(config_lib.from_dict(values), tmp_path / "run", classes=(3, 8), progress=False)
    out = tmp_path / "report.md"
    args = ["--modules", str(tmp_path / "run" / "modules"), "--config", str(SMOKE)]
    assert module_report.main([*args, "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Modules of mlp") and "moda" in text.splitlines()[0]
    assert "overlap over 45 class pairs: MODA definition" in text
    lines = text.splitlines()
    header = next(line.split() for line in lines if line.strip().startswith("class"))
    assert header[3:5] == ["relative_macs", "relative_flops"]
    row = next(line.split() for line in lines if line.strip().startswith("3 "))
    assert 0 < float(row[3]) <= 1 and 0 < float(row[4]) <= 1  # a one-class MODA module
    assert next(line for line in lines if line.startswith("Parent: ")).endswith(
        "XLA FLOPs (compiled forward pass) per example."
    )
    task_line = next(line for line in text.splitlines() if line.strip().startswith("3,8"))
    parent, composed, one_by_one = (float(v) for v in task_line.split()[1:4])
    assert 0 <= parent <= 1 and 0 <= composed <= 1 and 0 <= one_by_one <= 1
    assert text in capsys.readouterr().out
