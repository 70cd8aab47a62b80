"""End-to-end tests of `modjax modularize` and `modjax compose` on the smoke MODA run."""

import json
import shutil

import pytest

from modjax.cli import main
from tests.conftest import REPO

SMOKE_MODA = str(REPO / "experiments" / "configs" / "smoke_moda.py")


@pytest.fixture(scope="module")
def moda_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("moda") / "run"
    assert main(["train", "--config", SMOKE_MODA, "--workdir", str(workdir), "--no-progress"]) == 0
    return workdir


def test_modularize_then_compose_two_classes(moda_run, tmp_path, capsys):
    mods = tmp_path / "mods"
    code = main(["modularize", "--workdir", str(moda_run), "--out", str(mods), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((mods / "modules.json").read_text())
    assert len(summary["classes"]) == 10 and summary["method"] == "moda"
    for row in summary["classes"]:
        assert (mods / f"class_{row['class']}" / "manifest.json").is_file()
        assert 0 < row["unit_retention"] <= 1 and 0 < row["weight_retention"] <= 1
    manifest = json.loads((mods / "class_3" / "manifest.json").read_text())
    assert manifest["parent"]["checkpoint"] == str(moda_run.resolve())
    assert "class" in capsys.readouterr().out

    out = tmp_path / "result.json"
    code = main([
        "compose", "--modules", str(mods / "class_3"), str(mods / "class_1"),
        "--calibrate", "--out", str(out),
    ])
    assert code == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["classes"] == [1, 3] and result["calibrated"]
    assert 0.0 <= result["accuracy"] <= 1.0 and result["count"] > 0
    assert [r["class"] for r in result["per_class"]] == [1, 3]
    assert len(result["groups"]) == 1
    assert 0 < result["size"]["relative_params"] < 1
    assert "accuracy" in capsys.readouterr().out

    # Errors: exit 2, a clear message, nothing written.
    bad = tmp_path / "bad.json"
    assert main(["compose", "--modules", str(mods / "class_3"), "--relabel", "x", "--out",
                 str(bad)]) == 2
    assert "DATASET:CLASS=NEW" in capsys.readouterr().err and not bad.exists()
    foreign = json.loads((mods / "class_1" / "manifest.json").read_text())
    foreign["parent"]["checkpoint"] = str(tmp_path / "nowhere")
    moved = tmp_path / "foreign"
    shutil.copytree(mods / "class_1", moved)
    (moved / "manifest.json").write_text(json.dumps(foreign))
    assert main(["compose", "--modules", str(mods / "class_3"), str(moved), "--out",
                 str(bad)]) == 2
    assert "unknown parent" in capsys.readouterr().err and not bad.exists()
    # The output directory exists: refused before any work.
    assert main(["modularize", "--workdir", str(moda_run), "--out", str(mods)]) == 2
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize("threshold", ["0", "1.5", "-0.1"])
def test_bad_threshold_exits_2_and_writes_nothing(tmp_path, capsys, threshold):
    out = tmp_path / "mods"
    code = main(["modularize", "--workdir", str(tmp_path), "--threshold", threshold,
                 "--out", str(out)])
    assert code == 2
    assert "threshold" in capsys.readouterr().err and not out.exists()


def test_modularize_needs_a_modular_run(tmp_path, capsys):
    code = main(["modularize", "--workdir", str(tmp_path / "none"), "--out", str(tmp_path / "m")])
    assert code == 2 and "config.json" in capsys.readouterr().err


def test_help_explains_every_option(capsys):
    for command in ("modularize", "compose"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        for flag in ("--out", "--data-dir"):
            assert flag in text
    parser_actions = []
    from modjax.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for command in ("modularize", "compose"):
        parser_actions = sub.choices[command]._actions
        assert all(a.help for a in parser_actions), command


SMOKE = str(REPO / "experiments" / "configs" / "smoke.py")


@pytest.fixture(scope="module")
def weak_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("weak") / "run"
    assert main(["train", "--config", SMOKE, "--workdir", str(workdir), "--no-progress",
                 "--train-examples", "144"]) == 0
    return workdir


def test_replace_end_to_end_and_bad_target(moda_run, weak_run, tmp_path, capsys):
    mods = tmp_path / "mods"
    assert main(["modularize", "--workdir", str(moda_run), "--out", str(mods),
                 "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "replace.json"
    code = main(["replace", "--weak-workdir", str(weak_run), "--module", str(mods / "class_3"),
                 "--target-class", "3", "--epochs", "2", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "moda_adapter" in text and "cnnsplitter" in text and "TC | mean non-TC" in text
    result = json.loads(out.read_text())
    assert result["target_class"] == 3 and result["strong_class"] == 3
    assert len(result["per_class"]) == 10 and result["per_class"][3]["name"].endswith("(TC)")
    assert result["strong_min"] <= result["strong_max"]
    for name in ("cnnsplitter", "moda_adapter"):
        assert set(result["change"][name]) == {"tc", "mean_non_tc"}
        assert 0.0 <= result["accuracy"][name] <= 1.0

    bad = tmp_path / "bad.json"
    for args, message in (
        (["--target-class", "10"], "--target-class=10"),
        (["--target-class", "3", "--epochs", "0"], "--epochs"),
    ):
        code = main(["replace", "--weak-workdir", str(weak_run), "--module",
                     str(mods / "class_3"), "--out", str(bad), *args])
        assert code == 2
        assert message in capsys.readouterr().err and not bad.exists()
    code = main(["replace", "--weak-workdir", str(tmp_path / "none"), "--module",
                 str(mods / "class_3"), "--target-class", "0"])
    assert code == 2 and "config.json" in capsys.readouterr().err


def test_replace_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["replace", "--help"])
    text = capsys.readouterr().out
    for flag in ("--weak-workdir", "--module", "--target-class", "--epochs", "--out"):
        assert flag in text
    from modjax.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert all(a.help for a in sub.choices["replace"]._actions)


SMOKE_MWT = str(REPO / "experiments" / "configs" / "smoke_mwt.py")


def test_compose_finetunes_mwt_task_module(moda_run, tmp_path, capsys):
    run = tmp_path / "mwt"
    assert main(["train", "--config", SMOKE_MWT, "--workdir", str(run), "--no-progress"]) == 0
    mods = tmp_path / "mods"
    assert main(["modularize", "--workdir", str(run), "--out", str(mods), "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "ft.json"
    code = main(["compose", "--modules", str(mods / "class_0"), str(mods / "class_1"),
                 "--finetune-epochs", "2", "--finetune-batch-size", "32", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "fine-tuned task module" in capsys.readouterr().out
    result = json.loads(out.read_text())
    ft = result["finetune"]
    assert ft["classes"] == [0, 1] and ft["epochs"] == 2 and len(ft["history"]) == 2
    assert 1 <= ft["best_epoch"] <= 2 and ft["test_samples"] > 0 and ft["val_samples"] > 0
    for key in ("best_accuracy", "last_accuracy"):
        assert 0.0 <= ft[key] <= 1.0
    assert 0.0 <= result["accuracy"] <= 1.0  # the not-fine-tuned composition, still reported

    moda_mods = tmp_path / "moda_mods"
    assert main(["modularize", "--workdir", str(moda_run), "--out", str(moda_mods),
                 "--no-progress"]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    code = main(["compose", "--modules", str(moda_mods / "class_0"), str(moda_mods / "class_1"),
                 "--finetune-epochs", "2", "--out", str(bad)])
    assert code == 2
    assert "MwT" in capsys.readouterr().err and not bad.exists()
