"""The bad-input catalogue: every case is one clear line on stderr, exit code 2, no traceback,
and nothing half-written (no new workdir; an existing one is left byte-for-byte as it was)."""

import hashlib
import json
import pathlib
import shutil

import pytest

from modjax.cli import main
from tests.conftest import REPO

SMOKE = str(REPO / "experiments" / "configs" / "smoke.py")
SMOKE_MODA = str(REPO / "experiments" / "configs" / "smoke_moda.py")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, pathlib.Path]:
    """A standard and a MODA smoke run, and the MODA run's modules (built once)."""
    root = tmp_path_factory.mktemp("catalogue")
    std, moda = root / "std", root / "moda"
    assert main(["train", "--config", SMOKE, "--workdir", str(std), "--no-progress"]) == 0
    assert main(["train", "--config", SMOKE_MODA, "--workdir", str(moda), "--no-progress"]) == 0
    assert main(["modularize", "--workdir", str(moda), "--no-progress"]) == 0
    return {"std": std, "moda": moda, "modules": moda / "modules"}


def _snapshot(path: pathlib.Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(path.rglob("*"))
    }


def _config_file(tmp, text):
    path = tmp / "cfg.py"
    path.write_text(text)
    return str(path)


def _copy(trained, tmp, key="std"):
    dst = tmp / f"copy_{key}"
    shutil.copytree(trained[key], dst)
    return dst


