"""Same-class / different-class cosine-similarity pair statistics in O(B·D) (METHODS §2.3, §11)."""

from typing import NamedTuple

import jax
import jax.numpy as jnp

# Squared-norm floor of `normalize`: sqrt(max(sum(v²), 1e-24)) == max(‖v‖₂, 1e-12), PyTorch's
# `F.normalize` eps, but with a gradient of 0 (not NaN) below the floor (METHODS §2.2).
_SQ_NORM_FLOOR = 1e-24


class PairStats(NamedTuple):
    """Pair statistics of one layer over the pairs i < j of a batch.

    Attributes:
        same_mean: scalar, mean cosine similarity over same-class pairs; 0 if there are none.
        diff_mean: scalar, mean cosine similarity over different-class pairs; 0 if there are none.
        same_sum: scalar, s⁺ = sum of the cosine similarities over same-class pairs.
        diff_sum: scalar, s⁻ = sum over different-class pairs.
        same_count: scalar int32, n⁺ = number of same-class pairs.
        diff_count: scalar int32, n⁻ = number of different-class pairs.
    """

    same_mean: jax.Array
    diff_mean: jax.Array
    same_sum: jax.Array
    diff_sum: jax.Array
    same_count: jax.Array
    diff_count: jax.Array


def compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """float32 for half/bfloat16/float32 inputs (and ints); float64 stays float64."""
    if jnp.issubdtype(dtype, jnp.floating):
        return jnp.promote_types(dtype, jnp.float32)
    return jnp.dtype(jnp.float32)


def normalize(v: jax.Array) -> jax.Array:
    """Row-wise L2 normalization `v / max(‖v‖₂, 1e-12)` with finite gradients everywhere.

    The denominator is `sqrt(max(sum(v²), 1e-24))`: the same value as PyTorch's `F.normalize`, and
    below the floor its gradient is 0, so an all-zero row maps to 0 with Jacobian `I / 1e-12`
    (never NaN, unlike `jnp.linalg.norm` at 0).

    Args:
        v: `[batch, dim]` float.

    Returns:
        `[batch, dim]`, same dtype as `v`.

    References:
        METHODS §2.2.
    """
    sq = jnp.sum(v * v, axis=-1, keepdims=True)
    return v / jnp.sqrt(jnp.maximum(sq, _SQ_NORM_FLOOR))


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """`num / den` where `den > 0`, else 0, with a zero (finite) gradient in the undefined case."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


def _zero_invalid(x: jax.Array, where: jax.Array | None) -> jax.Array:
    """Zeroes the rows of `x` where `where` is False, so no NaN/inf reaches a masked reduction."""
    if where is None:
        return x
    return jnp.where(where.reshape(where.shape + (1,) * (x.ndim - 1)), x, 0)


def _valid_mean(values: jax.Array, where: jax.Array | None) -> jax.Array:
    """Mean of `[batch]` values over the rows where `where` holds (0 if none)."""
    if where is None:
        return jnp.mean(values)
    return _safe_div(jnp.sum(jnp.where(where, values, 0)), jnp.sum(where, dtype=values.dtype))


def _pair_stats(same_sum, diff_sum, same_count, diff_count) -> PairStats:
    """`PairStats` from pair sums and counts; a mean over no pairs is 0 (METHODS §11.3)."""
    return PairStats(
        same_mean=_safe_div(same_sum, same_count.astype(same_sum.dtype)),
        diff_mean=_safe_div(diff_sum, diff_count.astype(diff_sum.dtype)),
        same_sum=same_sum,
        diff_sum=diff_sum,
        same_count=same_count,
        diff_count=diff_count,
    )


def pair_counts(
    labels: jax.Array, *, num_classes: int, where: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Numbers of same-class and different-class pairs i < j among the valid rows.

    Args:
        labels: `[batch]` int class ids in `[0, num_classes)`; rows outside that range are ignored
            (as `jax.ops.segment_sum` drops them; values cannot be checked inside `jit`).
        num_classes: static number of classes N.
        where: optional `[batch]` bool; rows with `False` are ignored.

    Returns:
        `(same_count, diff_count)`, int32 scalars n⁺ = Σ_c n_c(n_c − 1)/2 and
        n⁻ = (n² − Σ_c n_c²)/2, where n = Σ_c n_c. Exact while the valid batch is < 46,341 rows.
    """
    return _counts_to_pairs(_class_counts(labels, num_classes, where))


def _class_counts(labels, num_classes, where=None) -> jax.Array:
    """`[num_classes]` int32 n_c over valid rows (out-of-range labels are dropped)."""
    ones = jnp.ones(labels.shape, jnp.int32) if where is None else where.astype(jnp.int32)
    return jax.ops.segment_sum(ones, labels, num_segments=num_classes)


def _counts_to_pairs(per_class_count: jax.Array) -> tuple[jax.Array, jax.Array]:
    n = jnp.sum(per_class_count)
    sq = jnp.sum(per_class_count * per_class_count)
    return (sq - n) // 2, (n * n - sq) // 2


