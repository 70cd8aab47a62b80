"""The bad-input catalogue's shared helpers and its cases for training, configs, resuming and
multi-host (data for `tests/test_bad_inputs.py`; the module-directory and network commands'
cases are in `tests/bad_input_module_cases.py`).

Each case: `(id, build(trained, tmp) -> (argv, guarded path or None), message)`, where the guarded
path must not appear (or, if it exists, must not change) and `message` must be in stderr.
"""

import hashlib
import pathlib
import shutil
import sys
import types

from tests.conftest import REPO

SMOKE = str(REPO / "experiments" / "configs" / "smoke.py")
SMOKE_MODA = str(REPO / "experiments" / "configs" / "smoke_moda.py")


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


def _train_config(text):
    """A case that runs `modjax train --config FILE` with FILE holding `text`."""
    return lambda trained, tmp: (["train", "--config", _config_file(tmp, text)], None)


def _edited_config_json(cmd, *flags):
    """A case running `cmd` on a copy of the MODA run whose config.json says normalize=false
    (an output flag's value becomes a path in the test's tmp dir)."""

    def build(trained, tmp):
        run = _copy(trained, tmp, "moda")
        path = run / "config.json"
        path.write_text(path.read_text().replace('"normalize": true', '"normalize": false'))
        out = [str(tmp / f) if prev == "--out" else f for prev, f in zip(("",) + flags, flags)]
        return [cmd, "--workdir", str(run), *out], run

    return build


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(*flags):
    """A case that runs `modjax train FLAGS` (the test adds a fresh --workdir)."""
    return lambda trained, tmp: (["train", *flags], None)


def _train_patched(patch, *flags):
    """A `_train` case run after `patch(monkeypatch)`: an environment, a failing import."""
    return lambda trained, tmp: (["train", *flags], None, patch)


def _no_wandb_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError


