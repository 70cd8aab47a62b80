"""NeMo's per-layer contrastive loss on mask-generator outputs, pairwise B×B (METHODS §6; private).

The loss exponentiates each pair, so the O(B) pair-sum shortcut of METHODS §11 does not apply;
every layer builds its `[B, B]` cosine matrix.
"""

import math

import jax
import jax.numpy as jnp

from modjax._pairs import _safe_div, _zero_invalid, compute_dtype, normalize

FORMS = ("parity", "supcon")
"""`parity`: NeMo's masked-exponent form (the default); `supcon`: true positives and negatives."""

EPS = 1e-8
"""NeMo's epsilon inside the log ratio, `-log((pos + 1e-8) / (pos + neg + 1e-8))`."""


def check_form(form: str) -> str:
    if form not in FORMS:
        raise ValueError(f"form={form!r} must be one of {list(FORMS)}")
    return form


def check_temperature(temperature: float) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise TypeError(f"temperature must be a number; got {temperature!r}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature={temperature!r} must be a finite number > 0 (NeMo: 0.2)")
    return float(temperature)


def _logsumexp(a: jax.Array, include: jax.Array) -> jax.Array:
    """`log Σ_j include_ij · exp(a_ij)` per row; −inf (zero gradient) for a row with none."""
    return jax.nn.logsumexp(jnp.where(include, a, -jnp.inf), axis=1)


def anchor_losses(
    mask: jax.Array,
    labels: jax.Array,
    *,
    temperature: float,
    form: str,
    where: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Per-anchor losses ℓ_i of one layer and which rows are anchors (label-only).

    parity: pos_i = Σ_j exp(P_ij s_ij / τ), neg_i = Σ_j exp((1 − P_ij) s_ij / τ) over every valid
    j (j = i included); every valid row is an anchor. supcon: pos_i = Σ_{j ≠ i, y_j = y_i}
    exp(s_ij / τ), neg_i = Σ_{y_j ≠ y_i} exp(s_ij / τ); anchors are the valid rows with at least one
    positive. Both: ℓ_i = −log((pos_i + 1e-8) / (pos_i + neg_i + 1e-8)), computed as a difference
    of log-sum-exps (exact, and finite for small τ where exp(1/τ) would overflow float32).

    Args:
        mask: `[batch, units]` float mask-generator output of one layer.
        labels: `[batch]` int class ids.
        temperature: τ_c > 0.
        form: `"parity"` or `"supcon"`.
        where: optional `[batch]` bool of valid rows; invalid rows are neither anchors nor in any
            sum over j.

    Returns:
        `(losses [batch], anchors [batch] bool)`; `losses` is finite everywhere, and 0 where the
        row is no anchor.
    """
    b = labels.shape[0]
    valid = jnp.ones((b,), bool) if where is None else where.astype(bool)
    u = normalize(_zero_invalid(mask.astype(compute_dtype(mask.dtype)), where))
    s = (u @ u.T) / temperature
    same = labels[:, None] == labels[None, :]
    pair = valid[:, None] & valid[None, :]
    if form == "parity":
        # Masking the exponent, not the sum: each negative adds exp(0) = 1 to pos_i and each
        # positive (j = i included) adds 1 to neg_i (METHODS §6, quirk 11).
        log_pos = _logsumexp(jnp.where(same, s, 0), pair)
        log_neg = _logsumexp(jnp.where(same, 0, s), pair)
        anchors = valid
    else:
        positives = same & pair & ~jnp.eye(b, dtype=bool)
        log_pos = _logsumexp(s, positives)
        log_neg = _logsumexp(s, pair & ~same)
        anchors = valid & jnp.any(positives, axis=1)
    log_num = jnp.logaddexp(log_pos, math.log(EPS))  # log(pos_i + 1e-8)
    log_den = jnp.logaddexp(log_num, log_neg)  # log(pos_i + neg_i + 1e-8)
    return jnp.where(anchors, log_den - log_num, 0), anchors


def contrastive_loss(
    masks: list[jax.Array],
    labels: jax.Array,
    *,
    temperature: float,
    form: str,
    where: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """`(mean_l mean_{anchors i} ℓ_i^l, anchor count)`; 0 with zero gradient if no anchor."""
    per_layer, count = [], None
    for m in masks:
        losses, anchors = anchor_losses(m, labels, temperature=temperature, form=form, where=where)
        count = jnp.sum(anchors, dtype=losses.dtype)
        per_layer.append(_safe_div(jnp.sum(losses), count))
    return jnp.mean(jnp.stack(per_layer)), count