def pair_statistics(
    v: jax.Array, labels: jax.Array, *, num_classes: int, where: jax.Array | None = None
) -> PairStats:
    """Same-class and different-class cosine-similarity sums, counts and means over pairs i < j.

    Uses the exact O(B·D) "Q form" (METHODS §11.2): with u_i = normalize(v_i), q_i = ‖u_i‖²,
    per-class sums S_c = Σ_{y_i=c} u_i and Q_c = Σ_{y_i=c} q_i from `jax.ops.segment_sum`,

        s⁺ = Σ_{c: n_c ≥ 2} (‖S_c‖² − Q_c) / 2,    s⁻ = Σ_{c<c'} S_c·S_c' = Σ_c S_c·P_c,

    where P_c = Σ_{c'<c} S_c' (an exclusive cumulative sum over classes). Both equal the §11.2
    forms (Σ_c ‖S_c‖² − Q)/2 and (‖T‖² − Σ_c ‖S_c‖²)/2 exactly, but round better: singleton classes
    contribute exactly 0 and s⁻ involves no subtraction, so float32 errors stay at the level of
    the pairwise sum instead of ε·B². No `[batch, batch]` matrix is formed; memory is O(N·D).
    Statistics are computed in float32 (float64 inputs stay float64). Under `jit` with the batch sharded, the segment sums cover
    the global batch, so the result equals a single-device computation (METHODS §11.4).

    An empty pair set gives a mean of 0 with a zero gradient (METHODS §11.3); callers can tell from
    the counts whether a mean is defined.

    Args:
        v: `[batch, dim]` float vectors (masks or reduced activations of one layer).
        labels: `[batch]` int class ids in `[0, num_classes)`; out-of-range rows are ignored.
        num_classes: static number of classes N.
        where: optional `[batch]` bool; rows with `False` contribute nothing (no pairs).

    Returns:
        A `PairStats` of scalars.

    Example:
        >>> import jax.numpy as jnp
        >>> v = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> stats = pair_statistics(v, jnp.array([0, 0, 1]), num_classes=2)
        >>> float(stats.same_mean), float(stats.diff_mean), int(stats.diff_count)
        (1.0, 0.0, 2)

    References:
        METHODS §2.3 (definition), §11.2 (derivation), §11.3 (edge cases).
    """
    if v.ndim != 2:
        raise ValueError(f"v must be [batch, dim]; got shape {v.shape}")
    if labels.shape != v.shape[:1]:
        raise ValueError(f"labels must be [batch]={v.shape[:1]}; got shape {labels.shape}")
    v = v.astype(compute_dtype(v.dtype))
    if where is not None:
        # Masked rows are zeroed before anything else, so their values (even NaN) never reach the
        # sums and no gradient flows back to them; their labels become -1, which segment_sum drops.
        v = jnp.where(where[:, None], v, 0)
        labels = jnp.where(where, labels, -1)
    sq = jnp.sum(v * v, axis=-1)
    u = v / jnp.sqrt(jnp.maximum(sq, _SQ_NORM_FLOOR))[:, None]  # == normalize(v)
    # q_i = ‖u_i‖² = sq_i / max(sq_i, 1e-24): exactly 1 at or above the floor (zero gradient),
    # sq_i / 1e-24 below it (0 for an all-zero row). No extra pass over u.
    q = jnp.where(sq >= _SQ_NORM_FLOOR, 1, sq / _SQ_NORM_FLOOR)
    per_class_sum = jax.ops.segment_sum(u, labels, num_segments=num_classes)  # S: [N, D]
    per_class_q = jax.ops.segment_sum(q, labels, num_segments=num_classes)  # Q_c: [N]
    per_class_count = _class_counts(labels, num_classes)  # n_c: [N]
    class_sq = jnp.sum(per_class_sum * per_class_sum, axis=-1)
    same_sum = jnp.sum(jnp.where(per_class_count >= 2, class_sq - per_class_q, 0)) / 2
    # P_c = Σ_{c'<c} S_c' without subtracting: [0, S_0, S_0 + S_1, ...].
    prefix = jnp.concatenate([jnp.zeros_like(per_class_sum[:1]), jnp.cumsum(per_class_sum[:-1], 0)])
    diff_sum = jnp.sum(per_class_sum * prefix)
    same_count, diff_count = _counts_to_pairs(per_class_count)
    return _pair_stats(same_sum, diff_sum, same_count, diff_count)


def layer_pair_means(
    vs: list[jax.Array], labels: jax.Array, *, num_classes: int, where: jax.Array | None = None
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Unweighted means over layers of `pair_statistics(v).same_mean` and `.diff_mean`.

    Args:
        vs: one `[batch, D_l]` array per layer (D_l may differ).
        labels, num_classes, where: as in `pair_statistics`.

    Returns:
        `(same_mean, diff_mean, same_count, diff_count)`; the counts depend only on the labels, so
        they are the same for every layer.
    """
    stats = [pair_statistics(v, labels, num_classes=num_classes, where=where) for v in vs]
    same = jnp.mean(jnp.stack([s.same_mean for s in stats]))
    diff = jnp.mean(jnp.stack([s.diff_mean for s in stats]))
    return same, diff, stats[0].same_count, stats[0].diff_count


def _naive_pair_statistics(
    v: jax.Array, labels: jax.Array, *, num_classes: int, where: jax.Array | None = None
) -> PairStats:
    """Reference definition with the full `[batch, batch]` similarity matrix (tests, benchmarks).

    O(B²·D) time and O(B²) memory: S = U Uᵀ, summed over the upper triangle split by label equality.
    """
    v = v.astype(compute_dtype(v.dtype))
    valid = (labels >= 0) & (labels < num_classes)
    if where is not None:
        valid = valid & where
        v = jnp.where(where[:, None], v, 0)
    u = normalize(v)
    sim = jnp.matmul(u, u.T, precision=jax.lax.Precision.HIGHEST)
    b = v.shape[0]
    upper = jnp.triu(jnp.ones((b, b), bool), k=1) & valid[:, None] & valid[None, :]
    same = upper & (labels[:, None] == labels[None, :])
    diff = upper & ~same
    same_sum = jnp.sum(jnp.where(same, sim, 0))
    diff_sum = jnp.sum(jnp.where(diff, sim, 0))
    same_count = jnp.sum(same, dtype=jnp.int32)
    diff_count = jnp.sum(diff, dtype=jnp.int32)
    return _pair_stats(same_sum, diff_sum, same_count, diff_count)
