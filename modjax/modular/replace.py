"""Module replacement: repair a weak model's target class with a strong model's module (§5.7).

Pipeline (METHODS §5.7)::

    x = make_adapter_inputs(weak_logits, strong_tc_logit, target_index=k)   # [B, N]
    params = train_adapter(weak_apply, strong_apply, weak_train_batches, target_index=k)
    logits = replaced_apply(weak_apply, strong_apply, params, target_index=k)(images)
    probs = cnnsplitter_patch(weak_logits, strong_score, s_min, s_max, target_index=k)  # baseline
    tc, non_tc = per_class_change(weak_acc, repaired_acc, target_index=k)
    result = evaluate_replacement(weak_apply, strong_apply, ...)  # all of the above, measured

Both networks stay frozen; only the adapter Lin(N, N) trains (CE on the weak training data, SGD
0.05 Nesterov, per-epoch cosine with T_max = epochs, 5 epochs). The adapter's input is the weak
logits with column `target_index` replaced by the strong module's TC logit. In the paper TC is the
last weak class (index 5 of 6), so this is exactly x = [weak logits of the 5 non-TC outputs,
strong TC logit]; for other indices the order differs only by a permutation, which a full linear
layer with i.i.d. N(0, 0.01²) initial weights absorbs.

Because both networks are frozen and evaluated without augmentation (the weak training images are
used as is, §5.7 step 1), `train_adapter` computes the adapter inputs once and then trains on
them; this is the same optimization as recomputing them every step.
"""

import math
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from modjax import data, loop, train
from modjax.objectives import cross_entropy
from modjax.typing import Batch

ADAPTER_INIT_STD = 0.01
"""Std of the adapter's initial weights (METHODS §5.7 step 4); its bias starts at 0."""

MINMAX_EPS = 1e-12
"""A strong score range at or below this is treated as 1 (no division by ~0)."""

AdapterParams = dict[str, jax.Array]
"""`{"kernel": float32 [N, N] (in, out), "bias": float32 [N]}`."""


class _AdapterState(NamedTuple):
    step: jax.Array
    params: AdapterParams
    opt_state: optax.OptState


def make_adapter_inputs(
    weak_logits: jax.Array, strong_tc_logit: jax.Array, *, target_index: int
) -> jax.Array:
    """The adapter's input: weak logits with the TC column replaced by the strong TC logit.

    Args:
        weak_logits: `[B, N]` logits of the weak model.
        strong_tc_logit: `[B]` or `[B, 1]`, the strong module's target-class logit.
        target_index: position of the target class in the weak model's outputs.

    Returns:
        float32 `[B, N]`: column `target_index` holds the strong logit, the others the weak ones.
    """
    weak_logits = jnp.asarray(weak_logits, jnp.float32)
    n = weak_logits.shape[-1]
    _check_index(target_index, n)
    strong = jnp.asarray(strong_tc_logit, jnp.float32).reshape(weak_logits.shape[0])
    return weak_logits.at[:, target_index].set(strong)


def _check_index(target_index: int, num_classes: int) -> None:
    if isinstance(target_index, bool) or not 0 <= int(target_index) < num_classes:
        raise ValueError(
            f"target_index={target_index!r} must be a weak output in [0, {num_classes})"
        )


def init_adapter(num_classes: int, *, seed: int = 0) -> AdapterParams:
    """Lin(N, N) with weights ~ N(0, 0.01²) and zero bias (METHODS §5.7 step 4)."""
    kernel = ADAPTER_INIT_STD * jax.random.normal(
        jax.random.PRNGKey(seed), (num_classes, num_classes), jnp.float32
    )
    return {"kernel": kernel, "bias": jnp.zeros((num_classes,), jnp.float32)}


def adapter_apply(params: AdapterParams, x: jax.Array) -> jax.Array:
    """`x [B, N] -> logits [B, N]` = x @ kernel + bias."""
    return x @ params["kernel"] + params["bias"]


