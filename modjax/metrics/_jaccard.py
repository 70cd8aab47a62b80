"""MwT Jaccard cohesion and coupling of class modules, and per-batch Jaccard metrics (§10.4-5)."""

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from modjax.metrics._common import _bool_array, _class_set, _labels


class JaccardCohesion(NamedTuple):
    """MwT modularization-time cohesion (METHODS §10.4).

    Attributes:
        mean: mean of the defined per-class values (NaN if no class is defined).
        per_class: `[N]` float64, mean Jaccard over a class's sample pairs; NaN where no pair
            is defined (a single sample, or every pair's union empty).
        pair_counts: `[N]` int64, pairs with a non-empty union that were averaged.
        empty_union_pairs: `[N]` int64, pairs excluded because both AND-ed masks are empty.
    """

    mean: float
    per_class: np.ndarray
    pair_counts: np.ndarray
    empty_union_pairs: np.ndarray


def _pair_jaccard_sum(rows_fn, n: int, block_size: int, dtype) -> tuple[float, int, int]:
    """Σ J over pairs i < j of n binary rows, in `block_size` tiles: `(sum, defined, empty)`.

    `rows_fn(start, stop)` returns bool rows `[stop - start, K]`. Intersections come from a
    float matmul of 0/1 rows (exact while K < 2^24 in float32), unions from
    `|a| + |b| − inter`; extra memory is O(block_size · (K + block_size)).
    """
    sizes = np.concatenate(
        [rows_fn(s, min(n, s + block_size)).sum(axis=1) for s in range(0, n, block_size)]
        or [np.zeros(0, np.int64)]
    ).astype(np.float64)
    total, defined, empty = 0.0, 0, 0
    for r0 in range(0, n, block_size):
        r1 = min(n, r0 + block_size)
        rows = rows_fn(r0, r1).astype(dtype)
        for c0 in range(r0, n, block_size):
            c1 = min(n, c0 + block_size)
            cols = rows if c0 == r0 else rows_fn(c0, c1).astype(dtype)
            inter = (rows @ cols.T).astype(np.float64)
            union = sizes[r0:r1, None] + sizes[None, c0:c1] - inter
            pair = np.ones(inter.shape, bool)
            if c0 == r0:
                pair = np.triu(pair, k=1)
            ok = pair & (union > 0)
            empty += int(np.count_nonzero(pair & (union == 0)))
            defined += int(np.count_nonzero(ok))
            total += float(np.sum(inter[ok] / union[ok]))
    return total, defined, empty


