"""End-to-end tests of the `modjax` command: smoke training, resume, eval, data, bad input."""

import argparse
import json
import re

import numpy as np
import pytest

from modjax import checkpoint
from modjax.cli import build_parser, main
from modjax.modules import registry
from modjax.runs.config import FIELDS
from tests.conftest import REPO

SMOKE = str(REPO / "experiments" / "configs" / "smoke.py")


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_help_explains_every_option(capsys):
    for argv in (
        ["--help"],
        ["train", "--help"],
        ["eval", "--help"],
        ["data", "download", "--help"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in FIELDS:
        assert f"--{name.replace('_', '-')}" in out
    for action in build_parser()._subparsers._group_actions[0].choices["train"]._actions:
        assert action.help, f"{action.option_strings} has no help text"


def test_eval_takes_a_workdir_or_a_module_directory(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--module DIR" in text and "`modjax shrink`" in text and "`modjax repair`" in text
    for argv in (["eval"], ["eval", "--workdir", "a", "--module", "b"]):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(argv)
        assert exit_info.value.code == 2
    assert "one of the arguments --workdir --module is required" in capsys.readouterr().err
    assert main(["eval", "--module", str(tmp_path / "absent")]) == 2
    assert str(tmp_path / "absent") in capsys.readouterr().err
    assert main(["eval", "--workdir", str(tmp_path)]) == 2
    assert "config.json not found" in capsys.readouterr().err


def _subparser(*names):
    parser = build_parser()
    for name in names:
        parser = next(
            a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
        ).choices[name]
    return parser


@pytest.mark.parametrize("command", [["train"], ["eval"], ["data", "download"]])
def test_help_shows_each_default_once(command):
    parser = _subparser(*command)
    formatter = parser._get_formatter()
    for action in parser._actions:
        text = formatter._expand_help(action) if action.help else ""
        assert text.count("(default") <= 1, f"{action.option_strings}: {text!r}"
    if command == ["train"]:
        text = " ".join(parser.format_help().split())
        assert "--nesterov, --no-nesterov" in text
        assert "it is run as Python, so it can execute arbitrary code" in text


def _listed_methods(text):
    """The methods `--method`'s help lists after "one of:"."""
    match = re.search(r"--method METHOD\s+training objective, one of: ([\w, ]+)\.", text)
    assert match, text
    return tuple(m.strip() for m in match.group(1).split(","))


def test_train_help_lists_exactly_standard_and_the_registered_objectives(capsys, monkeypatch):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert _listed_methods(text) == ("standard", *registry.objective_methods())
    assert "mwt" in _listed_methods(text) and "panrajan" not in _listed_methods(text)
    # A family registered by another package shows up with no list to edit in modjax.
    installed = dict(registry.families())
    extra = registry.Family(
        name="plugin", methods=("seam",), scorers=lambda saved: [], objectives=("seam",)
    )
    monkeypatch.setattr(registry, "families", lambda: {**installed, "plugin": extra})
    text = " ".join(_subparser("train").format_help().split())
    assert _listed_methods(text) == ("standard", *registry.objective_methods())
    assert _listed_methods(text)[-1] == "seam"


def test_boolean_flags_are_negatable_and_augment_keeps_three_states():
    parse = build_parser().parse_args
    args = parse(["train"])
    assert not {"augment", "nesterov", "normalize"} & set(vars(args))  # config file or default
    assert (args.progress, args.distributed) == (True, False)
    args = parse(
        ["train", "--augment", "--no-nesterov", "--no-normalize", "--no-progress", "--distributed"]
    )
    assert (args.augment, args.nesterov, args.normalize) == (True, False, False)
    assert (args.progress, args.distributed) == (False, True)
    assert parse(["train", "--no-augment", "--nesterov"]).augment is False
    assert parse(["data", "download", "mnist", "--no-progress"]).progress is False
    with pytest.raises(SystemExit):
        parse(["train", "--nesterov", "false"])  # the old value syntax is gone


def test_smoke_train_writes_metrics_summary_and_resumes(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert main(["train", "--config", SMOKE, "--workdir", str(workdir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "train_loss" in out
    records = _lines(workdir / "metrics.jsonl")
    train_rows = [r for r in records if r["kind"] == "train"]
    epoch_rows = [r for r in records if r["kind"] == "epoch"]
    assert [r["step"] for r in train_rows] == [1, 5, 8]  # 1: the compile step
    assert "compile_time_s" in train_rows[0]
    assert {"loss", "accuracy", "grad_norm", "ce", "images_per_s"} <= set(train_rows[1])
    assert all(np.isfinite(r["loss"]) for r in train_rows)
    assert len(epoch_rows) == 1 and 0.0 <= epoch_rows[0]["test_accuracy"] <= 1.0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["steps"] == 8 and summary["devices"] == 8
    assert json.loads((workdir / "config.json").read_text())["model"] == "mlp"
    assert (workdir / "curves.png").read_bytes()[
        :8
    ] == b"\x89PNG\r\n\x1a\n"  # plots.training_curves

    # Longer run in the same workdir resumes from step 8 and trains 8 more steps.
    assert (
        main(
            [
                "train",
                "--config",
                SMOKE,
                "--workdir",
                str(workdir),
                "--no-progress",
                "--num-epochs",
                "2",
                "--learning-rate",
                "0.05",
            ]
        )
        == 0
    )
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["steps"] == 16
    assert [r["epoch"] for r in _lines(workdir / "metrics.jsonl") if r["kind"] == "epoch"] == [1, 2]

    def files(root):  # eval opens the checkpoints read-only: nothing is created or rewritten
        return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}

    before = files(workdir / "checkpoints")
    assert main(["eval", "--workdir", str(workdir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["step"] == 16 and result["count"] == 360
    assert result["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert files(workdir / "checkpoints") == before


def test_resume_with_different_settings_is_refused(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert main(["train", "--config", SMOKE, "--workdir", str(workdir), "--no-progress"]) == 0
    assert (
        main(
            ["train", "--config", SMOKE, "--workdir", str(workdir), "--no-progress", "--width", "2"]
        )
        == 2
    )
    assert "other settings (checkpoint step 8): width: 1.0 -> 2.0" in capsys.readouterr().err


def test_nan_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    workdir = tmp_path / "run"
    code = main(
        [
            "train",
            "--config",
            SMOKE,
            "--workdir",
            str(workdir),
            "--no-progress",
            "--learning-rate",
            "1e12",
            "--log-every",
            "1",
            "--checkpoint-every",
            "1",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "non-finite loss or gradient at step" in err
    bad_step = int(err.split("at step ")[1].split()[0])
    manager = checkpoint.make_manager(workdir / "checkpoints", save_every=1, keep=3)
    latest = checkpoint.latest_step(manager)
    assert latest is None or latest < bad_step
    assert not (workdir / "summary.json").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model", "alexnet"], "alexnet"),
        (["--dataset", "imagenet"], "imagenet"),
        (
            ["--global-batch-size", "60"],
            r"global_batch_size=60 must be a positive multiple of "
            r"the device count \(8\)",
        ),
        (["--method", "seam"], "method='seam'"),
        (["--dataset", "mnist", "--data-dir", "/nonexistent/modjax-data"], "/nonexistent"),
        (["--width", "0"], "width=0"),
    ],
)
def test_bad_input_is_reported_before_training(tmp_path, capsys, flags, message):
    workdir = tmp_path / "run"
    assert (
        main(["train", "--config", SMOKE, "--workdir", str(workdir), "--no-progress", *flags]) == 2
    )
    assert pytest.importorskip("re").search(message, capsys.readouterr().err)
    assert not (workdir / "checkpoints").exists()


def test_data_list_shows_datasets(capsys, tmp_path):
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "cifar10" in out and "embedded" in out


@pytest.mark.parametrize(
    "config, terms",
    [
        ("smoke_mwt.py", {"cohesion", "coupling", "kernel_rate", "mask_mean", "ce"}),
        ("smoke_moda.py", {"affinity", "dispersion", "compactness", "ce"}),
    ],
)
def test_modular_methods_train_and_log_their_terms_per_epoch(tmp_path, config, terms):
    workdir = tmp_path / "run"
    path = str(REPO / "experiments" / "configs" / config)
    assert main(["train", "--config", path, "--workdir", str(workdir), "--no-progress"]) == 0
    epoch = [r for r in _lines(workdir / "metrics.jsonl") if r["kind"] == "epoch"][0]
    for term in terms:
        assert np.isfinite(epoch[f"train_{term}"]), term
    assert 0.0 <= epoch["test_accuracy"] <= 1.0
    assert (workdir / "checkpoints").exists()


def test_weights_of_another_method_are_rejected(tmp_path, capsys):
    path = str(REPO / "experiments" / "configs" / "smoke_moda.py")
    assert (
        main(
            [
                "train",
                "--config",
                path,
                "--workdir",
                str(tmp_path / "r"),
                "--no-progress",
                "--cohesion-weight",
                "0.5",
            ]
        )
        == 2
    )
    assert "cohesion_weight" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--config",
                path,
                "--workdir",
                str(tmp_path / "r"),
                "--no-progress",
                "--affinity-weight",
                "-1",
            ]
        )
        == 2
    )
    assert "affinity_weight=-1" in capsys.readouterr().err


def test_an_option_the_model_does_not_take_is_named(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--config",
                SMOKE,
                "--workdir",
                str(tmp_path / "r"),
                "--no-progress",
                "--method",
                "mwt",
                "--model",
                "resnet20",
            ]
        )
        == 2
    )
    # Every zoo model has an MwT form now; the smoke config's MLP `depth` is what resnet20
    # cannot take, and the error says so before any work.
    err = capsys.readouterr().err
    assert "depth" in err and "resnet20" in err and "Traceback" not in err
