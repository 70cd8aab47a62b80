"""The bad-input catalogue: every case is one clear line on stderr, exit code 2, no traceback,
and nothing half-written (no new workdir; an existing one is left byte-for-byte as it was)."""

import importlib
import json
import pathlib

import jax
import numpy as np
import pytest

import experiments
from modjax.cli import main
from modjax.runs import training
from tests.bad_input_cases import CASES as RUN_CASES
from tests.bad_input_cases import SMOKE, SMOKE_MODA, _copy, _flip_checkpoint, _snapshot
from tests.bad_input_module_cases import MODULE_CASES

CASES = RUN_CASES + MODULE_CASES
reproduce = importlib.import_module("experiments.reproduce.__main__")
REPRODUCE = "python -m experiments.reproduce"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, pathlib.Path]:
    """A standard and a MODA smoke run, and the MODA run's modules (built once)."""
    root = tmp_path_factory.mktemp("catalogue")
    std, moda = root / "std", root / "moda"
    assert main(["train", "--config", SMOKE, "--workdir", str(std), "--no-progress"]) == 0
    assert main(["train", "--config", SMOKE_MODA, "--workdir", str(moda), "--no-progress"]) == 0
    assert main(["modularize", "--workdir", str(moda), "--no-progress"]) == 0
    return {"std": std, "moda": moda, "modules": moda / "modules"}


@pytest.mark.parametrize("build,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(trained, tmp_path, capsys, monkeypatch, build, message):
    monkeypatch.chdir(tmp_path)  # flags without --workdir would write runs/default here
    argv, guarded, *patches = build(trained, tmp_path)
    for patch in patches:  # an environment or import the case needs
        patch(monkeypatch)
    if argv[0] == "train" and "--workdir" not in argv:
        argv += ["--workdir", str(tmp_path / "run")]
        guarded = tmp_path / "run"
    before = _snapshot(guarded) if guarded is not None else None
    existed = guarded is not None and guarded.exists()
    capsys.readouterr()
    try:
        if argv[0] == "reproduce":  # python -m experiments.reproduce, under its error rule
            code = experiments.run(lambda: reproduce.main(argv[1:]), REPRODUCE)
        else:
            code = main([*argv, *(["--no-progress"] if argv[0] in ("train", "pipeline") else [])])
    except SystemExit as e:  # argparse's own errors (a typed flag out of its range)
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    prog = REPRODUCE if argv[0] == "reproduce" else f"modjax {argv[0]}"
    assert err.startswith(f"{prog}: error: "), err
    assert message in err, err
    if guarded is not None:
        assert guarded.exists() == existed
        assert _snapshot(guarded) == before  # nothing half-written, nothing changed


def test_catalogue_size():
    assert len(CASES) >= 35
    assert len({c[0] for c in CASES}) == len(CASES)


def test_metrics_hold_each_step_once_after_resume(trained, tmp_path):
    run = _copy(trained, tmp_path)
    assert (
        main(
            [
                "train",
                "--config",
                SMOKE,
                "--num-epochs",
                "2",
                "--log-every",
                "1",
                "--workdir",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    steps = [
        json.loads(line)["step"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "train"
    ]
    assert len(steps) == len(set(steps))


def test_read_only_workdir_is_refused_before_work(tmp_path, capsys, monkeypatch):
    # Root writes anywhere, so the permission answer is simulated for the workdir's parent.
    import os

    parent = tmp_path / "ro"
    parent.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == str(parent) else real(p, m))
    code = main(["train", "--workdir", str(parent / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"{parent} is not writable" in err
    assert not (parent / "run").exists()


def test_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    import errno

    from modjax.runs import training

    def full(path, value):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(training.atomic, "write_json", full)
    code = main(["train", "--workdir", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "No space left on device" in err and "config.json" in err


def test_resume_from_valid_finishes_the_same_command_bit_identical(trained, tmp_path, capsys):
    """A damaged latest step: the same command stops naming it; with --resume-from-valid it
    falls back to step 1, moves step 8 aside, retrains and ends bit-identical to the intact run."""
    run = _copy(trained, tmp_path)
    _flip_checkpoint(run)  # the latest step (8) is damaged; step 1 is intact
    argv = ["train", "--config", SMOKE, "--workdir", str(run), "--no-progress"]
    assert main(argv) == 2
    assert "checkpoint step 8" in capsys.readouterr().err
    assert main([*argv, "--resume-from-valid"]) == 0
    assert json.loads((run / "summary.json").read_text())["steps"] == 8
    assert (run / "damaged_checkpoints" / "8").is_dir()  # kept for inspection, name kept
    resumed = training.load_run(run).variables
    intact = training.load_run(trained["std"]).variables
    leaves = jax.tree.leaves(jax.tree.map(np.array_equal, resumed, intact))
    assert leaves and all(leaves)


@pytest.mark.parametrize(
    "argv",
    [
        lambda m, w: ["compose", "--modules", str(m / "class_3"), str(m / "class_5")],
        lambda m, w: ["eval", "--module", str(m / "class_3")],
        lambda m, w: ["replace", "--weak-workdir", str(w), "--module", str(m / "class_3"),
                      "--target-class", "3"],
    ],
    ids=["compose", "eval-module", "replace"],
)  # fmt: skip
def test_every_module_reader_refuses_unsigned_modules_under_a_key(
    trained, tmp_path, capsys, monkeypatch, argv
):
    """The signature rule (`MODJAX_MODULE_KEY`) holds for every command that reads modules."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODJAX_MODULE_KEY", "a secret")
    argv = argv(trained["modules"], trained["std"])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"modjax {argv[0]}: error: ") and "Traceback" not in err, err
    assert "class_3 is not signed (SIGNATURE missing) and MODJAX_MODULE_KEY is set" in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written
