"""The FSE'20 training recipe for MLP-k×49: Keras-equivalent Adam, batch 32, epochs in `lax.scan`.

`modjax train` uses SGD with a cosine schedule (MwT/MODA); Pan & Rajan trained with Keras
`Adam(1e-3)` (β = 0.9/0.999, ε = 1e-7), sparse categorical cross-entropy, batch 32, reshuffled
every epoch, Glorot-uniform kernels and zero biases (the zoo MLP's `init="keras"`). One jitted
`lax.scan` runs a whole epoch; `train_many` vmaps independent runs (e.g. the 45 two-class
baselines) whose datasets differ in size: each run draws its batches from its own permutation,
wrapping around, for the number of steps of the largest run.
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from modjax import loop, models

KERAS_ADAM = {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-7}


def preprocess(images: np.ndarray, *, parity: bool) -> np.ndarray:
    """uint8 `[N, 28, 28, 1]` → float32 `[N, 784]` in [0, 1] (parity: [0, 1/255], §7.1)."""
    x = images.reshape(images.shape[0], -1).astype(np.float32) / 255.0
    return x / 255.0 if parity else x


def _loss(model, params, x, y):
    logits, _ = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


@functools.cache
def _epoch_fn(depth: int, num_classes: int, batch: int, steps: int):
    model = models.get_model("mlp", depth=depth, num_classes=num_classes)
    tx = optax.adam(**KERAS_ADAM)

    def one_run(params, opt_state, x, y, n, key):
        perm = jax.random.permutation(key, x.shape[0])
        # rows >= n are padding: rank them last, then wrap around the first n
        perm = jnp.argsort(jnp.where(perm < n, perm, perm + x.shape[0]))
        idx = perm[(jnp.arange(steps * batch) % n)].reshape(steps, batch)

        def step(carry, rows):
            p, s = carry
            g = jax.grad(lambda q: _loss(model, q, x[rows], y[rows]))(p)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), idx)
        return params, opt_state

    run = jax.vmap(one_run, in_axes=(0, 0, 0, 0, 0, 0))
    return model, tx, jax.jit(run)


class _Runs(NamedTuple):
    """State of `R` vmapped runs; one `loop.fit` step is one whole epoch of every run."""

    step: jax.Array
    params: dict
    opt_state: Any
    xs: jax.Array
    ys: jax.Array
    ns: jax.Array


def train_many(xs, ys, ns, *, depth, num_classes, epochs, seeds, batch=32, log=None):
    """Trains one MLP per run (vmapped); `xs [R, N, D]` padded, `ns [R]` true sizes.

    The epochs go through `modjax.loop.fit`, with one epoch (a `lax.scan` over its batches) as
    the loop's step and the data carried in the state.

    Returns:
        Params with a leading run axis.
    """
    steps = -(-int(max(ns)) // batch)
    model, tx, run = _epoch_fn(depth, num_classes, batch, steps)
    init = jax.vmap(lambda k: model.init(k, jnp.ones((1, xs.shape[-1])))["params"])
    params = init(jnp.stack([jax.random.key(int(s)) for s in seeds]))
    state = _Runs(
        jnp.zeros((), jnp.int32),
        params,
        jax.vmap(tx.init)(params),
        jnp.asarray(xs),
        jnp.asarray(ys),
        jnp.asarray(ns),
    )

    @jax.jit
    def epoch_step(state, batch):
        keys = jax.random.wrap_key_data(batch["key"])
        params, opt_state = run(state.params, state.opt_state, state.xs, state.ys, state.ns, keys)
        new = state._replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new, {
            "finite": jnp.all(
                jnp.isfinite(jnp.stack([jnp.max(jnp.abs(a)) for a in jax.tree.leaves(params)]))
            )
        }

    def epoch_batches(epoch):
        keys = [jax.random.key_data(jax.random.key(int(s) * 1000 + epoch + 1)) for s in seeds]
        return [{"key": np.stack([np.asarray(k) for k in keys])}]

    callbacks = [loop.check_finite()]
    if log:
        callbacks.append(loop.Callback(on_epoch_end=lambda event: log(event.epoch - 1)))
    state = loop.fit(
        train_step=epoch_step,
        state=state,
        epoch_batches=epoch_batches,
        steps_per_epoch=1,
        num_epochs=epochs,
        callbacks=callbacks,
        log_every=1,
        prefetch=0,
    )
    return state.params


def train(x, y, *, depth, num_classes=10, epochs=50, seed=0, log=None):
    """One Keras-recipe MLP on `x [N, 784]`, `y [N]`; returns its params."""
    params = train_many(
        x[None],
        y[None],
        [x.shape[0]],
        depth=depth,
        num_classes=num_classes,
        epochs=epochs,
        seeds=[seed],
        log=log,
    )
    return jax.tree.map(lambda a: a[0], params)


@functools.cache
def _mlp_logits(depth: int, num_classes: int):
    """`(params, x) -> logits` of one MLP shape (one function, so its eval step is reused)."""
    model = models.get_model("mlp", depth=depth, num_classes=num_classes)
    return lambda params, x: model.apply({"params": params}, x)[0]


def accuracy(depth, params, x, y, *, num_classes=10):
    """Top-1 accuracy of the MLP `params` on `x`, `y`."""
    predict = _mlp_logits(depth, num_classes)
    return loop.evaluate_predict(
        predict, x, y, num_classes=num_classes, batch_size=1000, variables=params
    )["accuracy"]
