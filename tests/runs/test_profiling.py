"""Tests of modjax.runs.profiling: the range rules, the hooks' timing, and a real annotated trace."""

import contextlib

import jax
import pytest

from modjax import data, loop, objectives, train
from modjax.runs import profiling
from tests import event_files
from tests.tiny import TinyNet, synthetic, to_float


@pytest.mark.parametrize(
    "text,message",
    [
        ("10:5", "--profile 10:5: expected 1 <= START <= STOP"),
        ("0:3", "--profile 0:3: expected 1 <= START <= STOP (steps count from 1)"),
        ("5", "--profile '5' is not START:STOP"),
        ("a:b", "--profile 'a:b' is not START:STOP"),
        ("1:2:3", "--profile '1:2:3' is not START:STOP"),
    ],
)
def test_bad_ranges_are_named(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        profiling.parse_range(text)


def test_range_rules():
    assert profiling.parse_range("3:3") == (3, 3)  # one step
    assert profiling.check_range(2, 8, total_steps=8) == (2, 8)
    with pytest.raises(ValueError, match="--profile 2:9: the run has 8 steps; expected STOP <= 8"):
        profiling.check_range(2, 9, total_steps=8)
    with pytest.raises(ValueError, match="two integer steps"):
        profiling.check_range(2.0, 3)


class FakeProfiler:
    """Records start/stop and device waits instead of tracing."""

    def __init__(self, monkeypatch):
        self.calls = []
        monkeypatch.setattr(jax.profiler, "start_trace", lambda d: self.calls.append("start"))
        monkeypatch.setattr(jax.profiler, "stop_trace", lambda: self.calls.append("stop"))
        monkeypatch.setattr(jax, "block_until_ready", lambda x: self.calls.append(("wait", x)))
        monkeypatch.setattr(
            jax.profiler,
            "StepTraceAnnotation",
            lambda name, step_num: self._annotate(name, step_num),
        )

    @contextlib.contextmanager
    def _annotate(self, name, step_num):
        self.calls.append((name, step_num))
        yield


def _drive(callback, steps):
    for step in steps:
        with callback.around_step(step):
            pass
        callback.on_step(step, f"state{step}")


def test_trace_covers_the_range_and_waits_only_at_its_last_step(tmp_path, monkeypatch):
    fake = FakeProfiler(monkeypatch)
    with profiling.profile_steps(tmp_path / "profile", start=3, stop=4) as callback:
        _drive(callback, range(1, 7))
    assert fake.calls == [
        "start",
        ("train", 3),
        ("train", 4),
        ("wait", "state4"),  # the one host sync: the last profiled step's state
        "stop",
    ]


def test_a_resume_inside_the_range_traces_the_rest_and_an_error_still_stops(tmp_path, monkeypatch):
    fake = FakeProfiler(monkeypatch)
    with pytest.raises(FloatingPointError):
        with profiling.profile_steps(tmp_path / "profile", start=3, stop=9) as callback:
            _drive(callback, range(5, 7))  # resumed at step 4
            raise FloatingPointError("non-finite loss at step 6")
    assert fake.calls == ["start", ("train", 5), ("train", 6), "stop"]


def test_fit_writes_a_trace_with_one_annotation_per_profiled_step(tmp_path):
    images, labels = synthetic(num=32)
    model = TinyNet()
    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=4, num_epochs=2)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=(8, 8, 1))
    step = train.make_train_step(
        model=model, tx=tx, objective=objectives.standard, preprocess=to_float
    )
    with (
        jax.transfer_guard("disallow"),  # the profiler adds no hidden copies
        profiling.profile_steps(tmp_path / "profile", start=3, stop=5) as callback,
    ):
        state = loop.fit(
            train_step=step,
            state=state,
            epoch_batches=lambda e: data.train_batches(
                images, labels, global_batch_size=8, seed=0, epoch=e
            ),
            steps_per_epoch=4,
            num_epochs=2,
            callbacks=[callback],
            log_every=4,
        )
    assert int(jax.device_get(state.step)) == 8
    assert event_files.profiled_steps(tmp_path / "profile") == [[3, 4, 5]]
    assert list((tmp_path / "profile").rglob("*.xplane.pb"))  # XProf's file
