"""Voting composition of decomposed modules (METHODS §7.5)."""

import jax
import jax.numpy as jnp


def vote(logits: jax.Array, own: jax.Array) -> jax.Array:
    """Which module wins each sample under Pan & Rajan's vote.

    Module m votes iff the argmax of its output is its own class `own[m]`. One vote: that
    module. No votes: the module with the highest own-class probability p^{(m)}_{own[m]}.
    Several: the same argmax over the voters. Jit-able; works for any set of modules (of one
    parent or several, once the caller maps winners to task labels).

    Args:
        logits: `[M, B, K]` outputs of M modules on a batch.
        own: `[M]` each module's positive output index.

    Returns:
        `[B]` int, the winning module per sample.

    Example:
        >>> logits = jnp.array([[[2.0, 0.0], [0.0, 1.0]], [[0.0, 3.0], [0.0, 2.0]]])
        >>> vote(logits, jnp.array([0, 1])).tolist()
        [1, 1]
    """
    if logits.ndim != 3 or own.shape != logits.shape[:1]:
        raise ValueError(
            f"logits has shape {logits.shape} and own {own.shape}; expected [M, B, K] and [M]"
        )
    probs = jax.nn.softmax(logits, axis=-1)
    own_b = jnp.broadcast_to(own[:, None, None], probs.shape[:2] + (1,))
    p_own = jnp.take_along_axis(probs, own_b, axis=-1)[..., 0]
    votes = jnp.argmax(logits, axis=-1) == own[:, None]
    score = jnp.where(jnp.any(votes, axis=0), jnp.where(votes, p_own, -jnp.inf), p_own)
    return jnp.argmax(score, axis=0)
