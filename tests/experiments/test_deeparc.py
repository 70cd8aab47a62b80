"""python -m experiments.deeparc: configs (train + analysis), the smoke protocol end to end."""

import importlib
import json

import pytest

from modjax.runs import config as config_lib
from tests.conftest import REPO

deeparc = importlib.import_module("experiments.deeparc.__main__")
CONFIGS = REPO / "experiments" / "deeparc" / "configs"


def test_every_config_has_train_and_every_analysis_setting():
    for path in sorted(CONFIGS.glob("*.py")):
        config, settings = deeparc.load(str(path), None)
        assert list(settings) == list(deeparc.ANALYSIS), path.name
        assert config.model.startswith("resnet")


def test_cpu_r56_resumes_the_background_run_with_its_settings():
    """The training settings stored in runs/deeparc_cpu_r56 (then experiments/configs/
    deeparc_cpu_r56.py): the new config must give the same `TrainConfig`, or resuming fails."""
    config, settings = deeparc.load(str(CONFIGS / "cpu_r56.py"), "../shared/datasets")
    assert config == config_lib.from_dict(
        dict(model="resnet56", width=0.5, dataset="cifar10", num_epochs=24,
             global_batch_size=128, learning_rate=0.05, weight_decay=5e-4, log_every=50,
             eval_every=4, checkpoint_every=100, keep_checkpoints=2,
             data_dir="../shared/datasets")
    )  # fmt: skip
    cpu = deeparc.load(str(CONFIGS / "cpu.py"), None)[1]
    assert settings == {**cpu, "finetune_epochs": 1} and cpu["finetune_epochs"] == 0
    assert settings["repair_max_share"] == 0.2 and settings["cka_examples"] == 1024


def test_a_config_without_analysis_is_refused(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("def get_config():\n    return {'train': {'model': 'resnet20'}}\n")
    with pytest.raises(SystemExit, match=r"needs 'train' and 'analysis'"):
        deeparc.load(str(path), None)


@pytest.mark.slow
def test_smoke_protocol_train_analyze_report(tmp_path):
    work, results = tmp_path / "work", tmp_path / "deeparc.md"
    args = ["--config", str(CONFIGS / "smoke.py"), "--workdir", str(work), "--no-progress"]
    assert deeparc.main([*args, "--results", str(results)]) == 0
    result = json.loads((work / "analysis" / "results.json").read_text())
    assert result["settings"]["passes"] == 1 and result["step"] > 0
    assert {"sweep", "adjacent_cka"} <= set(result["arch"]) and result["shrink"]["search"]
    text = results.read_text()
    assert "# DeepArc reproduction" in text and "`python -m experiments.deeparc`" in text
    assert (tmp_path / "deeparc_cka.csv").is_file()
    results.unlink()
    assert deeparc.main([*args, "--results", str(results), "--stage", "report"]) == 0
    assert results.read_text() == text
