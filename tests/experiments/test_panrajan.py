"""python -m experiments.panrajan: fse20, kmnist and icse22 on their smoke configs."""

import importlib
import json

import pytest

from modjax.runs import config as config_lib
from tests.conftest import REPO

panrajan = importlib.import_module("experiments.panrajan.__main__")
CONFIGS = REPO / "experiments" / "panrajan" / "configs"


@pytest.mark.parametrize("command", ["fse20", "kmnist", "icse22"])
def test_help_explains_every_flag(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        panrajan.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"python -m experiments.panrajan {command}" in out and "--config" in out


def test_icse22_configs_keep_the_committed_recipe():
    from experiments.panrajan import icse22

    config, settings = icse22.load(str(CONFIGS / "icse22_cpu.py"), None)
    assert (config.model, config.width, config.num_epochs, config.learning_rate) == (
        "resnet20_nobn", 0.5, 10, 0.02
    )  # fmt: skip
    assert settings["positives"] == 300 and settings["replace_confidence"] == 0.3
    receiver, _ = icse22.load(str(CONFIGS / "icse22_cpu_r32.py"), None)
    assert receiver.model == "resnet32_nobn" and receiver.num_epochs == 6
    assert receiver.train_examples == config.train_examples == 20_000


def test_a_config_with_unknown_keys_is_refused(tmp_path, capsys):
    bad = dict(config_lib.load_config_file(CONFIGS / "kmnist_smoke.py"), epochz=3)
    path = tmp_path / "bad.py"
    path.write_text(f"def get_config():\n    return {bad!r}\n")
    with pytest.raises(SystemExit, match=r"keys missing or unknown \['epochz'\]"):
        panrajan.main(["kmnist", "--config", str(path), "--workdir", str(tmp_path)])


@pytest.mark.slow
def test_fse20_smoke(tmp_path):
    work, results = tmp_path / "work", tmp_path / "fse20"
    args = ["fse20", "--config", str(CONFIGS / "fse20_smoke.py"), "--workdir", str(work)]
    assert panrajan.main([*args, "--results", str(results)]) == 0
    assert {p.name for p in (work / "results").glob("*.json")} == {
        "MNIST-1.json", "MNIST-4.json", "FMNIST-1.json", "FMNIST-4.json", "reuse_replace.json"
    }  # fmt: skip
    rr = json.loads((work / "results" / "reuse_replace.json").read_text())
    assert len(rr["intra"]["MNIST"]["ma"]) == 2 and len(rr["inter"]["ma"]) == 3
    assert rr["inter"]["tma_pairs"] == [[0, 0], [0, 1], [0, 2]]  # all inter pairs trained
    text = results.with_suffix(".md").read_text()
    assert "`python -m experiments.panrajan fse20`" in text and "| MNIST-4 |" in text
    assert results.with_suffix(".csv").is_file()


@pytest.mark.slow
def test_kmnist_smoke_and_report_stage(tmp_path):
    work, results = tmp_path / "work", tmp_path / "kmnist.md"
    args = ["kmnist", "--config", str(CONFIGS / "kmnist_smoke.py"), "--workdir", str(work)]
    assert panrajan.main([*args, "--results", str(results)]) == 0
    result = json.loads((work / "results.json").read_text())
    assert set(result["rows"]) == {"KMNIST-1", "KMNIST-2", "KMNIST-3", "KMNIST-4"}
    assert [e["k"] for e in result["inter"]] == list(range(10))
    text = results.read_text()
    results.unlink()
    assert panrajan.main([*args, "--results", str(results), "--stage", "report"]) == 0
    assert results.read_text() == text


@pytest.mark.slow
def test_icse22_smoke_with_replacement(tmp_path):
    work, results = tmp_path / "work", tmp_path / "icse22.md"
    smoke = str(CONFIGS / "icse22_smoke.py")
    args = ["icse22", "--config", smoke, "--workdir", str(work), "--no-progress"]
    assert panrajan.main([*args, "--results", str(results)]) == 0
    result = json.loads((work / "decompose" / "results.json").read_text())
    assert result["scale"] == "icse22_smoke" and set(result["variants"]) == {"c", "bln"}
    assert len(result["reuse"]) == 2
    args += ["--stage", "replace", "--receiver-config", smoke, "--results", str(results)]
    assert panrajan.main(args) == 0
    result = json.loads((work / "decompose" / "results.json").read_text())
    assert [row["class"] for row in result["replacement"]["rows"]] == list(range(10))
    assert "## Intra replacement (Table 4)" in results.read_text()
    # The JI diagnosis on the same parent: TI only re-activates, fewer positives zero more.
    out = tmp_path / "ji.json"
    argv = ["ji", "--workdir", str(work / "train"), "--out", str(out), "--positives", "16"]
    assert panrajan.main([*argv, "--confidence", "0", "--counts", "4"]) == 0
    ji = json.loads(out.read_text())
    assert ji["layers"][0]["point"] == "stem" and len(ji["layers"]) == 1 + 2 * 9
    for row in ji["layers"]:
        assert row["final_inactive"] <= row["ci_inactive"] + 1e-9, row
        assert row["ci_inactive_by_count"]["4"] >= row["ci_inactive"] - 1e-9, row
        assert 0 <= row["ji_positions"] <= 1 and 0 <= row["ji_ci_only"] <= 1
    assert ji["final_inactive_all"] <= ji["ci_inactive_all"]
    assert (tmp_path / "ji.md").read_text().startswith("| point | positions |")
