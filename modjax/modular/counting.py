"""The counting pass of module extraction: per-class activity counts and their frequencies.

One jitted pass (`make_count_step`) counts, for every layer and class at once, the samples whose
binary indicator of each unit is 1; `class_frequencies` divides by the class sizes on the host.
`modjax.modularize` re-exports both and `Counts`.
"""

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from modjax import parallel
from modjax.models import MASK_SUFFIX
from modjax.modular.module import check_method
from modjax.typing import Batch


class Counts(NamedTuple):
    """Per-class activity counts over real (unpadded) samples; sums over batches add up.

    Attributes:
        per_class_active: `{layer: int32 [num_classes, C]}`: samples of class c whose binary
            indicator of unit u is 1.
        per_class_count: int32 `[num_classes]`: samples of each class.
    """

    per_class_active: dict[str, Any]
    per_class_count: Any


def _indicators(
    acts: Mapping[str, jax.Array], method: str, layers: tuple[str, ...] | None
) -> dict[str, jax.Array]:
    """Binary indicators `{layer: bool [B, C]}` of one forward pass (forward order)."""
    if method == "mwt":
        found = {n.removesuffix(MASK_SUFFIX): a for n, a in acts.items() if n.endswith(MASK_SUFFIX)}
        if not found:
            raise ValueError(
                "method='mwt' needs generator masks: the model's acts have no "
                f"'<conv>{MASK_SUFFIX}' entries; build it with mask_generators=True"
            )
    else:
        found = {n: a for n, a in acts.items() if not n.endswith(MASK_SUFFIX)}
    if layers is not None:
        missing = [n for n in layers if n not in found]
        if missing:
            raise ValueError(
                f"layers {missing} are not {method} layers of the model; valid: {list(found)}"
            )
        found = {n: found[n] for n in layers}
    out = {}
    for name, a in found.items():
        if method == "mwt":
            out[name] = a > 0  # kernel k relevant to sample i ⇔ m_ik > 0 (§4.1)
        elif a.ndim > 2:
            # A[s, u] = mean |a| ≠ 0 ⇔ some position is non-zero (> 0 after ReLU) (§5.4).
            out[name] = jnp.any(a != 0, axis=tuple(range(1, a.ndim - 1)))
        else:
            out[name] = a != 0
    return out


def make_count_step(
    *,
    model: nn.Module,
    preprocess: Callable[[jax.Array, jax.Array], jax.Array],
    num_classes: int,
    method: str,
    layers: Sequence[str] | None = None,
    mesh: Mesh | None = None,
    sample_masks: bool = False,
) -> Callable[[dict[str, Any], Batch], Any]:
    """Builds the jitted `(variables, batch) -> Counts` pass of module extraction.

    Runs the model in eval mode (BN running statistics) and counts, for every layer and every
    class at once, the real samples whose binary indicator is 1:

    - MwT: generator mask m > 0 (METHODS §4.5 step 2).
    - MODA: post-ReLU activation non-zero at any spatial position (conv) or the unit itself
      (dense) (METHODS §5.4 step 2).

    Per-class sums use `jax.ops.segment_sum` with the static `num_classes`, so one pass over
    the training set serves all classes; shapes are fixed, so the step compiles once. Rows with
    `batch["mask"]` False (padding from `data.eval_batches`) are ignored, as are labels outside
    `[0, num_classes)`. Under `mesh` the batch is sharded on "data" and `variables` replicated;
    XLA reduces the class sums over the global batch.

    Args:
        model: a zoo model (`apply(variables, x, train=False) -> (logits, acts)`).
        preprocess: `(uint8 images, rng) -> float32`; use the test transform (no augmentation,
            METHODS §12 row 2). It receives a fixed key.
        num_classes: N.
        method: `"mwt"` or `"moda"`.
        layers: the layers to count (MwT: masked conv names without `"/mask"`); default all.
        mesh: device mesh for data parallelism, or None.
        sample_masks: also return each sample's binary indicators, concatenated over the
            layers in sorted name order (bool `[B, K]`; MwT's b_i of the Jaccard cohesion, §10.4).

    Returns:
        A jitted function `(variables, batch) -> Counts` with int32 `per_class_active
        {layer: [N, C]}` and `per_class_count [N]`; with `sample_masks`, `(Counts, bool [B, K])`. `batch` holds `"image"`, `"label"` and
        optionally `"mask"` (bool `[B]`).

    Raises:
        ValueError: bad `method` or `num_classes`; at the first call, unknown `layers`, or MwT
            on a model without generators.
    """
    check_method(method)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be an int >= 1")
    selected = None if layers is None else tuple(n.removesuffix(MASK_SUFFIX) for n in layers)
    args = (model, preprocess, num_classes, method, selected, mesh, sample_masks)
    try:  # one jitted function per configuration, so repeated extractions reuse its compile
        return _cached_count_step(*args)
    except TypeError:  # an unhashable model or preprocess: build without the cache
        return _count_step(*args)


