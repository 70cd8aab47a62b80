"""End-to-end tests of `modjax modularize` and `modjax compose` on the smoke MODA run."""

import hashlib
import json
import shutil

import numpy as np
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
    assert manifest["parent"]["step"] == summary["step"] > 0
    assert manifest["parent"]["hash"].startswith("sha256:")
    assert manifest["info"]["preprocess"]["dataset"] == "digits"
    assert (mods / "class_3" / "SHA256SUMS").is_file()
    assert "class" in capsys.readouterr().out

    out = tmp_path / "result.json"
    code = main(
        [
            "compose",
            "--modules",
            str(mods / "class_3"),
            str(mods / "class_1"),
            "--calibrate",
            "--out",
            str(out),
        ]
    )
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
    assert (
        main(["compose", "--modules", str(mods / "class_3"), "--relabel", "x", "--out", str(bad)])
        == 2
    )
    assert "DATASET:CLASS=NEW" in capsys.readouterr().err and not bad.exists()
    edited = json.loads((mods / "class_1" / "manifest.json").read_text())
    edited["classes"] = [4]
    moved = tmp_path / "edited"
    shutil.copytree(mods / "class_1", moved)
    (moved / "manifest.json").write_text(json.dumps(edited))
    assert main(["compose", "--modules", str(mods / "class_3"), str(moved), "--out", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "modjax compose: error:" in err and "manifest.json was edited" in err
    assert "Traceback" not in err and not bad.exists()
    # The output directory exists: refused before any work.
    assert main(["modularize", "--workdir", str(moda_run), "--out", str(mods)]) == 2
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize("threshold", ["0", "1.5", "-0.1"])
def test_bad_threshold_exits_2_and_writes_nothing(tmp_path, capsys, threshold):
    out = tmp_path / "mods"
    code = main(
        ["modularize", "--workdir", str(tmp_path), "--threshold", threshold, "--out", str(out)]
    )
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
    assert (
        main(
            [
                "train",
                "--config",
                SMOKE,
                "--workdir",
                str(workdir),
                "--no-progress",
                "--train-examples",
                "144",
            ]
        )
        == 0
    )
    return workdir


def test_replace_end_to_end_and_bad_target(moda_run, weak_run, tmp_path, capsys):
    mods = tmp_path / "mods"
    assert (
        main(["modularize", "--workdir", str(moda_run), "--out", str(mods), "--no-progress"]) == 0
    )
    capsys.readouterr()
    out = tmp_path / "replace.json"
    code = main(
        [
            "replace",
            "--weak-workdir",
            str(weak_run),
            "--module",
            str(mods / "class_3"),
            "--target-class",
            "3",
            "--epochs",
            "2",
            "--out",
            str(out),
        ]
    )
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
        code = main(
            [
                "replace",
                "--weak-workdir",
                str(weak_run),
                "--module",
                str(mods / "class_3"),
                "--out",
                str(bad),
                *args,
            ]
        )
        assert code == 2
        assert message in capsys.readouterr().err and not bad.exists()
    code = main(
        [
            "replace",
            "--weak-workdir",
            str(tmp_path / "none"),
            "--module",
            str(mods / "class_3"),
            "--target-class",
            "0",
        ]
    )
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
    printed = capsys.readouterr().out
    summary = json.loads((mods / "modules.json").read_text())
    assert 0.0 <= summary["coupling"] <= 1.0 and 0.0 <= summary["cohesion"] <= 1.0
    assert f"Jaccard cohesion {summary['cohesion']:.4f}" in printed
    assert "empty_layers" in printed  # the per-class table flags zero-width layers
    assert (mods / "modules.png").read_bytes()[:4] == b"\x89PNG"  # plots.module_overview
    out = tmp_path / "ft.json"
    code = main(
        [
            "compose",
            "--modules",
            str(mods / "class_0"),
            str(mods / "class_1"),
            "--finetune-epochs",
            "2",
            "--finetune-batch-size",
            "32",
            "--out",
            str(out),
            "--task-dir",
            str(tmp_path / "task"),
            "--export",
            str(tmp_path / "task.zip"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "fine-tuned task module" in capsys.readouterr().out
    result = json.loads(out.read_text())
    ft = result["finetune"]
    assert ft["classes"] == [0, 1] and ft["epochs"] == 2 and len(ft["history"]) == 2
    assert 1 <= ft["best_epoch"] <= 2 and ft["test_samples"] > 0 and ft["val_samples"] > 0
    for key in ("best_accuracy", "last_accuracy"):
        assert 0.0 <= ft[key] <= 1.0
    assert 0.0 <= result["accuracy"] <= 1.0  # the not-fine-tuned composition, still reported
    assert result["export"]["network"] == "fine-tuned task module"

    # The task module is kept as a module directory: composed alone, it gives the fine-tuned
    # network's best-epoch test accuracy, and the exported file gives its outputs.
    from modjax.modular import task
    from modjax.modules import directory, export, transform

    again = tmp_path / "again.json"
    assert main(["compose", "--modules", str(tmp_path / "task"), "--out", str(again)]) == 0
    assert json.loads(again.read_text())["accuracy"] == pytest.approx(ft["best_accuracy"])
    saved = directory.load(tmp_path / "task")
    assert task.is_task(saved) and list(saved.classes) == [0, 1]
    model, variables = task.load_task_module(saved)
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1)).astype(np.float32)
    pre = transform.eval_transform(directory.section(saved, "preprocess"))
    want = model.apply(variables, pre(images), train=False)[0]
    classify, meta = export.load_classifier(tmp_path / "task.zip")
    np.testing.assert_allclose(np.asarray(classify(images)), np.asarray(want), rtol=1e-5, atol=1e-5)
    assert main(["compose", "--modules", str(mods / "class_0"), "--task-dir",
                 str(tmp_path / "t2")]) == 2  # fmt: skip
    assert "--task-dir needs --finetune-epochs" in capsys.readouterr().err

    moda_mods = tmp_path / "moda_mods"
    assert (
        main(["modularize", "--workdir", str(moda_run), "--out", str(moda_mods), "--no-progress"])
        == 0
    )
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    code = main(
        [
            "compose",
            "--modules",
            str(moda_mods / "class_0"),
            str(moda_mods / "class_1"),
            "--finetune-epochs",
            "2",
            "--out",
            str(bad),
        ]
    )
    assert code == 2
    assert "MwT" in capsys.readouterr().err and not bad.exists()


def _reseal(path):
    files = sorted(
        p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.is_file() and p.name != "SHA256SUMS"
    )
    lines = [f"{hashlib.sha256((path / f).read_bytes()).hexdigest()}  {f}\n" for f in files]
    (path / "SHA256SUMS").write_text("".join(lines))


def test_modules_travel_without_the_parent_workdir(moda_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(moda_run, run)
    mods = tmp_path / "mods"
    assert main(["modularize", "--workdir", str(run), "--out", str(mods), "--no-progress"]) == 0
    compose = [
        "compose",
        "--modules",
        str(mods / "class_3"),
        str(mods / "class_1"),
        str(mods / "class_8"),
        "--calibrate",
    ]
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    assert main([*compose, "--out", str(before)]) == 0
    shutil.rmtree(run)  # the parent is gone: modules alone compose the same classifier
    exported = tmp_path / "composed.zip"
    assert main([*compose, "--out", str(after), "--export", str(exported)]) == 0, (
        capsys.readouterr().err
    )
    a, b = (json.loads(p.read_text()) for p in (before, after))
    assert a["accuracy"] == b["accuracy"] and a["per_class"] == b["per_class"]
    assert b["classes"] == [1, 3, 8] and b["export"]["bytes"] == exported.stat().st_size > 0
    assert "exported to" in capsys.readouterr().out

    # An existing export is refused without --overwrite, replaced with it.
    stamp = exported.read_bytes()
    assert main([*compose, "--export", str(exported)]) == 2
    assert "--overwrite" in capsys.readouterr().err and exported.read_bytes() == stamp
    assert main([*compose, "--no-eval", "--export", str(exported), "--overwrite"]) == 0
    assert "not evaluated" in capsys.readouterr().out

    # Corruptions are clear errors naming the file or field, never a traceback.
    other = tmp_path / "other"
    shutil.copytree(mods, other)
    (other / "class_3" / "units" / "00000.npy").unlink()
    (other / "class_1" / "stray.txt").write_text("x")
    manifest = json.loads((other / "class_8" / "manifest.json").read_text())
    manifest["parent"]["hash"] = "sha256:" + "1" * 64
    (other / "class_8" / "manifest.json").write_text(json.dumps(manifest))
    _reseal(other / "class_8")
    for modules, message in (
        ([other / "class_3"], "units/00000.npy is missing"),
        ([other / "class_1"], "stray.txt is not listed"),
        # Another hash is another parent: its class 8 beside the real parent's is claimed twice.
        ([mods / "class_8", other / "class_8"], "is claimed twice"),
    ):
        assert main(["compose", "--modules", *map(str, modules)]) == 2
        err = capsys.readouterr().err
        assert message in err and "modjax compose: error:" in err and "Traceback" not in err


def test_restore_parent_checks_step_and_hash(moda_run, weak_run, tmp_path):
    from modjax.modular import io as module_io
    from modjax.runs.modularize import modularize_workdir, restore_parent

    summary = modularize_workdir(moda_run, out=tmp_path / "mods")
    module = module_io.load_module(tmp_path / "mods" / "class_2")
    step = restore_parent(module, moda_run).step
    assert step == summary["step"] == module.parent["step"]
    forged = module._replace(parent={**module.parent, "hash": "sha256:" + "2" * 64})
    with pytest.raises(module_io.ModuleFileError, match=r"field 'parent\.hash'"):
        restore_parent(forged, moda_run)
    with pytest.raises(module_io.ModuleFileError, match=r"field 'parent\.\w+'"):
        restore_parent(module, weak_run)