def jaccard_cohesion(
    sample_masks: ArrayLike, labels: ArrayLike, U: ArrayLike, *, block_size: int = 1024
) -> JaccardCohesion:
    """Mean Jaccard index between the module-restricted masks of same-class samples.

    For each class c, every class-c sample mask is AND-ed with u_c and J(a, b) = |a∧b|/|a∨b| is
    averaged over all unordered pairs i < j (equal to MwT's cyclic-shift mean over i ≠ j); the
    result is the mean over classes. Pairs whose AND-ed masks are both empty have an undefined J
    (NaN in the reference): they are excluded and counted in `empty_union_pairs`. Intersections
    are blocked binary matmuls, never an n × n × K tensor; memory is bounded by `block_size`.

    Args:
        sample_masks: `[n, K]` bool, binary masks 1[m > 0] of the (training) samples.
        labels: `[n]` int class of each sample, in `[0, N)`.
        U: `[N, K]` bool class modules.
        block_size: rows per tile (tiles are `block_size × block_size` pairs).

    Returns:
        A `JaccardCohesion` (higher is better).

    Raises:
        TypeError: for non-boolean masks. ValueError: for mismatched shapes, bad labels, a class
        of `U` with no samples (an empty class) or a non-positive `block_size`.

    References:
        METHODS §10.4; `qibinhang/MwT, src/modularizer.py::eval_module_cohesion`.

    Example:
        >>> masks = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 1, 1]], bool)
        >>> U = np.array([[1, 1, 0], [0, 1, 1]], bool)
        >>> r = jaccard_cohesion(masks, np.array([0, 0, 1, 1]), U)
        >>> r.per_class.tolist(), r.mean
        ([0.5, 1.0], 0.75)
    """
    B = _bool_array(sample_masks, "sample_masks", 2)
    U = _class_set(U)
    if B.shape[1] != U.shape[1]:
        raise ValueError(
            f"sample_masks has K={B.shape[1]} kernels but U has K={U.shape[1]}; they must match"
        )
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size={block_size!r} must be a positive int")
    num_classes, K = U.shape
    labels = _labels(labels, B.shape[0], num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    if np.any(counts == 0):
        raise ValueError(
            f"classes {np.flatnonzero(counts == 0).tolist()} have no samples in labels; cohesion "
            "needs samples of every class of U (an empty class)"
        )
    dtype = np.float32 if K < 2**24 else np.float64
    per_class = np.full(num_classes, math.nan)
    defined = np.zeros(num_classes, np.int64)
    empty = np.zeros(num_classes, np.int64)
    for c in range(num_classes):
        idx, u = np.flatnonzero(labels == c), U[c]
        total, defined[c], empty[c] = _pair_jaccard_sum(
            lambda s, e, idx=idx, u=u: B[idx[s:e]] & u, len(idx), block_size, dtype
        )
        if defined[c]:
            per_class[c] = total / defined[c]
    ok = ~np.isnan(per_class)
    mean = float(per_class[ok].mean()) if ok.any() else math.nan
    return JaccardCohesion(mean, per_class, defined, empty)


class JaccardCoupling(NamedTuple):
    """MwT modularization-time coupling (METHODS §10.4).

    Attributes:
        mean: mean J(u_c, u_c′) over class pairs c ≠ c′ with a non-empty union (NaN if none).
        per_pair: `[N, N]` float64 symmetric Jaccard matrix; NaN on the diagonal and where both
            modules are empty.
        empty_union_pairs: unordered class pairs excluded because both modules are empty.
    """

    mean: float
    per_pair: np.ndarray
    empty_union_pairs: int


def jaccard_coupling(U: ArrayLike) -> JaccardCoupling:
    """Mean Jaccard index between the kernel sets of different class modules.

    The mean over ordered pairs c ≠ c′ equals the mean over unordered pairs c < c′.

    Args:
        U: `[N, K]` bool class modules, N ≥ 2.

    Returns:
        A `JaccardCoupling` (lower is better).

    Raises:
        TypeError: for a non-boolean `U`. ValueError: for fewer than 2 classes.

    References:
        METHODS §10.4; `qibinhang/MwT, src/modularizer.py::eval_module_coupling`.

    Example:
        >>> U = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], bool)
        >>> round(jaccard_coupling(U).mean, 4)
        0.2222
    """
    U = _class_set(U)
    num_classes = U.shape[0]
    if num_classes < 2:
        raise ValueError(f"U has {num_classes} class; coupling needs at least 2")
    Uf = U.astype(np.float64)
    inter = Uf @ Uf.T
    sizes = Uf.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        per_pair = np.where(union > 0, inter / np.where(union > 0, union, 1), math.nan)
    np.fill_diagonal(per_pair, math.nan)
    upper = per_pair[np.triu_indices(num_classes, k=1)]
    ok = ~np.isnan(upper)
    mean = float(upper[ok].mean()) if ok.any() else math.nan
    return JaccardCoupling(mean, per_pair, int((~ok).sum()))


class BatchJaccard(NamedTuple):
    """Per-batch Jaccard metrics (METHODS §10.5); every field a scalar `jax.Array`.

    Attributes:
        cohesion: mean J over same-class pairs i < j with a non-empty union; 0 if there are none.
        coupling: mean J over different-class pairs; 0 if there are none.
        kernel_rate: MwT's per-batch "KRR", the mean bit of the concatenated masks.
        same_pairs: int32, same-class pairs averaged (exclude the batch from a cohesion mean
            over batches when 0, METHODS §11.3).
        diff_pairs: int32, different-class pairs averaged.
        empty_union_pairs: int32, valid pairs excluded because both masks are empty.
    """

    cohesion: jax.Array
    coupling: jax.Array
    kernel_rate: jax.Array
    same_pairs: jax.Array
    diff_pairs: jax.Array
    empty_union_pairs: jax.Array


def batch_jaccard_metrics(
    batch_masks: ArrayLike | Sequence[ArrayLike],
    labels: ArrayLike,
    *,
    where: ArrayLike | None = None,
) -> BatchJaccard:
    """Cohesion, coupling and kernel rate of one batch's binary masks (traceable under `jit`).

    Concatenates the per-layer masks, then takes the Jaccard index of every pair i < j of valid
    samples (`inter = M Mᵀ`, B × B: cheap at eval batch sizes). Undefined means are 0 and their
    pair count is 0, so callers average over batches with a non-zero count (METHODS §11.3).

    Args:
        batch_masks: `[B, K]` bool, or a sequence of per-layer `[B, C_l]` bool masks (the
            order does not matter); binarize soft masks with `m > 0`.
        labels: `[B]` int labels.
        where: optional `[B]` bool validity mask (padded eval batches); invalid rows are ignored.

    Returns:
        A `BatchJaccard` of scalar arrays.

    Raises:
        TypeError: for non-boolean masks. ValueError: for mismatched shapes.

    References:
        METHODS §10.5; `qibinhang/MwT, src/standard_trainer.py::cal_modular_metrics`.

    Example:
        >>> masks = jnp.array([[1, 1, 0], [1, 0, 0], [0, 1, 1]], bool)
        >>> r = batch_jaccard_metrics(masks, jnp.array([0, 0, 1]))
        >>> float(r.cohesion), float(r.coupling), round(float(r.kernel_rate), 4)
        (0.5, 0.1666666716337204, 0.5556)
    """
    if isinstance(batch_masks, Sequence) and not hasattr(batch_masks, "shape"):
        layers = [jnp.asarray(m) for m in batch_masks]
        if not layers:
            raise ValueError("batch_masks is an empty list of layers")
    else:
        layers = [jnp.asarray(batch_masks)]
    for i, m in enumerate(layers):
        if m.dtype != jnp.bool_:
            raise TypeError(f"batch_masks[{i}] must be boolean; got dtype {m.dtype} (use `m > 0`)")
        if m.ndim != 2 or m.shape[0] != layers[0].shape[0]:
            raise ValueError(
                f"batch_masks[{i}] has shape {m.shape}; expected [B={layers[0].shape[0]}, C]"
            )
    masks = jnp.concatenate(layers, axis=1).astype(jnp.float32)
    batch = masks.shape[0]
    labels = jnp.asarray(labels)
    if labels.shape != (batch,):
        raise ValueError(f"labels has shape {labels.shape}; expected [{batch}]")
    valid = jnp.ones(batch, bool) if where is None else jnp.asarray(where, bool)
    if valid.shape != (batch,):
        raise ValueError(f"where has shape {valid.shape}; expected [{batch}]")
    inter = jnp.matmul(masks, masks.T, precision=jax.lax.Precision.HIGHEST)
    sizes = jnp.sum(masks, axis=1)
    union = sizes[:, None] + sizes[None, :] - inter
    pair = jnp.triu(jnp.ones((batch, batch), bool), k=1) & valid[:, None] & valid[None, :]
    nonempty = union > 0
    one, zero = jnp.float32(1), jnp.float32(0)
    jac = jnp.where(nonempty, inter / jnp.where(nonempty, union, one), zero)
    same = labels[:, None] == labels[None, :]
    same_ok, diff_ok = pair & nonempty & same, pair & nonempty & ~same
    n_same, n_diff = jnp.sum(same_ok, dtype=jnp.int32), jnp.sum(diff_ok, dtype=jnp.int32)

    def mean(selected, count):
        total = jnp.sum(jnp.where(selected, jac, zero))
        return jnp.where(count > 0, total / jnp.maximum(count, 1).astype(jnp.float32), zero)

    n_valid = jnp.sum(valid, dtype=jnp.int32)
    bits = jnp.sum(jnp.where(valid[:, None], masks, zero))
    slots = (jnp.maximum(n_valid, 1) * masks.shape[1]).astype(jnp.float32)
    kernel_rate = jnp.where(n_valid > 0, bits / slots, zero)
    return BatchJaccard(
        cohesion=mean(same_ok, n_same),
        coupling=mean(diff_ok, n_diff),
        kernel_rate=kernel_rate,
        same_pairs=n_same,
        diff_pairs=n_diff,
        empty_union_pairs=jnp.sum(pair & ~nonempty, dtype=jnp.int32),
    )
