"""Channelling and MC-BLN for CNN modules (ICSE'22, METHODS §7.7).

**Channelling** collapses the outputs into V_c (index c) and V_uc (index `neg` = 1 if c = 0,
else 0): the edges and the bias into V_uc are the means over the unconcerned outputs, the other
outputs are zeroed; it is FSE'20's CM-C (`dense.channel.channel`), true bias mean.

**MC-BLN** (backtrack through the last layer, the paper's chosen variant) marks the last hidden
nodes that contribute only and strongly to V_uc and adds the positions they come from to the
inactive maps. The paper's prose and its printed pseudocode disagree: the pseudocode marks a
node whose edge to V_uc is ≤ −δ AND whose edge to V_c is ≥ +δ, i.e. one that *supports* the
concern, which contradicts the prose ("contributing only/strongly to V_uc"). modjax follows the
prose (METHODS §12 quirk 21): node i is marked iff

    D[i, V_uc] ≥ δ   (strong contribution to V_uc)   and   D[i, V_c] ≤ 0   (none to V_c),

δ = 0.5. The walk back through hidden dense layers (marking nodes connected only to marked
nodes by weights ≤ −δ) has nothing to walk in the zoo's CIFAR ResNet: its head is the only
dense layer, fed by the global average pool. A marked pooled feature maps to every H×W
position of its channel in the last block's map (pooling expands a position to its pool
window; here the window is the whole map). That map belongs to the Add of the last block, so
marking it removes both branches' contributions at those positions ("Add updates both maps");
the branch inputs feed other layers too and are left as they are [interpretation].
"""

import jax
import jax.numpy as jnp

from modjax.decompose.dense.channel import channel

BLN_DELTA = 0.5
"""MC-BLN's δ (METHODS §7.7)."""


def channel_head(w: jax.Array, b: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Channelling of the dense head `(W [F, K], b [K])` for class `c` (traced or static).

    Example:
        >>> w, b = channel_head(jnp.array([[1.0, 2.0, 4.0]]), jnp.array([0.0, 3.0, 6.0]), 1)
        >>> w.tolist(), b.tolist()
        ([[2.5, 2.0, 0.0]], [3.0, 3.0, 0.0])
    """
    return channel([(w, b)], c)[0]


def bln_marks(w: jax.Array, c: jax.Array, *, delta: float = BLN_DELTA) -> jax.Array:
    """MC-BLN's marked last-hidden nodes `[F]` of a channelled head `w [F, K]` (the prose rule).

    Example:
        >>> w = jnp.array([[0.0, 0.7], [0.2, 0.9], [-0.1, 0.4]])
        >>> bln_marks(w, 1).tolist()
        [False, False, False]
        >>> bln_marks(w, 0).tolist()
        [True, False, False]
    """
    neg = jnp.where(c == 0, 1, 0)
    w_c = jnp.take(w, c, axis=1)
    w_uc = jnp.take(w, neg, axis=1)
    return (w_uc >= delta) & (w_c <= 0)


def apply_bln(inactive_last: jax.Array, marks: jax.Array) -> jax.Array:
    """Adds the marked pooled features' positions to the last block's map `[H, W, F]`."""
    return inactive_last | marks[None, None, :]
