"""CI and TI for convolutions (ICSE'22, METHODS §7.7): inactive-position maps in closed form.

Conv layers share their weights, so CI removes no edge; it keeps, per ReLU point, a map over the
flattened H·W·C pre-activation of the positions that were ≤ 0 for every concerned input (the
first input initializes the map, each later one removes the positions > 0 for it). TI then
re-activates the positions that are > 0 for any unconcerned input. Both rules are order-free
set operations, so the map of class c is

    inactive_c = AND_{x ∈ positives_c} [z(x) ≤ 0]  AND  AND_{x ∈ negatives_c} [z(x) ≤ 0],

with z the parent's pre-activation (monitoring pass: the parent's own forward pass, ReLUs
included; METHODS §7.7 fixes no other pass for CNNs). TI at 1:1 draws its negatives from every
other class, the same images for every module, so `class_reductions` reduces each class's
samples once and `inactive_maps` forms every class's map from them: C reductions, not C·(C−1).

The dense head is the output layer: FSE'20's CI and TI leave an output layer's edges as they
are (copy, then the max/min rule keeps both signs; METHODS §7.2), so CI/TI change only maps.
"""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from modjax.decompose.cnn.parent import run


def inactive_and(
    params: Mapping[str, Any],
    samples: jax.Array,
    *,
    valid: jax.Array | None = None,
    chunk: int = 64,
) -> dict[str, jax.Array]:
    """Positions whose pre-activation is ≤ 0 for every sample: `{point: bool [H, W, C]}`.

    Args:
        params: the parent's `params`.
        samples: `[N, H, W, C]` preprocessed images (N ≥ 1).
        valid: `[N]` bool, False for padding rows (ignored); None means all valid.
        chunk: samples per forward pass (a `lax.scan` over chunks bounds the memory).

    Returns:
        The AND over valid samples of `pre-activation ≤ 0`, all True when none is valid.

    Example:
        >>> from modjax import models
        >>> m = models.get_model("resnet_cifar", depth=8, width=0.25, batch_norm=False)
        >>> x = jax.random.normal(jax.random.key(1), (5, 8, 8, 3))
        >>> p = m.init(jax.random.key(0), x)["params"]
        >>> maps = inactive_and(p, x, chunk=2)
        >>> maps["stem"].shape, bool(jnp.all(maps["stem"] == jnp.all(run(p, x)[1]["stem"] <= 0, 0)))
        ((8, 8, 4), True)
    """
    n = samples.shape[0]
    if n == 0:
        raise ValueError("samples is empty; an inactive-position map needs at least one sample")
    if valid is None:
        valid = jnp.ones(n, bool)
    chunk = max(1, min(chunk, n))
    pad = -n % chunk
    xs = jnp.concatenate([samples, jnp.zeros((pad, *samples.shape[1:]), samples.dtype)])
    ok = jnp.concatenate([valid, jnp.zeros(pad, bool)])
    xs = xs.reshape(-1, chunk, *samples.shape[1:])
    ok = ok.reshape(-1, chunk)

    def step(carry, batch):
        x, v = batch
        _, pre = run(params, x)
        bshape = (-1,) + (1,) * 3
        new = {k: carry[k] & jnp.all((z <= 0) | ~v.reshape(bshape), axis=0) for k, z in pre.items()}
        return new, None

    shapes = jax.eval_shape(lambda x: run(params, x)[1], xs[0])
    init = {k: jnp.ones(s.shape[1:], bool) for k, s in shapes.items()}
    return jax.lax.scan(step, init, (xs, ok))[0]


def class_reductions(
    params: Mapping[str, Any],
    positives: jax.Array,
    negatives: jax.Array,
    *,
    valid: jax.Array | None = None,
    chunk: int = 64,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """`inactive_and` of every class's positives and of every class's TI samples (vmapped).

    Args:
        params: the parent's `params`.
        positives: `[C, P, H, W, C_in]` CI samples of each class.
        negatives: `[C, Q, H, W, C_in]` TI samples drawn *from* each class (they serve as
            negatives of every other class's module).
        valid: `[C, P]` bool marking real positives, or None.
        chunk: as in `inactive_and`.

    Returns:
        `(pos, neg)`, each `{point: bool [C, H, W, C_out]}`.
    """
    if valid is None:
        valid = jnp.ones(positives.shape[:2], bool)
    pos = jax.vmap(lambda x, v: inactive_and(params, x, valid=v, chunk=chunk))(positives, valid)
    neg = jax.vmap(lambda x: inactive_and(params, x, chunk=chunk))(negatives)
    return pos, neg


def inactive_maps(
    pos: Mapping[str, jax.Array], neg: Mapping[str, jax.Array]
) -> dict[str, jax.Array]:
    """Every class's CI + TI inactive maps: its positives' map AND the other classes' TI maps.

    Args:
        pos, neg: from `class_reductions`, `{point: bool [C, ...]}`.

    Returns:
        `{point: bool [C, ...]}`, True where module c zeroes the position.

    Example:
        >>> pos = {"a": jnp.array([[True, True], [True, False]])}
        >>> neg = {"a": jnp.array([[True, False], [True, True]])}
        >>> inactive_maps(pos, neg)["a"].tolist()
        [[True, True], [True, False]]
    """

    def one(c):
        out = {}
        for k in pos:
            others = jnp.arange(neg[k].shape[0]) != c
            shape = (-1,) + (1,) * (neg[k].ndim - 1)
            out[k] = pos[k][c] & jnp.all(neg[k] | ~others.reshape(shape), axis=0)
        return out

    num = next(iter(pos.values())).shape[0]
    return jax.vmap(one)(jnp.arange(num))
