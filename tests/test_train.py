"""Tests of modjax.train: the jitted step, data parallelism, eval sums, compile counts."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from modjax import objectives, parallel, train
from tests.tiny import TinyNet, synthetic, to_float, tree_max_diff

SHAPE = (8, 8, 1)


def _setup(mesh=None, objective=objectives.standard, donate=False):
    model = TinyNet()
    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=4, num_epochs=3)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=SHAPE, mesh=mesh)
    step = train.make_train_step(
        model=model, tx=tx, objective=objective, preprocess=to_float, mesh=mesh, donate=donate
    )
    return model, tx, state, step


def _batches(n_steps, batch=16):
    images, labels = synthetic(num=n_steps * batch)
    return [
        {"image": images[i * batch : (i + 1) * batch], "label": labels[i * batch : (i + 1) * batch]}
        for i in range(n_steps)
    ]


def test_cosine_per_epoch_is_constant_within_an_epoch_and_follows_pytorch():
    sched = train.cosine_per_epoch(learning_rate=0.05, steps_per_epoch=10, t_max=20)
    assert float(sched(0)) == pytest.approx(0.05)
    assert float(sched(9)) == pytest.approx(0.05)
    # epoch 9 of T_max 20: the last epoch of the MwT fine-tune (≈ 0.029).
    assert float(sched(95)) == pytest.approx(0.5 * 0.05 * (1 + np.cos(np.pi * 9 / 20)))
    assert float(sched(200)) == pytest.approx(0.0, abs=1e-9)


def test_optimizer_matches_pytorch_nesterov_sgd_by_hand():
    tx = train.make_optimizer(
        learning_rate=0.1, steps_per_epoch=1, num_epochs=1, schedule="constant"
    )
    params = {"w": jnp.array([1.0])}
    opt = tx.init(params)
    v, w = 0.0, 1.0
    for g in (0.5, -0.25, 1.0):
        upd, opt = tx.update({"w": jnp.array([g])}, opt, params)
        params = optax.apply_updates(params, upd)
        v = 0.9 * v + g
        w -= 0.1 * (g + 0.9 * v)
        assert float(params["w"][0]) == pytest.approx(w, rel=1e-6)


def test_generator_params_get_their_own_learning_rate():
    tx = train.make_optimizer(
        learning_rate=0.1,
        mask_learning_rate=0.0 + 1e-9,
        steps_per_epoch=1,
        num_epochs=1,
        schedule="constant",
        momentum=0.0,
        nesterov=False,
    )
    params = {"conv_1": {"kernel": jnp.ones(2)}, "conv_1_generator": {"kernel": jnp.ones(2)}}
    grads = jax.tree.map(jnp.ones_like, params)
    upd, _ = tx.update(grads, tx.init(params), params)
    assert float(upd["conv_1"]["kernel"][0]) == pytest.approx(-0.1)
    assert abs(float(upd["conv_1_generator"]["kernel"][0])) < 1e-8


def test_bad_optimizer_arguments_raise():
    with pytest.raises(ValueError, match="learning_rate=-1"):
        train.make_optimizer(learning_rate=-1, steps_per_epoch=1, num_epochs=1)
    with pytest.raises(ValueError, match="schedule='step'"):
        train.make_optimizer(learning_rate=0.1, steps_per_epoch=1, num_epochs=1, schedule="step")


def test_training_reduces_loss_and_updates_batch_stats():
    _, _, state, step = _setup()
    bs0 = state.batch_stats
    batches = _batches(12)
    first = None
    for batch in batches:
        state, metrics = step(state, batch)
        first = first if first is not None else float(metrics["loss"])
    assert int(state.step) == 12
    assert float(metrics["loss"]) < first
    assert bool(metrics["finite"])
    assert set(metrics) == {"loss", "accuracy", "grad_norm", "finite", "bad_labels", "ce"}
    assert tree_max_diff(bs0, state.batch_stats) > 0


def test_step_does_not_recompile_and_makes_no_host_transfers():
    traces = []

    def counting_objective(logits, acts, labels):
        traces.append(1)
        return objectives.standard(logits, acts, labels)

    _, _, state, step = _setup(objective=counting_objective, donate=True)
    batches = [jax.device_put(b) for b in _batches(4)]
    state, _ = step(state, batches[0])  # compile
    with jax.transfer_guard("disallow"):
        for batch in batches[1:]:
            state, metrics = step(state, batch)
    assert len(traces) == 1
    assert step._cache_size() == 1


def test_eight_devices_give_the_same_parameters_as_one():
    assert jax.device_count() == 8
    batches = _batches(3, batch=16)
    results = []
    for n in (1, 8):
        mesh = parallel.make_mesh(n)
        _, _, state, step = _setup(mesh=mesh)
        for batch in batches:
            state, metrics = step(state, parallel.shard_batch(batch, mesh))
        assert state.params["conv_0"]["kernel"].sharding.is_fully_replicated
        results.append((jax.device_get(state), jax.device_get(metrics)))
    (s1, m1), (s8, m8) = results
    assert tree_max_diff(s1.params, s8.params) < 1e-5
    assert tree_max_diff(s1.batch_stats, s8.batch_stats) < 1e-5
    assert float(m1["loss"]) == pytest.approx(float(m8["loss"]), rel=1e-5)


def test_batch_size_must_divide_across_devices():
    mesh = parallel.make_mesh(8)
    with pytest.raises(ValueError, match=r"global_batch_size=100 .* device count \(8\)"):
        parallel.check_batch_size(100, mesh)
    assert parallel.check_batch_size(128, mesh) == 128
    with pytest.raises(ValueError, match="num_devices=9"):
        parallel.make_mesh(9)


def test_nonfinite_loss_is_flagged():
    def nan_objective(logits, acts, labels):
        loss, terms = objectives.standard(logits, acts, labels)
        return loss * jnp.nan, terms

    _, _, state, step = _setup(objective=nan_objective)
    _, metrics = step(state, _batches(1)[0])
    assert not bool(metrics["finite"])


def test_eval_step_returns_sums_over_real_rows_only():
    model, _, state, _ = _setup()
    mesh = parallel.make_mesh(8)
    evaluate = train.make_eval_step(model=model, preprocess=to_float, num_classes=3, mesh=mesh)
    images, labels = synthetic(num=16)
    mask = np.arange(16) < 11
    sums = evaluate(
        parallel.replicate(train.variables_of(state), mesh),
        parallel.shard_batch({"image": images, "label": labels, "mask": mask}, mesh),
    )
    logits, _ = model.apply(train.variables_of(state), to_float(images[:11], None), train=False)
    pred = np.asarray(jnp.argmax(logits, -1))
    assert int(sums["count"]) == 11
    assert int(sums["correct"]) == int(np.sum(pred == labels[:11]))
    np.testing.assert_array_equal(sums["per_class_count"], np.bincount(labels[:11], minlength=3))
    per_class = np.bincount(labels[:11], weights=pred == labels[:11], minlength=3)
    np.testing.assert_array_equal(sums["per_class_correct"], per_class)


@pytest.mark.parametrize("method", ["mwt", "moda"])
def test_modular_objectives_compile_once_and_run_without_host_transfers(method):
    from modjax import models

    model = models.get_model("lenet5", num_classes=3, width=0.5, mask_generators=method == "mwt")
    factory = objectives.mwt_objective if method == "mwt" else objectives.moda_objective
    objective = factory(num_classes=3)
    traces = []

    def counting(logits, acts, labels):
        traces.append(1)
        return objective(logits, acts, labels)

    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=4, num_epochs=1)
    shape = (16, 16, 1)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=shape)
    step = train.make_train_step(model=model, tx=tx, objective=counting, preprocess=to_float)
    images, labels = synthetic(num=64, shape=shape)
    batches = [
        jax.device_put({"image": images[i : i + 16], "label": labels[i : i + 16]})
        for i in range(0, 64, 16)
    ]
    state, metrics = step(state, batches[0])
    with jax.transfer_guard("disallow"):
        for batch in batches[1:]:
            state, metrics = step(state, batch)
    assert len(traces) == 1 and step._cache_size() == 1
    assert int(state.step) == 4 and bool(metrics["finite"])
    expected = (
        {"cohesion", "coupling", "kernel_rate"}
        if method == "mwt"
        else {"affinity", "dispersion", "compactness"}
    )
    assert expected <= set(metrics)
