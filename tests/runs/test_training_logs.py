"""`modjax train` writes TensorBoard, W&B (offline) and profiler logs that match metrics.jsonl,
and a resume with other logging options appends to them without duplicating a step."""

import json
import math
import shutil

import pytest

from modjax.cli import main
from tests import event_files
from tests.bad_input_cases import SMOKE_MODA

pytest.importorskip("wandb")

# The MODA smoke run: one epoch of 8 steps, checkpoints at steps 4 and 8.
FLAGS = ["--log-every", "2", "--checkpoint-every", "4", "--no-progress"]


def _lines(workdir, kind):
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r["kind"] == kind]


def _close(a, b):
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)  # TensorBoard keeps float32


def test_logs_match_the_metrics_file_and_survive_a_resume(tmp_path, monkeypatch):
    for name in ("CACHE", "CONFIG", "DATA"):
        monkeypatch.setenv(f"WANDB_{name}_DIR", str(tmp_path / f"wandb_{name.lower()}"))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run = tmp_path / "run"
    wandb = ["--wandb", "modjax-test", "--wandb-mode", "offline"]
    argv = ["train", "--config", SMOKE_MODA, "--workdir", str(run), *FLAGS]
    assert main([*argv, "--profile", "2:3", *wandb]) == 0

    train, epochs = _lines(run, "train"), _lines(run, "epoch")
    scalars = event_files.tensorboard_scalars(run / "tb")
    terms = ["loss", "accuracy", "ce", "affinity", "dispersion", "compactness", "grad_norm"]
    assert set(scalars) == {
        *(f"train/{k}" for k in [*terms, "learning_rate", "compile_time_s", "images_per_s"]),
        *(f"epoch/train_{k}" for k in terms),  # MODA's module statistics per epoch among them
        *(f"epoch/{k}" for k in ("test_accuracy", "test_loss", "epoch_time_s", "learning_rate")),
    }
    for record in train:
        for key in terms:
            (value,) = scalars[f"train/{key}"][record["step"]]
            assert _close(value, record[key]), (key, record["step"])
    assert sorted(scalars["train/loss"]) == [r["step"] for r in train] == [1, 2, 4, 6, 8]
    assert {s: v for s, (v,) in scalars["epoch/test_accuracy"].items()} == pytest.approx(
        {r["step"]: r["test_accuracy"] for r in epochs}
    )
    assert {s: v for s, (v,) in scalars["train/learning_rate"].items()} == pytest.approx(
        {s: 0.05 for s in (1, 2, 4, 6, 8)}
    )
    (config,) = event_files.tensorboard_texts(run / "tb")["config"]
    assert json.loads(config) == json.loads((run / "config.json").read_text())

    assert event_files.profiled_steps(run / "profile") == [[2, 3]]

    (wandb_file,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    rows = event_files.wandb_history(wandb_file)
    assert [r["_step"] for r in rows] == [r["step"] for r in train]
    for row in rows:
        assert _close(row["train/loss"], scalars["train/loss"][row["_step"]][0])
    assert [r["epoch/test_accuracy"] for r in rows if "epoch/test_accuracy" in r] == [
        r["test_accuracy"] for r in epochs
    ]

    # Step 8's checkpoint lost: the resume restarts from step 4, with other logging options
    # (no --wandb, another --profile range), which the settings check does not refuse.
    shutil.rmtree(run / "checkpoints" / "8")
    assert main([*argv, "--profile", "6:7"]) == 0
    assert len(event_files.tensorboard_events(run / "tb")) == 2
    scalars = event_files.tensorboard_scalars(run / "tb")
    assert all(len(values) == 1 for steps in scalars.values() for values in steps.values())
    assert sorted(scalars["train/loss"]) == [r["step"] for r in _lines(run, "train")]
    assert event_files.profiled_steps(run / "profile") == [[2, 3], [6, 7]]
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1  # no --wandb: no new W&B run


def test_learning_rates_are_the_optimizers_per_epoch_cosine():
    from modjax.runs import training
    from modjax.runs.config import TrainConfig

    rates = training.learning_rates(TrainConfig(num_epochs=3, learning_rate=0.1), 2)
    assert [rates(s)["learning_rate"] for s in range(1, 7)] == pytest.approx(
        [0.1, 0.1, 0.075, 0.075, 0.025, 0.025]  # ½·0.1·(1 + cos(π·e/3)), e = 0, 1, 2
    )
    mwt = TrainConfig(method="mwt", schedule="constant", mask_learning_rate=0.2)
    assert training.learning_rates(mwt, 4)(3) == {"learning_rate": 0.05, "mask_learning_rate": 0.2}