def adapter_loss(params: AdapterParams, x: jax.Array, labels: jax.Array, where=None) -> jax.Array:
    """Mean cross-entropy of the adapter over the rows of `x [B, N]` where `where [B]` is True."""
    ce = cross_entropy(adapter_apply(params, x), labels)
    if where is None:
        return jnp.mean(ce)
    w = where.astype(jnp.float32)
    return jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)


def fit_adapter(
    x: np.ndarray,
    labels: np.ndarray,
    *,
    num_epochs: int = 5,
    learning_rate: float = 0.05,
    batch_size: int = 128,
    seed: int = 0,
) -> AdapterParams:
    """Trains the adapter on precomputed inputs (SGD, Nesterov 0.9, per-epoch cosine T_max=epochs).

    Every epoch visits all rows in a fresh order `(seed, epoch)` (`data.epoch_permutation`);
    the last batch is padded to `batch_size` and masked, so the jitted step compiles once. The
    epochs run in `loop.fit`.

    Args:
        x: `[n, N]` adapter inputs (`make_adapter_inputs`).
        labels: int `[n]` in `[0, N)`.
        num_epochs: epochs (5 in MODA 2026, 20 in 2024).
        learning_rate: peak learning rate.
        batch_size: rows per step (128, assumed in METHODS §9).
        seed: seeds the initial weights and the data order.

    Returns:
        The trained `AdapterParams`.
    """
    x, labels = np.asarray(x, np.float32), np.asarray(labels, np.int32)
    if x.ndim != 2 or len(x) != len(labels) or len(x) == 0:
        raise ValueError(
            f"x must be [n, N] with n = len(labels) > 0; got {x.shape}, {labels.shape}"
        )
    if num_epochs < 1 or batch_size < 1:
        raise ValueError(f"num_epochs={num_epochs} and batch_size={batch_size} must be >= 1")
    n, k = x.shape
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must lie in [0, {k}); got [{labels.min()}, {labels.max()}]")
    steps = math.ceil(n / batch_size)
    tx = train.make_optimizer(
        learning_rate=learning_rate, steps_per_epoch=steps, num_epochs=num_epochs
    )
    params = init_adapter(k, seed=seed)
    state = _AdapterState(jnp.zeros((), jnp.int32), params, tx.init(params))

    def step(state, batch):
        loss, grads = jax.value_and_grad(adapter_loss)(
            state.params, batch["x"], batch["label"], batch["mask"]
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "finite": jnp.isfinite(loss)}
        return _AdapterState(state.step + 1, params, opt_state), metrics

    def epoch_batches(epoch):  # every row once, in an order of (seed, epoch); last batch padded
        order = data.epoch_permutation(n, seed=seed, epoch=epoch)
        for s in range(steps):
            pos = s * batch_size + np.arange(batch_size)
            mask = pos < n
            idx = order[np.where(mask, pos, 0)]
            yield {"x": x[idx], "label": labels[idx], "mask": mask}

    state = loop.fit(
        train_step=jax.jit(step),
        state=state,
        epoch_batches=epoch_batches,
        steps_per_epoch=steps,
        num_epochs=num_epochs,
        log_every=steps,
        callbacks=[loop.check_finite()],
    )
    return jax.device_get(state.params)


def adapter_inputs_of(
    weak_apply: Callable[[jax.Array], jax.Array],
    strong_apply: Callable[[jax.Array], jax.Array],
    batches: Iterable[Batch],
    *,
    target_index: int,
) -> tuple[np.ndarray, np.ndarray]:
    """`(x [n, N], labels [n])` over the valid rows of `batches` (rows with `mask` False dropped).

    `weak_apply: images [B, ...] -> [B, N]`; `strong_apply: images -> [B]` or `[B, 1]`.
    """
    xs, ys = [], []
    for batch in batches:
        images = jnp.asarray(batch["image"])
        x = make_adapter_inputs(weak_apply(images), strong_apply(images), target_index=target_index)
        keep = np.asarray(batch.get("mask", np.ones(len(batch["label"]), bool)))
        xs.append(np.asarray(x)[keep])
        ys.append(np.asarray(batch["label"])[keep])
    if not xs:
        raise ValueError("batches is empty; expected the weak model's training batches")
    return np.concatenate(xs), np.concatenate(ys).astype(np.int32)


