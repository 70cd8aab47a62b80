"""Tests of modjax.runs.tensorboard_log: event files, config text, resume without duplicates."""

import json
import os

import pytest

from modjax.runs import tensorboard_log
from tests import event_files

CONFIG = {"model": "mlp", "learning_rate": 0.05, "depth": None}


def test_scalars_and_config_land_in_an_event_file(tmp_path):
    logdir = tmp_path / "tb"
    old = os.umask(0o077)
    try:
        with tensorboard_log.open_log(logdir, start=0, config=CONFIG) as log:
            log(1, {"train/loss": 2.5, "train/learning_rate": 0.05})
            log(2, {"train/loss": 1.5})
    finally:
        os.umask(old)
    assert event_files.tensorboard_scalars(logdir) == {
        "train/loss": {1: [2.5], 2: [1.5]},
        "train/learning_rate": {1: [pytest.approx(0.05)]},
    }
    (text,) = event_files.tensorboard_texts(logdir)["config"]
    assert json.loads(text) == CONFIG  # indented JSON: a Markdown code block
    (path,) = logdir.iterdir()
    assert logdir.stat().st_mode & 0o777 == 0o755 and path.stat().st_mode & 0o777 == 0o644


def test_a_resume_adds_a_file_and_each_step_is_shown_once(tmp_path):
    """Steps 1-6 logged, the run resumes from its step-4 checkpoint and logs 5-8 again:
    TensorBoard's purge (the new file's `purge_step` 5) keeps one value per step."""
    logdir = tmp_path / "tb"
    with tensorboard_log.open_log(logdir, start=0, config=CONFIG) as log:
        for step in range(1, 7):
            log(step, {"train/loss": float(step)})
    with tensorboard_log.open_log(logdir, start=4, config=CONFIG) as log:
        for step in range(5, 9):
            log(step, {"train/loss": 10.0 + step})
    files = event_files.tensorboard_events(logdir)
    assert len(files) == 2
    starts = [e.step for e in files[1][1] if e.HasField("session_log")]
    assert starts == [5]
    assert event_files.tensorboard_scalars(logdir)["train/loss"] == {
        1: [1.0], 2: [2.0], 3: [3.0], 4: [4.0], 5: [15.0], 6: [16.0], 7: [17.0], 8: [18.0]
    }  # fmt: skip


def test_other_processes_write_nothing(tmp_path):
    with tensorboard_log.open_log(tmp_path / "tb", start=0, config=CONFIG, enabled=False) as log:
        assert log is None
    assert not (tmp_path / "tb").exists()


def test_the_file_is_closed_when_the_run_fails(tmp_path):
    with pytest.raises(FloatingPointError):
        with tensorboard_log.open_log(tmp_path / "tb", start=0, config=CONFIG) as log:
            log(3, {"train/loss": 1.0})
            raise FloatingPointError("non-finite loss")
    assert event_files.tensorboard_scalars(tmp_path / "tb") == {"train/loss": {3: [1.0]}}
