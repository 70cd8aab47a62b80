"""A composition over data: calibration ranges (`fit_calibration`) and accuracy
(`evaluate_composed`), METHODS §5.7 step 5 and §10.6; `modjax.modular.compose` re-exports both.
"""

from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from modjax import loop
from modjax.modular._composed import Composed, Group
from modjax.typing import Batch


def fit_calibration(
    composed_or_group: Composed | Group,
    batches: Iterable[Batch],
    *,
    preprocess: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> tuple[np.ndarray, np.ndarray] | dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-class `(min, max)` of a group's logits over calibration data (METHODS §5.7 step 5).

    Use each group's own training data (its parent's training samples of the group's classes).

    Args:
        composed_or_group: a `Group`, or a `Composed` with one group.
        batches: batches `{"image", optional "mask"}` (padding rows with mask False ignored).
        preprocess: `(images, rng) -> float32` for the group's network (default: cast to
            float32).

    Returns:
        For a `Group`: `(min [k], max [k])` float32 NumPy; for a `Composed`: `{key: (min, max)}`.

    Raises:
        ValueError: a `Composed` with several groups (calibrate each group on its own data), or
            no valid rows in `batches`.
    """
    if isinstance(composed_or_group, Composed):
        if len(composed_or_group.groups) != 1:
            raise ValueError(
                f"fit_calibration of a Composed needs exactly one group, got "
                f"{len(composed_or_group.groups)}; calibrate each of composed.groups on its own "
                "parent's training data"
            )
        g = composed_or_group.groups[0]
        return {g.key: fit_calibration(g, batches, preprocess=preprocess)}
    g = composed_or_group
    cols = np.asarray(g.columns, np.int32)

    def step(variables, images, mask):
        x = preprocess(images, jax.random.PRNGKey(0)) if preprocess else images.astype(jnp.float32)
        z = g.model.apply(variables, x, train=False)[0][:, cols]
        m = mask[:, None]
        return jnp.min(jnp.where(m, z, jnp.inf), 0), jnp.max(jnp.where(m, z, -jnp.inf), 0)

    step = jax.jit(step)
    lo = np.full(len(cols), np.inf, np.float32)
    hi = np.full(len(cols), -np.inf, np.float32)
    for batch in batches:
        images = jnp.asarray(batch["image"])
        mask = jnp.asarray(batch.get("mask", np.ones(images.shape[0], bool)))
        a, b = jax.device_get(step(g.variables, images, mask))
        lo, hi = np.minimum(lo, a), np.maximum(hi, b)
    if not np.isfinite(lo).all():
        raise ValueError("fit_calibration saw no valid rows in batches")
    return lo, hi


def evaluate_composed(
    composed: Composed,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    preprocess: Callable[[jax.Array, jax.Array], jax.Array],
) -> dict[str, Any]:
    """Accuracy of a composition on the test samples of its classes (METHODS §10.6).

    Samples whose label is not in `composed.classes` are dropped; the rest are remapped to output
    positions and predicted by the argmax over all outputs. Batches have a fixed size (the last
    one padded and masked), so the step compiles once.

    Args:
        composed: from `compose` / `compose_one_by_one` / `calibrate`.
        images: `[n, H, W, C]` (uint8 or float).
        labels: `[n]` int, in the composition's output id space (`composed.classes`).
        batch_size: examples per step.
        preprocess: `(images, rng) -> float32` producing `apply_fn`'s input.

    Returns:
        `{"accuracy", "count", "correct", "per_class_accuracy": {id: acc}, "per_class_count":
        {id: n}}` (classes without test samples get NaN accuracy).

    Raises:
        ValueError: `batch_size` < 1, mismatched lengths, or no sample of the composed classes.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
    images, labels = np.asarray(images), np.asarray(labels)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    ids = np.asarray(composed.classes)
    k = len(ids)
    keep = np.isin(labels, ids)
    if not keep.any():
        raise ValueError(f"no test sample has a label in the composed classes {list(ids)}")
    images, labels = images[keep], labels[keep]
    position = np.searchsorted(np.sort(ids), labels)
    position = np.argsort(ids)[position].astype(np.int32)

    def eval_step(variables, batch):
        del variables  # the composition closes over its parameters
        y, mask = batch["label"], batch["mask"]
        pred = jnp.argmax(composed.apply_fn(preprocess(batch["image"], jax.random.PRNGKey(0))), -1)
        hit = ((pred == y) & mask).astype(jnp.int32)
        return {
            "correct": jnp.sum(hit),
            "count": jnp.sum(mask.astype(jnp.int32)),
            "loss_sum": jnp.zeros((), jnp.float32),  # no loss is defined across parents
            "per_class_correct": jax.ops.segment_sum(hit, y, num_segments=k),
            "per_class_count": jax.ops.segment_sum(mask.astype(jnp.int32), y, num_segments=k),
        }

    result = loop.evaluate(
        eval_step=jax.jit(eval_step),
        variables=None,
        images=images,
        labels=position,
        global_batch_size=batch_size,
        prefetch=0,
    )
    count = np.bincount(position, minlength=k)
    correct = np.rint(np.nan_to_num(result["per_class_accuracy"]) * count).astype(np.int64)
    per_class = result["per_class_accuracy"]
    return {
        "accuracy": float(correct.sum() / count.sum()),
        "correct": int(correct.sum()),
        "count": int(count.sum()),
        "per_class_accuracy": {int(c): float(a) for c, a in zip(ids, per_class)},
        "per_class_count": {int(c): int(m) for c, m in zip(ids, count)},
    }