def train_adapter(
    weak_apply: Callable[[jax.Array], jax.Array],
    strong_apply: Callable[[jax.Array], jax.Array],
    train_batches: Iterable[Batch],
    *,
    target_index: int,
    num_epochs: int = 5,
    learning_rate: float = 0.05,
    batch_size: int = 128,
    seed: int = 0,
) -> AdapterParams:
    """MODA repair (§5.7 step 4): train Lin(N, N) over frozen weak logits + strong TC logit.

    Args:
        weak_apply: `images [B, H, W, C] -> logits [B, N]` of the frozen weak model (its own
            preprocessing inside).
        strong_apply: `images -> [B]` or `[B, 1]`, the frozen strong module's TC logit.
        train_batches: one pass over the weak training data, `{"image", "label" in [0, N),
            optional "mask"}` (e.g. `data.eval_batches`); labels are the weak model's ids.
        target_index: the target class's position in the weak outputs.
        num_epochs, learning_rate, batch_size, seed: see `fit_adapter`.

    Returns:
        `AdapterParams` (`kernel [N, N]`, `bias [N]`).
    """
    x, y = adapter_inputs_of(weak_apply, strong_apply, train_batches, target_index=target_index)
    return fit_adapter(
        x, y, num_epochs=num_epochs, learning_rate=learning_rate, batch_size=batch_size, seed=seed
    )


def replaced_apply(
    weak_apply: Callable[[jax.Array], jax.Array],
    strong_apply: Callable[[jax.Array], jax.Array],
    adapter_params: AdapterParams,
    *,
    target_index: int,
) -> Callable[[jax.Array], jax.Array]:
    """The repaired model `images -> logits [B, N]`: adapter(weak logits with strong TC logit)."""

    def apply(images):
        x = make_adapter_inputs(weak_apply(images), strong_apply(images), target_index=target_index)
        return adapter_apply(adapter_params, x)

    return apply


def cnnsplitter_patch(
    weak_logits: jax.Array,
    strong_score: jax.Array,
    strong_min: float,
    strong_max: float,
    *,
    target_index: int,
) -> jax.Array:
    """CNNSplitter-style baseline (§5.7 step 5): softmax(weak), TC probability overwritten.

    Args:
        weak_logits: `[B, N]`.
        strong_score: `[B]` or `[B, 1]`, the strong module's raw output.
        strong_min, strong_max: its min and max over the strong model's training set.
        target_index: the target class's position in the weak outputs.

    Returns:
        float32 `[B, N]`: softmax(weak_logits) with column `target_index` set to
        `(score − min) / (max − min)` (range ≤ 1e-12 treated as 1); predict with argmax.
    """
    probs = jax.nn.softmax(jnp.asarray(weak_logits, jnp.float32), axis=-1)
    _check_index(target_index, probs.shape[-1])
    span = strong_max - strong_min
    span = span if span > MINMAX_EPS else 1.0
    s = (jnp.asarray(strong_score, jnp.float32).reshape(probs.shape[0]) - strong_min) / span
    return probs.at[:, target_index].set(s)


def per_class_change(before, after, *, target_index: int) -> tuple[float, float]:
    """`(TC change, mean non-TC change)` of per-class accuracies (§5.7 step 6, "TC | non-TC").

    Args:
        before: `[N]` per-class accuracy of the weak model.
        after: `[N]` per-class accuracy of the repaired model.
        target_index: the target class's position.

    Returns:
        `(after[k] − before[k], mean over j ≠ k of after[j] − before[j])` as floats;
        classes with NaN accuracy (no test samples) are left out of the mean.
    """
    before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
    if before.shape != after.shape or before.ndim != 1:
        raise ValueError(f"before and after must both be [N]; got {before.shape}, {after.shape}")
    _check_index(target_index, len(before))
    diff = after - before
    rest = np.delete(diff, target_index)
    rest = rest[~np.isnan(rest)]
    return float(diff[target_index]), float(rest.mean()) if rest.size else float("nan")