def _flip_checkpoint(run: pathlib.Path) -> None:
    step = max(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    files = [p for p in (run / "checkpoints" / str(step) / "state").rglob("*") if p.is_file()]
    data = max(files, key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    for i in range(len(raw) // 4, len(raw) // 4 + 64):
        raw[i] ^= 0xFF
    data.write_bytes(bytes(raw))


# Each case: (id, build(trained, tmp) -> (argv, path that must not change or appear), message).
CASES = [
    # --- settings: types and ranges (train refuses them before creating the workdir)
    (
        "epochs-float",
        lambda t, d: (
            [
                "train",
                "--config",
                _config_file(d, "def get_config():\n    return {'num_epochs': 1.5}\n"),
            ],
            None,
        ),
        "num_epochs=1.5 has type float; expected int",
    ),
    (
        "epochs-str",
        lambda t, d: (
            [
                "train",
                "--config",
                _config_file(d, "def get_config():\n    return {'num_epochs': '3'}\n"),
            ],
            None,
        ),
        "num_epochs='3' has type str",
    ),
    (
        "batch-float",
        lambda t, d: (
            [
                "train",
                "--config",
                _config_file(d, "def get_config():\n    return {'global_batch_size': 32.0}\n"),
            ],
            None,
        ),
        "global_batch_size=32.0 has type float",
    ),
    (
        "momentum-high",
        lambda t, d: (["train", "--momentum", "1.5"], None),
        r"momentum=1.5 is invalid: expected a number in [0, 1)",
    ),
    (
        "momentum-negative",
        lambda t, d: (["train", "--momentum", "-0.1"], None),
        "momentum=-0.1 is invalid",
    ),
    (
        "mask-lr-nan",
        lambda t, d: (["train", "--mask-learning-rate", "nan"], None),
        "mask_learning_rate=nan is invalid",
    ),
    (
        "lr-zero",
        lambda t, d: (["train", "--learning-rate", "0"], None),
        "learning_rate=0.0 is invalid",
    ),
    ("t-max-zero", lambda t, d: (["train", "--t-max", "0"], None), "t_max=0 is invalid"),
    ("depth-zero", lambda t, d: (["train", "--depth", "0"], None), "depth=0 must be an int >= 1"),
    (
        "depth-on-vgg",
        lambda t, d: (["train", "--model", "vgg16", "--depth", "3"], None),
        "unknown options ['depth'] for model 'vgg16'",
    ),
    (
        "width-no-units",
        lambda t, d: (
            ["train", "--model", "lenet5", "--image-size", "32", "--width", "0.01"],
            None,
        ),
        "width=0.01 leaves a layer of 6 channels with no units",
    ),
    ("width-zero", lambda t, d: (["train", "--width", "0"], None), "width=0.0 is invalid"),
    (
        "image-size-zero",
        lambda t, d: (["train", "--image-size", "0"], None),
        "image_size=0 is invalid",
    ),
    (
        "train-examples-zero",
        lambda t, d: (["train", "--train-examples", "0"], None),
        "train_examples=0 is invalid",
    ),
    (
        "schedule",
        lambda t, d: (["train", "--schedule", "linear"], None),
        "schedule='linear' is invalid",
    ),
    ("backend", lambda t, d: (["train", "--backend", "gcs"], None), "backend='gcs' is invalid"),
    (
        "model",
        lambda t, d: (["train", "--model", "resnet1000"], None),
        "unknown model name='resnet1000'",
    ),
    ("dataset", lambda t, d: (["train", "--dataset", "imagenet9"], None), "imagenet9"),
    (
        "batch-vs-devices",
        lambda t, d: (["train", "--global-batch-size", "12"], None),
        "global_batch_size=12 must be a positive multiple of the device count (8)",
    ),
    (
        "batch-vs-data",
        lambda t, d: (["train", "--global-batch-size", "4096"], None),
        "smaller than global_batch_size=4096; expected at least one full batch",
    ),
    (
        "process-id",
        lambda t, d: (
            ["train", "--distributed", "--num-processes", "2", "--process-id", "5"],
            None,
        ),
        r"process_id=5 must be in [0, num_processes=2)",
    ),
    # --- config files and workdirs
    (
        "config-syntax",
        lambda t, d: (
            ["train", "--config", _config_file(d, "def get_config(:\n    return {}\n")],
            None,
        ),
        "cfg.py, line 1:",
    ),
    (
        "config-missing",
        lambda t, d: (["train", "--config", str(d / "nope.py")], None),
        "nope.py not found",
    ),
    (
        "config-no-get-config",
        lambda t, d: (["train", "--config", _config_file(d, "X = 1\n")], None),
        "must define get_config()",
    ),
    (
        "config-unknown-key",
        lambda t, d: (
            ["train", "--config", _config_file(d, "def get_config():\n    return {'epochs': 3}\n")],
            None,
        ),
        "unknown setting(s) ['epochs']",
    ),
    ("workdir-empty", lambda t, d: (["train", "--workdir", ""], None), "--workdir '' is empty"),
    (
        "workdir-is-file",
        lambda t, d: (
            ["train", "--workdir", str(d / "file")],
            (d / "file").write_text("x") and d / "file",
        ),
        "is a file, not a directory",
    ),
    # --- resuming
    (
        "resume-other-settings",
        lambda t, d: (
            [
                "train",
                "--config",
                SMOKE,
                "--learning-rate",
                "0.9",
                "--seed",
                "5",
                "--workdir",
                str(_copy(t, d)),
            ],
            d / "copy_std",
        ),
        "learning_rate: 0.05 -> 0.9; seed: 0 -> 5",
    ),
    (
        "resume-config-json-deleted",
        lambda t, d: (
            [
                "train",
                "--config",
                SMOKE,
                "--learning-rate",
                "0.9",
                "--workdir",
                str((lambda p: ((p / "config.json").unlink(), p)[1])(_copy(t, d))),
            ],
            d / "copy_std",
        ),
        "(checkpoint step 8): learning_rate: 0.05 -> 0.9",
    ),
    (
        "resume-config-json-truncated",
        lambda t, d: (
            [
                "eval",
                "--workdir",
                str(
                    (lambda p: ((p / "config.json").write_text('{"model": "ml'), p)[1])(_copy(t, d))
                ),
            ],
            d / "copy_std",
        ),
        "config.json is not valid JSON",
    ),
    (
        "resume-damaged-checkpoint",
        lambda t, d: (
            [
                "train",
                "--config",
                SMOKE,
                "--num-epochs",
                "2",
                "--workdir",
                str((lambda p: (_flip_checkpoint(p), p)[1])(_copy(t, d))),
            ],
            None,
        ),
        "checkpoint step 8 in",
    ),
    (
        "eval-no-run",
        lambda t, d: (["eval", "--workdir", str(d / "none")], None),
        "config.json not found",
    ),
    # --- modules
    (
        "modularize-standard-run",
        lambda t, d: (["modularize", "--workdir", str(t["std"]), "--out", str(d / "m")], d / "m"),
        "modularize needs a run trained with one of",
    ),
    (
        "modularize-out-exists",
        lambda t, d: (
            ["modularize", "--workdir", str(t["moda"]), "--out", str(t["modules"])],
            t["modules"],
        ),
        "exists; remove it or choose another directory",
    ),
    (
        "modularize-threshold",
        lambda t, d: (
            [
                "modularize",
                "--workdir",
                str(t["moda"]),
                "--threshold",
                "1.5",
                "--out",
                str(d / "m"),
            ],
            d / "m",
        ),
        "--threshold=1.5 must be in (0, 1]",
    ),
    (
        "compose-missing-dir",
        lambda t, d: (["compose", "--modules", str(d / "class_3")], None),
        "class_3",
    ),
    (
        "compose-edited-manifest",
        lambda t, d: (
            [
                "compose",
                "--modules",
                str(
                    (
                        lambda m: (
                            (m / "manifest.json").write_text(
                                (m / "manifest.json")
                                .read_text()
                                .replace('"classes": [', '"classes": [9, ')
                            ),
                            m,
                        )[1]
                    )(pathlib.Path(shutil.copytree(t["modules"] / "class_3", d / "class_3")))
                ),
            ],
            None,
        ),
        "manifest.json",
    ),
    (
        "compose-relabel-negative",
        lambda t, d: (
            ["compose", "--modules", str(t["modules"] / "class_3"), "--relabel", "digits:3=-1"],
            None,
        ),
        "class ids must be >= 0",
    ),
    (
        "compose-relabel-malformed",
        lambda t, d: (
            ["compose", "--modules", str(t["modules"] / "class_3"), "--relabel", "3to5"],
            None,
        ),
        "must look like DATASET:CLASS=NEW",
    ),
    (
        "compose-out-is-dir",
        lambda t, d: (
            ["compose", "--modules", str(t["modules"] / "class_3"), "--out", str(d)],
            None,
        ),
        "is a directory",
    ),
    (
        "compose-export-exists",
        lambda t, d: (
            [
                "compose",
                "--modules",
                str(t["modules"] / "class_3"),
                str(t["modules"] / "class_5"),
                "--export",
                str((d / "c.zip").write_bytes(b"old") and d / "c.zip"),
            ],
            d / "c.zip",
        ),
        "exists; pass --overwrite",
    ),
    (
        "pipeline-one-class",
        lambda t, d: (
            ["pipeline", "--config", SMOKE_MODA, "--classes", "3", "--workdir", str(d / "p")],
            d / "p",
        ),
        "at least 2 distinct class ids",
    ),
    (
        "data-unknown",
        lambda t, d: (["data", "download", "imagenet9", "--data-dir", str(d / "data")], d / "data"),
        "imagenet9",
    ),
]


@pytest.mark.parametrize("build,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(trained, tmp_path, capsys, monkeypatch, build, message):
    monkeypatch.chdir(tmp_path)  # flags without --workdir would write runs/default here
    argv, guarded = build(trained, tmp_path)
    if argv[0] == "train" and "--workdir" not in argv:
        argv += ["--workdir", str(tmp_path / "run")]
        guarded = tmp_path / "run"
    before = _snapshot(guarded) if guarded is not None else None
    existed = guarded is not None and guarded.exists()
    capsys.readouterr()
    code = main([*argv, *(["--no-progress"] if argv[0] in ("train", "pipeline") else [])])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith(f"modjax {argv[0]}: error: "), err
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

    monkeypatch.setattr(training, "write_json_atomic", full)
    code = main(["train", "--workdir", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "No space left on device" in err and "config.json" in err


def test_resume_from_valid_falls_back_past_a_damaged_checkpoint(trained, tmp_path, capsys):
    run = _copy(trained, tmp_path)
    _flip_checkpoint(run)  # the latest step (8) is damaged; step 1 is intact
    argv = ["train", "--config", SMOKE, "--num-epochs", "2", "--workdir", str(run), "--no-progress"]
    assert main(argv) == 2
    assert "checkpoint step 8" in capsys.readouterr().err
    assert main([*argv, "--resume-from-valid"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 16