@functools.lru_cache(maxsize=16)
def _cached_count_step(*args):
    return _count_step(*args)


def _count_step(model, preprocess, num_classes, method, selected, mesh, sample_masks):
    def count_fn(variables, batch):
        images = preprocess(batch["image"], jax.random.PRNGKey(0))
        labels = batch["label"].astype(jnp.int32)
        valid = batch["mask"] if "mask" in batch else jnp.ones(labels.shape, bool)
        _, acts = model.apply(variables, images, train=False)

        def per_class(x):  # [B, ...] int32 -> [N, ...]; invalid rows contribute 0
            x = x * valid.reshape(valid.shape + (1,) * (x.ndim - 1)).astype(jnp.int32)
            return jax.ops.segment_sum(x, labels, num_segments=num_classes)

        indicators = _indicators(acts, method, selected)
        active = {name: per_class(b.astype(jnp.int32)) for name, b in indicators.items()}
        counts = Counts(active, per_class(jnp.ones(labels.shape, jnp.int32)))
        if not sample_masks:
            return counts
        return counts, jnp.concatenate([indicators[n] for n in sorted(indicators)], axis=1)

    kwargs = {}
    if mesh is not None:
        rep = parallel.replicated(mesh)
        out = (rep, parallel.batch_sharding(mesh)) if sample_masks else rep
        kwargs.update(in_shardings=(rep, parallel.batch_sharding(mesh)), out_shardings=out)
    return jax.jit(count_fn, **kwargs)


def class_frequencies(counts: Counts) -> dict[str, np.ndarray]:
    """Per-class activity frequencies f_c[u] = count_c[u] / |S_c| (host NumPy).

    Frequencies are float64 so that a ratio equal to a decimal threshold (e.g. 9/10 vs 0.9)
    compares as it does in exact arithmetic.

    Args:
        counts: `Counts` summed over the whole training set (device or host arrays).

    Returns:
        `{layer: float64 [N, C]}` in [0, 1].

    Raises:
        ValueError: if a class has no samples (its module is undefined).

    Example:
        >>> c = Counts({"fc": np.array([[3, 0], [1, 2]])}, np.array([3, 4]))
        >>> class_frequencies(c)["fc"].tolist()
        [[1.0, 0.0], [0.25, 0.5]]
    """
    counts = jax.device_get(counts)
    n = np.asarray(counts.per_class_count)
    empty = np.flatnonzero(n <= 0)
    if empty.size:
        raise ValueError(
            f"class {int(empty[0])} has no samples (per_class_count={n.tolist()}); every class "
            "needs training samples to extract its module"
        )
    out = {}
    for name, c in counts.per_class_active.items():
        c = np.asarray(c)
        if c.ndim != 2 or c.shape[0] != n.shape[0]:
            raise ValueError(
                f"counts for layer {name!r} have shape {c.shape}; expected ({n.shape[0]}, C)"
            )
        out[name] = c.astype(np.float64) / n[:, None]
    return out