APPROACHES = ("cnnsplitter", "moda_adapter")
"""The two repairs `evaluate_replacement` compares with the weak model (its result's keys)."""


def evaluate_replacement(
    weak_apply: Callable[[jax.Array], jax.Array],
    strong_apply: Callable[[jax.Array], jax.Array],
    *,
    train_batches: Iterable[Batch],
    test_images: np.ndarray,
    test_labels: np.ndarray,
    target_index: int,
    num_classes: int,
    strong_min: float,
    strong_max: float,
    num_epochs: int = 5,
    learning_rate: float = 0.05,
    batch_size: int = 128,
    seed: int = 0,
    eval_batch_size: int = 256,
) -> dict[str, Any]:
    """The replacement evaluation of METHODS §5.7 (steps 4-6): adapter, baseline, changes.

    Trains the MODA adapter over the frozen networks (`train_adapter`), builds the CNNSplitter-
    style baseline (`cnnsplitter_patch` with the strong score range), and measures the weak and
    both repaired models per class on the test set. `modjax replace` (`runs.replacement`) and
    the `moda_replace` table of `experiments.reproduce` both call this, so their results carry
    the same keys.

    Args:
        weak_apply: `images -> logits [B, N]` of the frozen weak model.
        strong_apply: `images -> [B]` (or `[B, 1]`), the frozen strong module's TC output.
        train_batches: one pass over the weak training data (see `train_adapter`).
        test_images, test_labels: the weak task's test set, labels in `[0, N)`.
        target_index: the target class's position in the weak outputs.
        num_classes: N, the weak model's outputs.
        strong_min, strong_max: the strong output's range on the strong training data.
        num_epochs, learning_rate, batch_size, seed: the adapter's training (`fit_adapter`).
        eval_batch_size: batch of the test passes.

    Returns:
        JSON-able `{"per_class_accuracy": {name: [N] floats (NaN: no sample)}, "accuracy":
        {name: overall}, "change": {approach: {"tc", "mean_non_tc"}}, "adapter_train_time_s"}`
        with `name` in `("weak", *APPROACHES)` and `approach` in `APPROACHES`; the changes are
        `per_class_change` of each repair against the weak model.
    """
    _check_index(target_index, num_classes)
    k = target_index
    t0 = time.perf_counter()
    params = train_adapter(
        weak_apply,
        strong_apply,
        train_batches,
        target_index=k,
        num_epochs=num_epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        seed=seed,
    )
    train_s = time.perf_counter() - t0
    predictors = {
        "weak": weak_apply,
        "cnnsplitter": lambda x: cnnsplitter_patch(
            weak_apply(x), strong_apply(x), strong_min, strong_max, target_index=k
        ),
        "moda_adapter": replaced_apply(weak_apply, strong_apply, params, target_index=k),
    }
    acc = {
        name: loop.evaluate_predict(
            f, test_images, test_labels, num_classes=num_classes, batch_size=eval_batch_size
        )["per_class_accuracy"]
        for name, f in predictors.items()
    }
    counts = np.bincount(np.asarray(test_labels), minlength=num_classes)
    return {
        "per_class_accuracy": {name: [float(v) for v in a] for name, a in acc.items()},
        "accuracy": {name: float(np.nansum(a * counts) / counts.sum()) for name, a in acc.items()},
        "change": {
            name: dict(
                zip(("tc", "mean_non_tc"), per_class_change(acc["weak"], acc[name], target_index=k))
            )
            for name in APPROACHES
        },
        "adapter_train_time_s": train_s,
    }


__all__ = [
    "APPROACHES",
    "adapter_apply",
    "adapter_inputs_of",
    "adapter_loss",
    "cnnsplitter_patch",
    "evaluate_replacement",
    "fit_adapter",
    "init_adapter",
    "make_adapter_inputs",
    "per_class_change",
    "replaced_apply",
    "train_adapter",
]
