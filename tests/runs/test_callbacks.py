"""Tests of modjax.runs.callbacks and the metrics-file repair on resume (no training)."""

import json

import numpy as np
import pytest

from modjax import checkpoint, loop
from modjax.runs import callbacks, report


def _records(*losses, finite=None):
    finite = finite or [True] * len(losses)
    return [
        {"loss": np.float32(x), "accuracy": np.float32(0.5), "finite": np.bool_(f)}
        for x, f in zip(losses, finite)
    ]


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_drop_records_after_keeps_one_line_per_step_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    writer = report.MetricWriter(path)
    for step in (1, 5, 8, 10, 11, 12, 13):
        writer.write({"kind": "train", "step": step})
    writer.write({"kind": "epoch", "epoch": 1, "step": 8})
    assert report.drop_records_after(path, 10) == 3
    assert [r["step"] for r in _lines(path)] == [1, 5, 8, 10, 8]
    assert report.drop_records_after(path, 10) == 0
    assert report.drop_records_after(tmp_path / "absent.jsonl", 0) == 0
    assert not list(tmp_path.glob(".*tmp*"))


def test_write_metrics_reports_compile_time_first_then_throughput(tmp_path):
    writer = report.MetricWriter(tmp_path / "m.jsonl")
    cb = callbacks.write_metrics(writer, global_batch_size=32)
    cb.on_log(loop.LogEvent(1, _records(2.0), 3.0, True))
    cb.on_log(loop.LogEvent(5, _records(1.0, 2.0, 3.0, 4.0), 2.0, False))
    first, second = _lines(tmp_path / "m.jsonl")
    assert first == {
        "kind": "train",
        "step": 1,
        "loss": 2.0,
        "accuracy": 0.5,
        "compile_time_s": 3.0,
    }
    assert second["step"] == 5 and second["loss"] == 2.5 and second["images_per_s"] == 64.0


