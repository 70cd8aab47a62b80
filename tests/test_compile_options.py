"""XLA:CPU compile options of the steps: accepted or cleanly dropped, and numerically safe."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import models, objectives, train


def test_options_are_used_on_cpu_and_dropped_when_rejected(monkeypatch):
    assert train.compiler_options() == train.CPU_COMPILER_OPTIONS  # jaxlib 0.10 accepts them
    assert train._options_for("gpu") == ()
    monkeypatch.setattr(train, "CPU_COMPILER_OPTIONS", {"xla_cpu_no_such_option_here": "1"})
    train._options_for.cache_clear()
    try:
        assert train.compiler_options() == {}
    finally:
        monkeypatch.undo()
        train._options_for.cache_clear()


def _grads(model, variables, batch, *, options, dtype):
    def loss_fn(params):
        (logits, acts), _ = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            batch["image"].astype(dtype),
            train=True,
            mutable=["batch_stats"],
        )
        return objectives.standard(logits, acts, batch["label"])[0]

    return jax.jit(jax.grad(loss_fn), compiler_options=options)(variables["params"])


def test_vgg16_gradients_without_ynn_match_a_float64_reference(optimized_compiles):
    """Each leaf's float32 gradient, YNN fusion on or off, is within float32 error of float64.

    VGG16 variant (b): the convolutions of variant (a) without its dropout, whose masks would
    differ between float32 and float64 random draws.
    """
    model = models.get_model("vgg16_moda", num_classes=10, width=0.0625)
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.random((4, 32, 32, 3)).astype(np.float32),
        "label": rng.integers(0, 10, 4).astype(np.int32),
    }
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    off = _grads(model, variables, batch, options=train.CPU_COMPILER_OPTIONS, dtype=jnp.float32)
    default = _grads(model, variables, batch, options={}, dtype=jnp.float32)
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
        ref = _grads(model, v64, batch, options={}, dtype=jnp.float64)
        ref = jax.tree.map(np.asarray, ref)

    # Error relative to the leaf's scale, floored at 1e-3 of the largest gradient: conv biases
    # before BatchNorm have an exact gradient of 0, where any rounding is "infinitely" relative.
    floor = 1e-3 * max(float(np.max(np.abs(g))) for g in jax.tree.leaves(ref))

    def rel_err(a, b):
        scale = max(float(np.max(np.abs(b))), floor)
        return float(np.max(np.abs(np.asarray(a, np.float64) - b))) / scale

    err_off = jax.tree.map(rel_err, off, ref)
    err_default = jax.tree.map(rel_err, default, ref)
    assert max(jax.tree.leaves(err_off)) < 1e-3, err_off
    assert max(jax.tree.leaves(err_default)) < 1e-3, err_default


@pytest.mark.parametrize("make", [train.make_train_step, train.make_eval_step])
def test_steps_compile_with_the_options(make):
    model = models.get_model("mlp", num_classes=10, depth=1)
    kwargs = {"model": model, "preprocess": lambda x, rng: x.astype(jnp.float32)}
    if make is train.make_train_step:
        kwargs.update(
            tx=train.make_optimizer(learning_rate=0.1, steps_per_epoch=1, num_epochs=1),
            objective=objectives.standard,
        )
    else:
        kwargs.update(num_classes=10)
    step = make(**kwargs)
    text = step.lower if hasattr(step, "lower") else None
    assert text is not None  # a real jitted function, so compile counters keep working
