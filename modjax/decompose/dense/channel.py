"""Concern modularization (METHODS §7.4): CM-RIE and CM-C on one module's weights.

Both take the module's working copy `[(D_1, d_1), …, (D_L, d_L)]` and its class `c` (a traced
integer, so one function serves every class under `vmap`). The negative output is index
`neg = 1 if c == 0 else 0`.
"""

import jax
import jax.numpy as jnp

from modjax.decompose.dense.parent import Layers

RIE_PARITY_TOLERANCE = 0.05
"""The reference code's CM-RIE criterion |D_L[i, c]| < 0.05 (parity); the paper's is = 0."""


def _neg(c: jax.Array) -> jax.Array:
    return jnp.where(c == 0, 1, 0)


def channel(layers: Layers, c: jax.Array, *, parity: bool = False) -> Layers:
    """CM-C: collapse the outputs into positive (c) and negative (neg) channels.

    D_L[i, neg] ← mean_{k≠c} D_L[i, k], the other non-positive columns are zeroed, and the
    bias likewise. Parity reproduces the code's bias mean over a length-K buffer for c ≠ 0
    (0.9× the true mean for K = 10; METHODS §12 quirk 18).

    Args:
        layers: the module's weights.
        c: the module's class.
        parity: the code's bias quirk.

    Returns:
        The channelled weights (hidden layers unchanged).

    Example:
        >>> out = channel([(jnp.array([[1.0, 2.0, 4.0]]), jnp.array([0.0, 3.0, 6.0]))], 1)
        >>> out[0][0].tolist(), out[0][1].tolist()
        ([[2.5, 2.0, 0.0]], [3.0, 3.0, 0.0])
    """
    w, b = layers[-1]
    k = w.shape[1]
    cols = jnp.arange(k)
    others = cols != c
    neg = _neg(c)
    w_neg = jnp.sum(jnp.where(others, w, 0.0), axis=1) / (k - 1)
    b_sum = jnp.sum(jnp.where(others, b, 0.0))
    b_neg = b_sum / jnp.where(parity & (c != 0), k, k - 1)
    w = jnp.where(cols == c, w, jnp.where(cols == neg, w_neg[:, None], 0.0))
    b = jnp.where(cols == c, b, jnp.where(cols == neg, b_neg, 0.0))
    return [*layers[:-1], (w, b)]


def remove_irrelevant(layers: Layers, c: jax.Array, *, parity: bool = False) -> Layers:
    """CM-RIE steps 1–3 (run `channel` after it): merge last-hidden nodes that feed only neg.

    1. Nodes i of the last hidden layer with D_L[i, c] = 0 (parity: |D_L[i, c]| < 0.05).
    2. Each gets D_L[i, neg] = the mean of its non-zero edges to the other outputs; those
       edges are zeroed. Parity keeps the code's order, which zeroes the neg edge again when
       it was non-zero before.
    3. If several, the first one takes the mean of their neg edges (parity: of the code's
       column 0 for c = 0, else 1) and the mean of their incoming columns D_{L−1}[:, i];
       the others lose both.

    Args:
        layers: the module's weights (at least one hidden layer).
        c: the module's class.
        parity: the code's criterion, edge order and merge column (METHODS §12 quirk 17).

    Returns:
        The weights with the irrelevant edges merged.

    Example:
        >>> hid = (jnp.array([[1.0, 2.0]]), jnp.zeros(2))
        >>> out = (jnp.array([[0.0, 2.0, 4.0], [1.0, 1.0, 1.0]]), jnp.zeros(3))
        >>> remove_irrelevant([hid, out], 0)[1][0].tolist()
        [[0.0, 3.0, 0.0], [1.0, 1.0, 1.0]]
    """
    (w_prev, b_prev), (w, b) = layers[-2], layers[-1]
    h, k = w.shape
    cols = jnp.arange(k)
    others = cols != c
    neg = _neg(c)
    pos = w[:, c]
    sel = jnp.abs(pos) < RIE_PARITY_TOLERANCE if parity else pos == 0
    nz = others[None, :] & (w != 0)
    count = jnp.sum(nz, axis=1)
    mean = jnp.where(count > 0, jnp.sum(jnp.where(nz, w, 0.0), axis=1) / jnp.maximum(count, 1), 0)
    if parity:
        neg_was_zero = w[:, neg] == 0
        new_neg = jnp.where(neg_was_zero, mean, 0.0)
        rows = jnp.where(nz, 0.0, w)
    else:
        new_neg = mean
        rows = jnp.where(others[None, :], 0.0, w)
    rows = jnp.where(cols == neg, new_neg[:, None], rows)
    w = jnp.where(sel[:, None], rows, w)

    num = jnp.sum(sel)
    first = jnp.argmax(sel)
    rest = sel & (jnp.arange(h) != first)
    col = jnp.where(c == 0, 0, 1) if parity else neg
    merged = jnp.sum(jnp.where(sel, w[:, col], 0.0)) / jnp.maximum(num, 1)
    w_neg = jnp.where(rest, 0.0, w[:, neg])
    w_neg = jnp.where((num > 1) & (jnp.arange(h) == first), merged, w_neg)
    w = jnp.where(cols == neg, w_neg[:, None], w)

    mean_in = jnp.sum(jnp.where(sel, w_prev, 0.0), axis=1) / jnp.maximum(num, 1)
    hcols = jnp.arange(h)
    w_prev = jnp.where(rest[None, :], 0.0, w_prev)
    w_prev = jnp.where((num > 0) & (hcols == first)[None, :], mean_in[:, None], w_prev)
    return [*layers[:-2], (w_prev, b_prev), (w, b)]