def test_metrics_lines_follow_the_one_json_rule(tmp_path):
    # A term never defined in its window has a NaN mean: `null`, as in every modjax JSON file.
    writer = report.MetricWriter(tmp_path / "m.jsonl")
    records = [{**r, "cohesion": np.float32(0.0), "cohesion_defined": np.bool_(False)}
               for r in _records(1.0, 3.0)]  # fmt: skip
    callbacks.write_metrics(writer, global_batch_size=8).on_log(
        loop.LogEvent(2, records, 1.0, True)
    )
    writer.write({"kind": "x", "step": 3, "inf": np.float64(np.inf), "per_class": np.array([0.5])})
    text = (tmp_path / "m.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text and '"nan"' not in text
    first, second = _lines(tmp_path / "m.jsonl")
    assert first["cohesion"] is None and first["loss"] == 2.0
    assert second == {"kind": "x", "step": 3, "inf": None, "per_class": [0.5]}
    assert list(first) == sorted(first)  # keys sorted, one object per line
    with pytest.raises(TypeError, match=r"a metrics record\['bad'\] has a value of type object"):
        writer.write({"bad": object()})


class FakeManager:
    def __init__(self):
        self.waited = 0

    def wait_until_finished(self):
        self.waited += 1

    def should_save(self, step):
        return step % 5 == 0


def test_stop_on_nonfinite_names_the_step_and_waits_for_pending_saves(tmp_path):
    manager = FakeManager()
    cb = callbacks.stop_on_nonfinite(manager, tmp_path / "checkpoints")
    cb.on_log(loop.LogEvent(3, _records(1.0, 1.0), 1.0, False))
    assert manager.waited == 0
    event = loop.LogEvent(7, _records(1.0, np.nan, np.nan, finite=[True, False, False]), 1.0, False)
    with pytest.raises(FloatingPointError, match=r"at step 6 \(loss=nan\); the last checkpoint"):
        cb.on_log(event)
    assert manager.waited == 1


def test_save_checkpoints_offers_every_step_and_forces_the_last(monkeypatch):
    offered = []

    def save(manager, step, state, *, meta=None, force=False):
        offered.append((step, meta["epoch"], force))
        return False

    monkeypatch.setattr(checkpoint, "save", save)  # the manager decides; here, offers only
    manager = FakeManager()
    cb = callbacks.save_checkpoints(manager, steps_per_epoch=4, total_steps=6)
    for step in range(1, 7):
        cb.on_step(step, {"w": np.zeros(2, np.float32)})
    assert offered == [(s, (s - 1) // 4, s == 6) for s in range(1, 7)]
    assert [s for s in range(1, 11) if cb.log_at(s)] == [5, 10]


def test_epoch_summaries_evaluate_when_due(tmp_path):
    writer = report.MetricWriter(tmp_path / "m.jsonl")
    history, evaluated = [], []

    def evaluate(state):
        evaluated.append(state)
        return {"accuracy": 0.75, "loss": 0.5}

    cb = callbacks.epoch_summaries(writer, history, evaluate=evaluate, eval_every=2, num_epochs=3)
    for epoch in (1, 2, 3):
        cb.on_epoch_end(loop.EpochEvent(epoch, 4 * epoch, f"s{epoch}", _records(1.0, 3.0), 0.1))
    assert evaluated == ["s2", "s3"]
    assert [r.get("test_accuracy") for r in history] == [None, 0.75, 0.75]
    assert history[0]["train_loss"] == 2.0 and history[0]["step"] == 4
    assert _lines(tmp_path / "m.jsonl") == json.loads(json.dumps(history))


def test_module_overview_fractions_and_overlap():
    from modjax.runs import plots

    units = {
        3: {"a": np.array([1, 1, 0, 0], bool), "b": np.array([1, 0], bool)},
        5: {"a": np.array([1, 1, 1, 1], bool), "b": np.array([0, 0], bool)},
    }
    layers, kept, jac = plots.kept_fractions(units)
    assert layers == ["a", "b"]
    np.testing.assert_allclose(kept, [[0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_allclose(jac, [[1.0, 2 / 5], [2 / 5, 1.0]])  # |{a0,a1}| / |{a0..a3,b0}|


def test_shared_outputs_are_0644_whatever_the_umask(tmp_path):
    """metrics.jsonl and the pictures are files people share: 0644 even under umask 077."""
    import os

    from modjax.runs import plots

    old = os.umask(0o077)
    try:
        writer = report.MetricWriter(tmp_path / "metrics.jsonl")
        writer.write({"kind": "train", "step": 1, "loss": 1.0})
        writer.write({"kind": "epoch", "epoch": 1, "train_accuracy": 0.5})
        png = plots.training_curves(tmp_path / "metrics.jsonl", tmp_path / "curves.png")
    finally:
        os.umask(old)
    assert png.read_bytes()[:4] == b"\x89PNG"
    for name in ("metrics.jsonl", "curves.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_log_scalars_sends_the_metrics_numbers_and_the_learning_rate(tmp_path):
    """TensorBoard and W&B get the numbers of the metrics lines (same window means, same
    throughput rule), plus the step's learning rate; undefined means are left out."""
    writer = report.MetricWriter(tmp_path / "m.jsonl")
    sent_a, sent_b, history = [], [], []
    rates = {4: 0.05, 8: 0.025}
    cb = callbacks.log_scalars(
        [lambda s, v: sent_a.append((s, v)), lambda s, v: sent_b.append((s, v))],
        history=history,
        global_batch_size=16,
        learning_rates=lambda step: {"learning_rate": rates[step]},
    )
    records = [{**r, "cohesion": np.float32(0.5), "cohesion_defined": np.bool_(False)}
               for r in _records(1.0, 3.0)]  # fmt: skip
    for event in (loop.LogEvent(4, records, 2.0, True), loop.LogEvent(8, records, 0.5, False)):
        callbacks.write_metrics(writer, global_batch_size=16).on_log(event)
        cb.on_log(event)
    summaries = callbacks.epoch_summaries(
        writer, history, evaluate=lambda s: {"accuracy": 0.75, "loss": 0.5}, eval_every=1,
        num_epochs=2,
    )  # fmt: skip
    epoch = loop.EpochEvent(2, 8, None, records, 0.25)
    summaries.on_epoch_end(epoch)
    cb.on_epoch_end(epoch)
    assert sent_a == sent_b
    lines = _lines(tmp_path / "m.jsonl")
    (s1, first), (s2, second), (s3, per_epoch) = sent_a
    assert (s1, s2, s3) == (4, 8, 8)
    assert first == {
        "train/loss": 2.0,
        "train/accuracy": 0.5,
        "train/compile_time_s": 2.0,
        "train/learning_rate": 0.05,
    }
    assert second["train/images_per_s"] == lines[1]["images_per_s"] == 64.0
    assert "train/cohesion" not in second and lines[1]["cohesion"] is None  # null: left out
    assert per_epoch == {
        "epoch/epoch_time_s": 0.25,
        "epoch/train_loss": 2.0,
        "epoch/train_accuracy": 0.5,
        "epoch/test_accuracy": 0.75,
        "epoch/test_loss": 0.5,
        "epoch/learning_rate": 0.025,
    }
    with pytest.raises(RuntimeError, match="no record of epoch 3 in history; put it after"):
        cb.on_epoch_end(loop.EpochEvent(3, 12, None, records, 0.25))
