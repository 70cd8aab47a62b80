"""Concern and tangling identification (CI, TI; METHODS §7.2–7.3) in closed form.

The reference code walks the samples one by one and rewrites a working copy (D_l, d_l) of the
weights. Every rewrite sets an entry to 0 ("zero"), to its original value ("copy") or leaves it
("keep"): the hidden min/max rule keeps a non-negative edge and zeroes a negative one, the
output rule keeps both. So each entry ends at the value of its *last* zero-or-copy operation,
and with distinct sample times t an entry survives iff the last copy comes after the last zero.
Both are maxima of per-node times:

- last copy of hidden edge (i, j) = max(F, R_j): F is the last first-pass (after a reset)
  positive, R_j the last negative on which node j is active (TI restores its column). A
  first-pass positive later than every zero is necessarily a copy.
- last zero = max(A_j, B_i, [W_ij < 0]·C): A_j the last positive on which target j is inactive,
  B_i the same for source i (layers above the first), C the last non-first positive.

In parity mode the first-pass copy overwrites the source's row zeroing (the code's in-sample
order), so B_i counts only non-first positives. The sparsity guard (a reset when
nnz(D_L) < 45 of 490) depends only on which output columns are alive, so one `lax.scan` over
the positives carries a `[K]` boolean state and yields the first-pass flags.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from modjax.decompose.dense.parent import Layers, monitor


class WeightMasks(NamedTuple):
    """Keep-masks of one module after CI and TI: `kernels[l]` like W_l, `biases[l]` like b_l."""

    kernels: list[jax.Array]
    biases: list[jax.Array]


def _last(cond: jax.Array, t: jax.Array) -> jax.Array:
    """`max_s t_s` over rows s where `cond[s]` holds, −1 where it never does (per column)."""
    if cond.shape[0] == 0:
        return jnp.full(cond.shape[1:], -1, jnp.int32)
    return jnp.max(jnp.where(cond, t.reshape((-1,) + (1,) * (cond.ndim - 1)), -1), axis=0)


def first_flags(
    zero_out: jax.Array, col_nnz: jax.Array, *, guard: float, valid: jax.Array | None = None
) -> jax.Array:
    """Which positives are first passes (the first, and each one after a sparsity reset).

    Args:
        zero_out: `[P, K]` bool, output nodes CI zeroes on each positive (TI-PN's p ≤ 10⁻⁴;
            all False otherwise).
        col_nnz: `[K]` non-zero weights per output column of W_L.
        guard: reset when the output layer keeps fewer than `guard` non-zero weights.
        valid: `[P]` bool, False for padding rows (skipped: no state change, never first).

    Returns:
        `[P]` bool.

    Example:
        >>> z = jnp.array([[False, True], [False, True], [False, False]])
        >>> first_flags(z, jnp.array([3, 3]), guard=4.0).tolist()
        [True, True, True]
    """

    def step(carry, row):
        zero, ok = row
        first, alive = carry
        new_alive = ~zero & (first | alive)
        nnz = jnp.sum(jnp.where(new_alive, col_nnz, 0))
        carry = (jnp.where(ok, nnz < guard, first), jnp.where(ok, new_alive, alive))
        return carry, first & ok

    if valid is None:
        valid = jnp.ones(zero_out.shape[0], bool)
    init = (jnp.array(True), jnp.zeros(zero_out.shape[1], bool))
    return jax.lax.scan(step, init, (zero_out, valid))[1]


def identify(
    layers: Layers,
    positives: jax.Array,
    negatives: jax.Array,
    *,
    ti_out_threshold: float,
    ci_out_threshold: float | None = None,
    negatives_first: bool = False,
    guard_fraction: float = 45 / 490,
    parity: bool = False,
    valid: jax.Array | None = None,
) -> WeightMasks:
    """CI on `positives` and TI on `negatives` for one module, as keep-masks.

    Args:
        layers: the parent's `[(W, b), …]`.
        positives: `[P, ...]` samples of the module's class, in the reference order.
        negatives: `[Q, ...]` samples of the other classes (their order does not matter).
        ti_out_threshold: TI restores output column j when p_j > this (code 0.5).
        ci_out_threshold: TI-PN: CI zeroes output column j when p_j ≤ this (10⁻⁴); None
            leaves the output layer to the copy rule.
        negatives_first: TI-HP order (negatives, then positives).
        guard_fraction: the sparsity reset fires when nnz(D_L) < fraction · size(W_L).
        parity: the code's in-sample order (a first-pass copy beats the row zeroing of an
            inactive source); default lets zeroing dominate (METHODS §7.2).
        valid: `[P]` bool, False for padding positives (a class with fewer than P), which
            are skipped; None means all valid.

    Returns:
        `WeightMasks` of the module: D_l = W_l · kernels[l], d_l = b_l · biases[l].

    Example:
        >>> layers = [(jnp.array([[1.0, -1.0]]), jnp.zeros(2)), (jnp.ones((2, 2)), jnp.zeros(2))]
        >>> m = identify(layers, jnp.ones((2, 1)), jnp.zeros((0, 1)), ti_out_threshold=0.5)
        >>> m.kernels[0].tolist()
        [[True, False]]
    """
    num_p, num_q = positives.shape[0], negatives.shape[0]
    if num_p == 0:
        raise ValueError("positives is empty; CI needs at least one sample of the class")
    offset_ci, offset_ti = (num_q, 0) if negatives_first else (0, num_p)
    if valid is None:
        valid = jnp.ones(num_p, bool)
    t_ci = jnp.where(valid, offset_ci + jnp.arange(num_p), -1)
    t_ti = offset_ti + jnp.arange(num_q)
    z_pos, p_pos = monitor(layers, positives)
    z_neg, p_neg = monitor(layers, negatives)

    w_out = layers[-1][0]
    if ci_out_threshold is None:
        zero_out = jnp.zeros(p_pos.shape, bool)
    else:
        zero_out = p_pos <= ci_out_threshold
    col_nnz = jnp.sum(w_out != 0, axis=0)
    firsts = first_flags(zero_out, col_nnz, guard=guard_fraction * w_out.size, valid=valid)
    last_first = _last(firsts, t_ci)
    last_later = _last(~firsts, t_ci)

    kernels, biases = [], []
    src_zero = jnp.full((layers[0][0].shape[0],), -1, jnp.int32)
    for (w, _), z_p, z_n in zip(layers[:-1], z_pos, z_neg):
        active = z_p > 0
        tgt_zero = _last(~active, t_ci)
        restored = _last(z_n > 0, t_ti)
        copy = jnp.maximum(last_first, restored)
        zero = jnp.maximum(tgt_zero[None, :], src_zero[:, None])
        zero = jnp.maximum(zero, jnp.where(w < 0, last_later, -1))
        kernels.append(copy[None, :] > zero)
        biases.append(jnp.maximum(_last(active, t_ci), restored) > tgt_zero)
        src_zero = _last(~active & ~firsts[:, None], t_ci) if parity else tgt_zero

    out_zero = _last(zero_out, t_ci)
    out_restored = _last(p_neg > ti_out_threshold, t_ti)
    keep_col = jnp.maximum(last_first, out_restored) > out_zero
    kernels.append(jnp.broadcast_to(keep_col, w_out.shape))
    biases.append(jnp.maximum(_last(~zero_out, t_ci), out_restored) > out_zero)
    return WeightMasks(kernels, biases)
