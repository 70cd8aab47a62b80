"""Tests of modjax.loop: the epoch loop (callbacks, resume, compile count) and the eval pass."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import data, loop, objectives, parallel, train
from tests.tiny import TinyNet, synthetic, to_float, tree_max_diff

SHAPE = (8, 8, 1)
BATCH = 16
STEPS = 4  # steps per epoch: 64 examples / 16


def _setup(*, mesh=None, objective=objectives.standard, donate=True, num_epochs=2):
    model = TinyNet()
    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=STEPS, num_epochs=num_epochs)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=SHAPE, mesh=mesh)
    step = train.make_train_step(
        model=model, tx=tx, objective=objective, preprocess=to_float, mesh=mesh, donate=donate
    )
    return model, state, step


IMAGES, LABELS = synthetic(num=STEPS * BATCH + 5)  # 5 left over: dropped every epoch


def _epoch_batches(epoch):
    return data.train_batches(IMAGES, LABELS, global_batch_size=BATCH, seed=0, epoch=epoch)


class Recorder:
    """A callback recording what `fit` hands to each hook."""

    def __init__(self, log_at=()):
        self.logs, self.steps, self.epochs, self.extra = [], [], [], set(log_at)

    def callback(self):
        return loop.Callback(
            on_log=self.logs.append,
            on_step=lambda step, state: self.steps.append((step, int(jax.device_get(state.step)))),
            on_epoch_end=self.epochs.append,
            log_at=lambda step: step in self.extra,
        )


def test_fit_trains_and_calls_every_hook_at_its_steps():
    _, state, step = _setup(mesh=parallel.make_mesh(8), num_epochs=3)
    rec = Recorder(log_at={6})
    state = loop.fit(
        train_step=step,
        state=state,
        epoch_batches=_epoch_batches,
        steps_per_epoch=STEPS,
        num_epochs=3,
        mesh=parallel.make_mesh(8),
        callbacks=[rec.callback()],
        log_every=3,
    )
    assert int(state.step) == 12
    # Log steps: the first, multiples of log_every, epoch ends, and those a callback asks for.
    assert [e.step for e in rec.logs] == [1, 3, 4, 6, 8, 9, 12]
    assert [e.first for e in rec.logs] == [True] + [False] * 6
    assert [len(e.records) for e in rec.logs] == [1, 2, 1, 2, 2, 1, 3]
    assert all(e.seconds > 0 for e in rec.logs)
    # Every step once, in order, each after its state update.
    assert rec.steps == [(s, s) for s in range(1, 13)]
    assert [(e.epoch, e.step, len(e.records)) for e in rec.epochs] == [
        (1, 4, 4),
        (2, 8, 4),
        (3, 12, 4),
    ]
    records = [r for e in rec.logs for r in e.records]
    assert len(records) == 12
    assert set(records[0]) == {"loss", "accuracy", "grad_norm", "finite", "bad_labels", "ce"}
    assert all(isinstance(r["loss"], np.ndarray | np.floating) for r in records)
    losses = np.array([r["loss"] for r in records])
    assert np.all(np.isfinite(losses)) and all(bool(r["finite"]) for r in records)
    assert losses[-4:].mean() < losses[:4].mean()


class Interrupt(Exception):
    pass


def test_resume_mid_epoch_gives_the_same_parameters_as_an_uninterrupted_run():
    _, initial, step = _setup(donate=False)
    initial = jax.device_get(initial)
    kwargs = {"train_step": step, "epoch_batches": _epoch_batches, "steps_per_epoch": STEPS}
    full = loop.fit(state=jax.device_put(initial), num_epochs=2, **kwargs)

    saved = {}

    def crash_at_6(step_number, state):  # "checkpoint" at step 5, die at step 6
        if step_number == 5:
            saved["state"] = jax.device_get(state)
        if step_number == 6:
            raise Interrupt

    with pytest.raises(Interrupt):
        loop.fit(
            state=jax.device_put(initial),
            num_epochs=2,
            callbacks=[loop.Callback(on_step=crash_at_6)],
            **kwargs,
        )
    rec = Recorder()
    resumed = loop.fit(
        state=jax.device_put(saved["state"]), num_epochs=2, callbacks=[rec.callback()], **kwargs
    )
    assert [s for s, _ in rec.steps] == [6, 7, 8]
    assert [e.step for e in rec.logs] == [6, 8] and rec.logs[0].first
    assert [(e.epoch, len(e.records)) for e in rec.epochs] == [(2, 3)]
    assert int(resumed.step) == int(full.step) == 8
    assert tree_max_diff(full.params, resumed.params) == 0
    assert tree_max_diff(full.batch_stats, resumed.batch_stats) == 0
    assert tree_max_diff(full.opt_state, resumed.opt_state) == 0
    assert step._cache_size() == 1


def test_a_finished_state_is_returned_untouched():
    done = Count(jnp.asarray(8, jnp.int32))
    rec = Recorder()
    out = loop.fit(
        train_step=_count_step,
        state=done,
        epoch_batches=_epoch_batches,
        steps_per_epoch=STEPS,
        num_epochs=2,
        callbacks=[rec.callback()],
    )
    assert out is done and rec.logs == rec.steps == rec.epochs == []


def test_fit_compiles_once_and_makes_no_implicit_transfers():
    traces = []

    def counting(logits, acts, labels):
        traces.append(1)
        return objectives.standard(logits, acts, labels)

    mesh = parallel.make_mesh(8)
    _, state, step = _setup(mesh=mesh, objective=counting, num_epochs=1)
    with jax.transfer_guard("disallow"):  # explicit device_put/device_get only
        for prefetch in (0, 2):
            state = loop.fit(
                train_step=step,
                state=state,
                epoch_batches=_epoch_batches,
                steps_per_epoch=3,
                num_epochs=1 + prefetch // 2,
                mesh=mesh,
                prefetch=prefetch,
                callbacks=[loop.check_finite()],
                log_every=1,
            )
    assert int(state.step) == 6
    assert len(traces) == 1 and step._cache_size() == 1


def test_nonfinite_steps_stop_the_run_at_the_log_step_naming_the_step():
    model = TinyNet()
    tx = train.make_optimizer(learning_rate=1e30, steps_per_epoch=STEPS, num_epochs=2)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=SHAPE)
    step = train.make_train_step(
        model=model, tx=tx, objective=objectives.standard, preprocess=to_float
    )
    rec = Recorder()
    with pytest.raises(FloatingPointError, match=r"non-finite loss or gradient at step \d+"):
        loop.fit(
            train_step=step,
            state=state,
            epoch_batches=_epoch_batches,
            steps_per_epoch=STEPS,
            num_epochs=2,
            log_every=1,
            callbacks=[loop.check_finite(), rec.callback()],
        )
    # The check runs before later callbacks of the same step: they never see the bad step.
    assert rec.logs and all(bool(r["finite"]) for e in rec.logs for r in e.records)
    assert len(rec.steps) == len(rec.logs)


class Count(NamedTuple):
    step: jax.Array


def _count_step(state, batch):  # a stand-in train step without a model
    return Count(state.step + 1), {"loss": jnp.sum(batch["label"]), "finite": jnp.array(True)}


def test_fit_validates_its_arguments():
    kwargs = {"train_step": _count_step, "state": Count(jnp.zeros((), jnp.int32))}
    kwargs["epoch_batches"] = _epoch_batches
    kwargs["num_epochs"] = 1
    with pytest.raises(ValueError, match="steps_per_epoch=0 must be >= 1"):
        loop.fit(steps_per_epoch=0, **kwargs)
    with pytest.raises(ValueError, match="log_every=0"):
        loop.fit(steps_per_epoch=STEPS, log_every=0, **kwargs)
    with pytest.raises(ValueError, match="prefetch=-1"):
        loop.fit(steps_per_epoch=STEPS, prefetch=-1, **kwargs)
    with pytest.raises(
        ValueError,
        match=r"epoch_batches\(0\) ran out after 4 batches; "
        r"expected steps_per_epoch=5",
    ):
        loop.fit(steps_per_epoch=5, **kwargs)
    assert int(loop.fit(steps_per_epoch=STEPS, **kwargs).step) == STEPS


def test_around_step_wraps_each_batch_and_step_before_the_other_hooks():
    import contextlib

    order = []

    @contextlib.contextmanager
    def around(step):
        order.append(("enter", step))
        yield
        order.append(("exit", step))

    def count_step(state, batch):
        order.append(("step", int(state.step) + 1))
        return _count_step(state, batch)

    loop.fit(
        train_step=count_step,
        state=Count(jnp.zeros((), jnp.int32)),
        epoch_batches=_epoch_batches,
        steps_per_epoch=2,
        num_epochs=1,
        log_every=2,
        prefetch=0,
        callbacks=[
            loop.Callback(
                around_step=around,
                on_log=lambda e: order.append(("log", e.step)),
                on_step=lambda step, state: order.append(("on_step", step)),
            )
        ],
    )
    assert order == [
        *[("enter", 1), ("step", 1), ("exit", 1), ("log", 1), ("on_step", 1)],
        *[("enter", 2), ("step", 2), ("exit", 2), ("log", 2), ("on_step", 2)],
    ]


def _naive(model, variables, images, labels, num_classes):
    logits, _ = model.apply(variables, to_float(images, None), train=False)
    logits = np.asarray(logits, np.float64)
    pred = logits.argmax(-1)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    loss = -log_probs[np.arange(len(labels)), labels].mean()
    per_class = [
        np.mean(pred[labels == c] == c) if np.any(labels == c) else np.nan
        for c in range(num_classes)
    ]
    return np.mean(pred == labels), loss, np.array(per_class)


@pytest.mark.parametrize("num_devices, num, num_classes", [(1, 37, 3), (8, 50, 4)])
def test_evaluate_equals_a_naive_numpy_pass_with_a_padded_last_batch(num_devices, num, num_classes):
    mesh = parallel.make_mesh(num_devices)
    model = TinyNet(num_classes=num_classes)
    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=1, num_epochs=1)
    state = train.create_train_state(model=model, tx=tx, seed=1, image_shape=SHAPE)
    images, labels = synthetic(num=num, num_classes=3, seed=2)  # class 3 (of 4) has no example
    variables = jax.device_get(train.variables_of(state))
    eval_step = train.make_eval_step(
        model=model, preprocess=to_float, num_classes=num_classes, mesh=mesh
    )
    result = loop.evaluate(
        eval_step=eval_step,
        variables=parallel.replicate(variables, mesh),
        images=images,
        labels=labels,
        global_batch_size=16,
        mesh=mesh,
    )
    accuracy, loss, per_class = _naive(model, variables, images, labels, num_classes)
    assert num % 16  # the last batch is padded
    assert set(result) == {"accuracy", "loss", "count", "per_class_accuracy"}
    assert result["count"] == num
    assert result["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert result["loss"] == pytest.approx(loss, rel=1e-5)
    assert isinstance(result["accuracy"], float) and isinstance(result["loss"], float)
    np.testing.assert_allclose(result["per_class_accuracy"], per_class, rtol=1e-12)