def _no_wandb_key(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", types.ModuleType("wandb"))  # installed or not
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent/modjax-test-netrc")  # no `wandb login` entry


def _flip_checkpoint(run: pathlib.Path) -> None:
    step = max(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    files = [p for p in (run / "checkpoints" / str(step) / "state").rglob("*") if p.is_file()]
    data = max(files, key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    for i in range(len(raw) // 4, len(raw) // 4 + 64):
        raw[i] ^= 0xFF
    data.write_bytes(bytes(raw))


def _reproduce(*flags):
    """A case running `python -m experiments.reproduce moda --scale smoke FLAGS` (through
    `experiments.run`, so `argv[0]` is "reproduce"); nothing may appear in the test's tmp dir."""

    def build(trained, tmp):
        paths = ["--workdir", str(tmp / "work"), "--out", str(tmp / "res")]
        return ["reproduce", "moda", "--scale", "smoke", "--seeds", "1", *paths, *flags], tmp

    return build


# Each case: (id, build(trained, tmp) -> (argv, path that must not change or appear[, patch]),
# message); `patch(monkeypatch)`, if given, runs first.
CASES = [
    # --- settings: types and ranges (train refuses them before creating the workdir)
    (
        "epochs-float",
        _train_config("def get_config():\n    return {'num_epochs': 1.5}\n"),
        "num_epochs=1.5 has type float; expected int",
    ),
    (
        "epochs-str",
        _train_config("def get_config():\n    return {'num_epochs': '3'}\n"),
        "num_epochs='3' has type str",
    ),
    (
        "batch-float",
        _train_config("def get_config():\n    return {'global_batch_size': 32.0}\n"),
        "global_batch_size=32.0 has type float",
    ),
    (
        "momentum-high",
        _train("--momentum", "1.5"),
        r"momentum=1.5 is invalid: expected a number in [0, 1)",
    ),
    ("momentum-negative", _train("--momentum", "-0.1"), "momentum=-0.1 is invalid"),
    ("mask-lr-nan", _train("--mask-learning-rate", "nan"), "mask_learning_rate=nan is invalid"),
    ("lr-zero", _train("--learning-rate", "0"), "learning_rate=0.0 is invalid"),
    ("t-max-zero", _train("--t-max", "0"), "t_max=0 is invalid"),
    ("depth-zero", _train("--depth", "0"), "depth=0 is invalid: expected 1-4 hidden layers"),
    ("depth-above-help-range", _train("--depth", "9"), "depth=9 is invalid: expected 1-4"),
    (
        "train-examples-above-split",
        _train("--train-examples", "99999"),
        "train_examples=99999 is larger than the training split (1437 examples)",
    ),
    (
        "weight-of-another-objective",
        _train("--cohesion-weight", "1"),
        "['cohesion_weight'] do not apply to method='standard'",
    ),
    (
        "depth-on-vgg",
        _train("--model", "vgg16", "--depth", "3"),
        "depth applies to model='mlp' (and 'resnet_cifar') only, not 'vgg16'",
    ),
    (
        "width-no-units",
        _train("--model", "lenet5", "--image-size", "32", "--width", "0.01"),
        "width=0.01 leaves a layer of 6 channels with no units",
    ),
    ("width-zero", _train("--width", "0"), "width=0.0 is invalid"),
    ("image-size-zero", _train("--image-size", "0"), "image_size=0 is invalid"),
    ("train-examples-zero", _train("--train-examples", "0"), "train_examples=0 is invalid"),
    (
        "validation-split-too-large",
        _train("--validation-split", "0.7"),
        "validation_split=0.7 is invalid: expected a share in (0, 0.5], or 0",
    ),
    ("schedule", _train("--schedule", "linear"), "schedule='linear' is invalid"),
    ("backend", _train("--backend", "gcs"), "backend='gcs' is invalid"),
    ("model", _train("--model", "resnet1000"), "unknown model name='resnet1000'"),
    ("dataset", _train("--dataset", "imagenet9"), "imagenet9"),
    (
        "batch-vs-devices",
        _train("--global-batch-size", "12"),
        "global_batch_size=12 must be a positive multiple of the device count (8)",
    ),
    (
        "batch-vs-data",
        _train("--global-batch-size", "4096"),
        "smaller than global_batch_size=4096; expected at least one full batch",
    ),
    (
        "process-id",
        _train("--distributed", "--num-processes", "2", "--process-id", "5"),
        r"process_id=5 must be in [0, num_processes=2)",
    ),
    # --- config files and workdirs
    (
        "config-syntax",
        _train_config("def get_config(:\n    return {}\n"),
        "cfg.py, line 1:",
    ),
    (
        "config-missing",
        lambda t, d: (["train", "--config", str(d / "nope.py")], None),
        "nope.py not found",
    ),
    ("config-no-get-config", _train_config("X = 1\n"), "must define get_config()"),
    (
        "config-missing-import",
        _train_config("import nosuchmodule_xyz\n\ndef get_config():\n    return {}\n"),
        "failed to run: ModuleNotFoundError: No module named 'nosuchmodule_xyz'",
    ),
    (
        "config-get-config-raises",
        _train_config("def get_config():\n    return {}['x']\n"),
        "get_config() raised KeyError",
    ),
    *(
        (
            f"shrink-modules-{name}",
            lambda t, d, text=text: (
                (
                    lambda f: (
                        f.write_text(text),
                        [
                            "shrink",
                            "--workdir",
                            str(t["std"]),
                            "--modules",
                            str(f),
                            "--search",
                            "1",
                            "--out",
                            str(d / "o"),
                        ],
                    )[1]
                )(d / "m.json"),
                d / "o",
            ),  # fmt: skip
            message,
        )
        for name, text, message in (
            ("invalid-json", '{"sweep": [', "m.json is not valid JSON (Expecting value at line"),
            ("missing-key", "{}", "m.json lacks the key(s) ['sweep']"),
        )
    ),
    (
        "distributed-nothing-set",
        _train("--distributed"),
        "--distributed needs --coordinator (or JAX_COORDINATOR_ADDRESS), --num-processes",
    ),
    (
        "distributed-unreachable-coordinator",
        lambda t, d: (
            [
                "train",
                "--distributed",
                "--coordinator",
                f"127.0.0.1:{_free_port()}",
                "--num-processes",
                "2",
                "--process-id",
                "1",
                "--coordinator-timeout",
                "0.5",
            ],
            None,
        ),  # fmt: skip
        "did not answer within 0.5 s",
    ),
    (
        "distributed-timeout-zero",
        _train("--distributed", "--coordinator-timeout", "0"),
        "argument --coordinator-timeout: 0.0 is not > 0",
    ),
    (
        "distributed-coordinator-without-port",
        _train("--distributed", "--coordinator", "localhost", "--num-processes", "2"),
        "coordinator address 'localhost' from --coordinator: expected HOST:PORT",
    ),
    (
        "config-unknown-key",
        _train_config("def get_config():\n    return {'epochs': 3}\n"),
        "unknown setting(s) ['epochs']",
    ),
    ("workdir-empty", _train("--workdir", ""), "--workdir '' is empty"),
    (
        "workdir-is-file",
        lambda t, d: (
            ["train", "--workdir", str(d / "file")],
            (d / "file").write_text("x") and d / "file",
        ),
        "is a file, not a directory",
    ),
    # --- logging and profiling options (refused before the workdir appears)
    ("profile-reversed", _train("--profile", "10:5"), "--profile 10:5: expected 1 <= START"),
    ("profile-malformed", _train("--profile", "10-20"), "--profile '10-20' is not START:STOP"),
    (
        "profile-past-the-run",
        _train("--profile", "50:60"),
        "--profile 50:60: the run has 55 steps; expected STOP <= 55",
    ),
    (
        "wandb-mode-without-wandb",
        _train("--wandb-mode", "offline"),
        "--wandb-mode offline applies to --wandb PROJECT",
    ),
    (
        "wandb-project-name",
        _train("--wandb", "team/proj", "--wandb-mode", "offline"),
        "--wandb 'team/proj' is not a W&B project name",
    ),
    (
        "wandb-not-installed",
        _train_patched(_no_wandb_package, "--wandb", "proj", "--wandb-mode", "offline"),
        "--wandb proj needs the wandb package",
    ),
    (
        "wandb-online-without-key",
        _train_patched(_no_wandb_key, "--wandb", "proj"),
        "--wandb proj in online mode needs a W&B API key: set WANDB_API_KEY or run `wandb login`",
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
    *(
        (
            f"{cmd}-config-json-edited",
            _edited_config_json(cmd, *extra),
            "disagrees with checkpoint step 8, whose settings the weights were trained with: "
            "normalize: True in the checkpoint, False in config.json",
        )
        for cmd, *extra in (
            ("eval",),
            ("modularize", "--out", "mods"),
            ("decompose", "--method", "panrajan", "--out", "dec"),
        )
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
    # --- python -m experiments.reproduce --submit/--collect (experiments/reproduce/submit.py)
    (
        "reproduce-validation-split-too-large",
        _reproduce("--validation-split", "0.7"),
        "--validation-split 0.7 must be in (0, 0.5]",
    ),
    (
        "reproduce-partition-without-slurm",
        _reproduce("--partition", "gpu"),
        "--partition only applies to --submit slurm (got no --submit)",
    ),
    (
        "reproduce-slurm-flags-with-local",
        _reproduce("--submit", "local", "--gpus-per-node", "2", "--time", "60"),
        "--gpus-per-node, --time only apply to --submit slurm (got --submit local)",
    ),
    (
        "reproduce-nodes-zero",
        _reproduce("--submit", "slurm", "--nodes", "0"),
        "--nodes 0 must be >= 1",
    ),
    (
        "reproduce-bad-time",
        _reproduce("--submit", "slurm", "--time", "2h"),
        "--time '2h': expected minutes (e.g. 720) or [D-]HH:MM:SS",
    ),
    (
        "reproduce-bad-slurm-arg",
        _reproduce("--submit", "slurm", "--slurm-arg", "account"),
        "--slurm-arg 'account': expected KEY=VALUE",
    ),
    (
        "reproduce-distributed-local",
        _reproduce("--submit", "local", "--distributed"),
        "--distributed with --submit local: multi-process jobs need --submit slurm",
    ),
    (
        "reproduce-collect-and-submit",
        _reproduce("--collect", "--submit", "debug"),
        "--collect runs nothing; drop --submit debug",
    ),
    (
        "reproduce-collect-nothing-finished",
        _reproduce("--collect"),
        "--collect: none of the 1 (row, seed) runs under",
    ),
]
