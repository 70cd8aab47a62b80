"""Training objectives as pure functions of `(logits, acts, labels)`: CE, MwT, MODA and NeMo terms."""

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from modjax import _contrastive
from modjax._objective_inputs import check_batch, check_label_values, check_labels
from modjax._pairs import (  # noqa: F401 (API)
    PairStats,
    _valid_mean,
    _zero_invalid,
    compute_dtype,
    layer_pair_means,
    normalize,
    pair_counts,
    pair_statistics,
)
from modjax.models.layers import MASK_SUFFIX
from modjax.typing import Acts, Objective

Layers = Sequence[jax.Array] | Mapping[str, jax.Array]
TermFn = Callable[[jax.Array, Acts, jax.Array, jax.Array | None], tuple[jax.Array, dict]]
"""`(logits, acts, labels, where) -> (value, logs)`: a scalar term and a fixed-key dict of extras."""


# ----------------------------------------------------------------------------- pure terms


def cross_entropy(
    logits: jax.Array, labels: jax.Array, *, where: jax.Array | None = None
) -> jax.Array:
    """Per-example softmax cross-entropy.

    Args:
        logits: `[batch, num_classes]` float.
        labels: `[batch]` int class ids.
        where: optional `[batch]` bool; rows with `False` get loss 0.

    Returns:
        `[batch]` float32 losses (float64 for float64 logits); the caller reduces.

    Raises:
        ValueError: labels or `where` of the wrong shape, or (outside `jit`) labels outside
            `[0, num_classes)` in valid rows.
    """
    check_labels(logits, labels, logits.shape[-1], where)
    logits = logits.astype(compute_dtype(logits.dtype))
    if where is None:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    # Double where: padded rows (any values, any labels) get loss 0 and a zero, finite gradient.
    logits = _zero_invalid(logits, where)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(where, labels, 0))
    return jnp.where(where, losses, 0)


def standard(
    logits: jax.Array, acts: Acts, labels: jax.Array, *, where: jax.Array | None = None
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Plain cross-entropy training objective: `(loss, {"ce": loss})`."""
    del acts
    loss = _valid_mean(cross_entropy(logits, labels, where=where), where)
    return loss, {"ce": loss}


def reduce_activation(a: jax.Array) -> jax.Array:
    """Reduces a tracked activation to `[batch, channels]`: conv maps by mean_{h,w} |a|.

    Args:
        a: `[batch, H, W, C]` (any rank > 2: all middle axes are averaged) or `[batch, n]` (kept).

    Returns:
        `[batch, C]` in the compute dtype (float32, or float64 for float64 input).

    References:
        Ngo et al., ICSE 2026 (arXiv 2411.01074); METHODS §5.1.
    """
    a = a.astype(compute_dtype(a.dtype))
    if a.ndim < 2:
        raise ValueError(f"activation must be [batch, ...] with rank >= 2; got shape {a.shape}")
    return a if a.ndim == 2 else jnp.mean(jnp.abs(a), axis=tuple(range(1, a.ndim - 1)))


def _as_list(layers: Layers, what: str, batch: int | None = None) -> list[jax.Array]:
    """The arrays of `layers`; with `batch`, each must have `batch` rows (the layer is named)."""
    if isinstance(layers, Mapping):
        names, arrays = list(layers), list(layers.values())
    else:
        arrays = list(layers)
        names = [str(i) for i in range(len(arrays))]
    if not arrays:
        raise ValueError(f"{what} must hold at least one layer; got none")
    if batch is not None:
        check_batch(arrays, names, batch, what)
    return arrays


def _masks_2d(masks: Layers, batch: int | None = None) -> list[jax.Array]:
    arrays = _as_list(masks, "masks", batch)
    for m in arrays:
        if m.ndim != 2:
            raise ValueError(f"each mask must be [batch, channels]; got shape {m.shape}")
    return arrays


def _pair_terms(vs, labels, num_classes, where) -> tuple[jax.Array, jax.Array]:
    """(1 − mean_l same_l if any same-class pair else 0, mean_l diff_l) over `vs`."""
    check_label_values(labels, num_classes, where)
    same, diff, same_count, _ = layer_pair_means(vs, labels, num_classes=num_classes, where=where)
    return jnp.where(same_count > 0, 1 - same, 0), diff


def cohesion(
    masks: Layers, labels: jax.Array, *, num_classes: int, where: jax.Array | None = None
) -> jax.Array:
    """MwT cohesion loss L_coh = 1 − mean_l same(M^l, y): pull same-class masks together.

    Args:
        masks: list or dict of `[batch, C_l]` mask-generator outputs, one per masked layer.
        labels: `[batch]` int class ids in `[0, num_classes)`.
        num_classes: static number of classes N.
        where: optional `[batch]` bool; rows with `False` form no pairs.

    Returns:
        Scalar float32; 0 with zero gradient when the batch has no same-class pair (METHODS §11.3).

    References:
        Qi et al., "Modularizing while Training", ICSE 2024 (arXiv 2306.09376);
        METHODS §4.3, §11.
    """
    return _pair_terms(_masks_2d(masks, labels.shape[0]), labels, num_classes, where)[0]


def coupling(
    masks: Layers, labels: jax.Array, *, num_classes: int, where: jax.Array | None = None
) -> jax.Array:
    """MwT coupling loss L_cou = mean_l diff(M^l, y): push different-class masks apart.

    Args and shapes as in `cohesion`.

    Returns:
        Scalar float32; 0 with zero gradient when the batch has no different-class pair.

    References:
        Qi et al., ICSE 2024 (arXiv 2306.09376); METHODS §4.3, §11.
    """
    return _pair_terms(_masks_2d(masks, labels.shape[0]), labels, num_classes, where)[1]


def affinity(
    acts: Layers, labels: jax.Array, *, num_classes: int, where: jax.Array | None = None
) -> jax.Array:
    """MODA affinity loss L_aff = 1 − mean_l same(A_l, y) over reduced activations.

    Args:
        acts: list or dict of post-ReLU activations, `[batch, H, W, C]` (reduced by
            `reduce_activation`) or `[batch, n]`.
        labels: `[batch]` int class ids in `[0, num_classes)`.
        num_classes: static number of classes N.
        where: optional `[batch]` bool; rows with `False` form no pairs.

    Returns:
        Scalar float32; 0 with zero gradient when the batch has no same-class pair.

    References:
        Ngo et al., "DNN Modularization via Activation-Driven Training", ICSE 2026
        (arXiv 2411.01074); METHODS §5.2, §11.
    """
    vs = [reduce_activation(a) for a in _as_list(acts, "acts", labels.shape[0])]
    return _pair_terms(vs, labels, num_classes, where)[0]


def dispersion(
    acts: Layers, labels: jax.Array, *, num_classes: int, where: jax.Array | None = None
) -> jax.Array:
    """MODA dispersion loss L_dis = mean_l diff(A_l, y); 0 if no different-class pair.

    Args and shapes as in `affinity`.

    References:
        Ngo et al., ICSE 2026 (arXiv 2411.01074); METHODS §5.2, §11.
    """
    vs = [reduce_activation(a) for a in _as_list(acts, "acts", labels.shape[0])]
    return _pair_terms(vs, labels, num_classes, where)[1]


def compactness(acts: Layers, *, where: jax.Array | None = None) -> jax.Array:
    """MODA compactness loss L_com = mean_l ‖A_l‖₁ / (B · n_l) (B = valid rows; 0 if none).

    Args:
        acts: list or dict of activations as in `affinity`.
        where: optional `[batch]` bool of valid rows.

    References:
        Ngo et al., ICSE 2026 (arXiv 2411.01074); METHODS §5.2.
    """
    rs = [reduce_activation(_zero_invalid(a, where)) for a in _as_list(acts, "acts")]
    return jnp.mean(jnp.stack([_valid_mean(jnp.mean(jnp.abs(r), -1), where) for r in rs]))


def kernel_rate(masks: Layers, *, where: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Per-batch kernel rate mean_l mean(1[M^l > 0]) and mean mask value (logged, not trained).

    Returns:
        `(kernel_rate, mask_mean)` float32 scalars averaged over valid rows, then layers.

    References:
        METHODS §4.3, §10.1.
    """
    ms = [_zero_invalid(m.astype(compute_dtype(m.dtype)), where) for m in _masks_2d(masks)]
    rate = jnp.mean(jnp.stack([_valid_mean(jnp.mean(m > 0, -1, m.dtype), where) for m in ms]))
    mean = jnp.mean(jnp.stack([_valid_mean(jnp.mean(m, -1), where) for m in ms]))
    return jax.lax.stop_gradient(rate), mean


def _first_layer_ones(ms: list[jax.Array]) -> list[jax.Array]:
    """NeMo's CNN-trainer quirk: the first layer's masks become ones (a single layer is kept:
    replacing it would leave a constant loss)."""
    return [jnp.ones_like(ms[0]), *ms[1:]] if len(ms) > 1 else ms


def contrastive(
    masks: Layers,
    labels: jax.Array,
    *,
    temperature: float = 0.2,
    form: str = "parity",
    first_layer_ones: bool = True,
    where: jax.Array | None = None,
) -> jax.Array:
    """NeMo's contrastive loss L_con = mean_l mean_i ℓ_i^l over mask-generator outputs.

    Per layer, v_i = normalize(m_i), s_ij = v_i·v_j, P_ij = 1[y_i = y_j] (j = i included):

    - `form="parity"` (NeMo's code, the default): pos_i = Σ_j exp(P_ij·s_ij/τ) and
      neg_i = Σ_j exp((1 − P_ij)·s_ij/τ) over all j, so every negative adds 1 to pos_i and every
      positive (i itself included) adds 1 to neg_i; every row is an anchor.
    - `form="supcon"`: pos_i = Σ_{j≠i, y_j=y_i} exp(s_ij/τ), neg_i = Σ_{y_j≠y_i} exp(s_ij/τ)
      (the log-of-sums form, NeMo's ratio with the masking artifacts removed); anchors are the
      rows with at least one positive in the batch.

    ℓ_i = −log((pos_i + 1e-8)/(pos_i + neg_i + 1e-8)), averaged over anchors, then over layers
    (unweighted, every selected layer counts, as NeMo's `mean_list`).

    Edge cases (the spec is silent; modjax's choices): parity is defined on every batch with a
    valid row (a singleton class gives pos_i = exp(s_ii/τ) + B − 1; a one-class batch gives
    neg_i = B). supcon: a row of a class alone in the batch has no positive and is left out of
    the mean (SupCon's convention; with NeMo's eps it would add ≈ 18.4 + log neg_i); if no row
    has a positive the term is 0 with zero gradient. A one-class batch has neg_i = 0, so ℓ_i = 0
    exactly (defined, zero gradient).

    Args:
        masks: list or dict of `[batch, C_l]` mask-generator outputs in forward order.
        labels: `[batch]` int class ids.
        temperature: τ_c > 0 (NeMo: 0.2).
        form: `"parity"` or `"supcon"`.
        first_layer_ones: replace the first layer's masks by ones inside the loss, as NeMo's CNN
            trainer does (METHODS §6, quirk 11): that layer adds a constant (no gradient) and
            still counts in the mean over layers. With a single layer (e.g. LeNet5's one masked
            conv) nothing is replaced: the loss would be a constant, and NeMo trained no such
            model (modjax's choice).
        where: optional `[batch]` bool; rows with `False` are neither anchors nor in any sum.

    Returns:
        Scalar float32 (float64 for float64 masks).

    Raises:
        ValueError: an unknown `form`, `temperature` <= 0, or masks that are not `[batch, C]`.

    References:
        NeMo, arXiv 2508.11348; `XiaohanBi-Hub/NeMo, src/models/funcs.py` (`loss_func_contra`);
        METHODS §6.
    """
    temperature = _contrastive.check_temperature(temperature)
    form = _contrastive.check_form(form)
    ms = _masks_2d(masks, labels.shape[0])
    ms = _first_layer_ones(ms) if first_layer_ones else ms
    return _contrastive.contrastive_loss(
        ms, labels, temperature=temperature, form=form, where=where
    )[0]


# ----------------------------------------------------------------------------- layer selection


def _check_layers(layers: Sequence[str] | None) -> tuple[str, ...] | None:
    if layers is None:
        return None
    if isinstance(layers, str) or not all(isinstance(n, str) for n in layers):
        raise TypeError(f"layers must be a sequence of layer names or None; got {layers!r}")
    if not layers or len(set(layers)) != len(layers):
        raise ValueError(f"layers must be non-empty and without duplicates; got {list(layers)}")
    return tuple(layers)


def _select(acts: Acts, layers: tuple[str, ...] | None, *, masks: bool) -> dict[str, jax.Array]:
    """Picks `*/mask` entries (masks=True) or the tracked activations, by name or all; keyed by
    their names, so that a shape error names the layer (`acts['dense_0']`), not its position."""
    available = [k for k in acts if k.endswith(MASK_SUFFIX) == masks]
    if not available:
        if masks:
            raise ValueError(
                "acts has no mask-generator outputs ('<conv>/mask' keys; got "
                f"{list(acts)}); build the model with mask_generators=True for MwT objectives"
            )
        raise ValueError(f"acts has no tracked activations (non-mask keys); got {list(acts)}")
    if layers is None:
        return {k: acts[k] for k in available}
    if masks:  # accept both "conv_3" and "conv_3/mask"
        layers = tuple(n if n.endswith(MASK_SUFFIX) else n + MASK_SUFFIX for n in layers)
    missing = [n for n in layers if n not in available]
    if missing:
        raise ValueError(f"layers {missing} not found in acts; available: {available}")
    return {n: acts[n] for n in layers}


def _check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise TypeError(f"num_classes must be an int; got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes} must be >= 1")
    return int(num_classes)


# ----------------------------------------------------------------------------- term factories


def ce_term(*, num_classes: int | None = None) -> TermFn:
    """Mean cross-entropy over valid rows as a `combine` term (logs nothing else)."""
    if num_classes is not None:
        num_classes = _check_num_classes(num_classes)

    def term_fn(logits, acts, labels, where):
        del acts
        check_labels(logits, labels, num_classes, where)
        return _valid_mean(cross_entropy(logits, labels, where=where), where), {}

    return term_fn


def _pair_term(name, fn, *, num_classes, layers, masks, same) -> TermFn:
    num_classes, layers = _check_num_classes(num_classes), _check_layers(layers)

    def term_fn(logits, acts, labels, where):
        check_labels(logits, labels, num_classes, where)
        value = fn(_select(acts, layers, masks=masks), labels, num_classes=num_classes, where=where)
        counts = pair_counts(labels, num_classes=num_classes, where=where)  # label-only
        return value, {f"{name}_defined": (counts[0 if same else 1] > 0).astype(jnp.float32)}

    return term_fn


def cohesion_term(*, num_classes: int, layers: Sequence[str] | None = None) -> TermFn:
    """`cohesion` over the `*/mask` entries of acts (all, or `layers`); logs `cohesion_defined`."""
    return _pair_term(
        "cohesion", cohesion, num_classes=num_classes, layers=layers, masks=True, same=True
    )


def coupling_term(*, num_classes: int, layers: Sequence[str] | None = None) -> TermFn:
    """`coupling` over the `*/mask` entries of acts; logs `coupling_defined`."""
    return _pair_term(
        "coupling", coupling, num_classes=num_classes, layers=layers, masks=True, same=False
    )


def affinity_term(*, num_classes: int, layers: Sequence[str] | None = None) -> TermFn:
    """`affinity` over the non-mask entries of acts (all, or `layers`); logs `affinity_defined`."""
    return _pair_term(
        "affinity", affinity, num_classes=num_classes, layers=layers, masks=False, same=True
    )


def dispersion_term(*, num_classes: int, layers: Sequence[str] | None = None) -> TermFn:
    """`dispersion` over the non-mask entries of acts; logs `dispersion_defined`."""
    return _pair_term(
        "dispersion", dispersion, num_classes=num_classes, layers=layers, masks=False, same=False
    )


def compactness_term(*, layers: Sequence[str] | None = None) -> TermFn:
    """`compactness` over the non-mask entries of acts (all, or `layers`)."""
    layers = _check_layers(layers)

    def term_fn(logits, acts, labels, where):
        del logits, labels
        return compactness(_select(acts, layers, masks=False), where=where), {}

    return term_fn


def kernel_rate_term(*, layers: Sequence[str] | None = None) -> TermFn:
    """`kernel_rate` of the `*/mask` entries (use with weight 0); also logs `mask_mean`."""
    layers = _check_layers(layers)

    def term_fn(logits, acts, labels, where):
        del logits, labels
        rate, mean = kernel_rate(_select(acts, layers, masks=True), where=where)
        return rate, {"mask_mean": jax.lax.stop_gradient(mean)}

    return term_fn


def contrastive_term(
    *,
    num_classes: int,
    temperature: float = 0.2,
    form: str = "parity",
    first_layer_ones: bool = True,
    layers: Sequence[str] | None = None,
) -> TermFn:
    """`contrastive` over the `*/mask` entries of acts (all, in acts order, or `layers` in the
    given order); logs `contrastive_defined` (0. only when no row is an anchor)."""
    num_classes, layers = _check_num_classes(num_classes), _check_layers(layers)
    temperature = _contrastive.check_temperature(temperature)
    form = _contrastive.check_form(form)

    def term_fn(logits, acts, labels, where):
        check_labels(logits, labels, num_classes, where)
        ms = _masks_2d(_select(acts, layers, masks=True), labels.shape[0])
        ms = _first_layer_ones(ms) if first_layer_ones else ms
        value, count = _contrastive.contrastive_loss(
            ms, labels, temperature=temperature, form=form, where=where
        )
        return value, {"contrastive_defined": (count > 0).astype(jnp.float32)}

    return term_fn


# ----------------------------------------------------------------------------- combinator


class Term(NamedTuple):
    """A loss term for `combine`: `fn(logits, acts, labels, where) -> (value, logs)` and its weight.

    A weight of 0 logs the value without adding it (or its gradient) to the loss.
    """

    fn: TermFn
    weight: float = 1.0


def combine(**terms: Term | tuple[TermFn, float]) -> Objective:
    """Builds `loss = Σ_k weight_k · term_k` from named terms, the way `optax.chain` chains.

    The objective returns `terms` with one entry per name (the unweighted value) plus each term's
    logs; the key set depends only on the construction, never on the batch.

    Args:
        **terms: name → `Term(fn, weight)` (or a `(fn, weight)` pair); weights are finite and >= 0.

    Returns:
        `objective(logits, acts, labels, *, where=None) -> (loss, terms)`: scalar float32 loss and
        a dict of float32 scalars; `where` is an optional `[batch]` bool of valid rows.

    Raises:
        ValueError: no terms, or a negative / non-finite weight.

    Example:
        >>> import jax.numpy as jnp
        >>> objective = combine(ce=Term(ce_term(), 1.0))
        >>> loss, terms = objective(jnp.zeros((2, 4)), {}, jnp.array([0, 1]))
        >>> round(float(loss), 4), list(terms)
        (1.3863, ['ce'])
    """
    if not terms:
        raise ValueError("combine needs at least one term, e.g. combine(ce=Term(ce_term()))")
    normalized = {}
    for name, term in terms.items():
        fn, weight = Term(*term)
        if not callable(fn):
            raise TypeError(f"term {name!r}: fn must be callable; got {fn!r}")
        weight = float(weight)
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"term {name!r}: weight={weight} must be finite and >= 0")
        normalized[name] = Term(fn, weight)

    def objective_fn(logits, acts, labels, *, where=None):
        loss, out = jnp.zeros((), jnp.float32), {}
        for name, (fn, weight) in normalized.items():
            value, logs = fn(logits, acts, labels, where)
            clash = [k for k in (name, *logs) if k in out]
            if clash:
                raise ValueError(f"term {name!r} logs keys {clash} already in terms")
            out[name] = value
            out.update(logs)
            if weight:
                loss = loss + weight * value
        return loss, out

    return objective_fn


def mwt_objective(
    *,
    num_classes: int,
    cohesion_weight: float = 0.5,
    coupling_weight: float = 1.5,
    layers: Sequence[str] | None = None,
) -> Objective:
    """MwT objective: CE + α·L_coh + β·L_cou over the mask-generator outputs.

    Args:
        num_classes: number of classes N (logits `[batch, N]`; labels in `[0, N)` are not checked
            inside `jit`; the CLI validates data on the host).
        cohesion_weight: α in MwT (default 0.5).
        coupling_weight: β in MwT (default 1.5).
        layers: conv names (`"conv_3"`) or mask keys (`"conv_3/mask"`); None = every `*/mask`.

    Returns:
        `objective(logits, acts, labels, *, where=None) -> (loss, terms)`, terms keys: `ce`,
        `cohesion`, `cohesion_defined`, `coupling`, `coupling_defined`, `kernel_rate`,
        `mask_mean`. An undefined term is 0; its `*_defined` flag (0./1.) lets epoch means skip it.

    Raises:
        ValueError: bad weights or `num_classes` (at construction); missing layers or no `*/mask`
            entries in acts (at trace time).

    Example:
        >>> import jax.numpy as jnp
        >>> objective = mwt_objective(num_classes=2)
        >>> acts = {"conv_1/mask": jnp.array([[0.5, 0.0], [0.7, 0.0], [0.0, 0.9]])}
        >>> loss, terms = objective(jnp.zeros((3, 2)), acts, jnp.array([0, 0, 1]))
        >>> [round(float(terms[k]), 4) for k in ("ce", "cohesion", "coupling", "kernel_rate")]
        [0.6931, 0.0, 0.0, 0.5]

    References:
        Qi et al., ICSE 2024 (arXiv 2306.09376); METHODS §4.3, §11.
    """
    return combine(
        ce=Term(ce_term(num_classes=num_classes), 1.0),
        cohesion=Term(cohesion_term(num_classes=num_classes, layers=layers), cohesion_weight),
        coupling=Term(coupling_term(num_classes=num_classes, layers=layers), coupling_weight),
        kernel_rate=Term(kernel_rate_term(layers=layers), 0.0),
    )


def moda_objective(
    *,
    num_classes: int,
    affinity_weight: float = 1.0,
    dispersion_weight: float = 1.0,
    compactness_weight: float = 0.3,
    layers: Sequence[str] | None = None,
) -> Objective:
    """MODA objective: CE + α·L_aff + β·L_dis + γ·L_com over the tracked activations.

    Args:
        num_classes: number of classes N (see `mwt_objective` on label checks).
        affinity_weight: α in MODA (default 1.0).
        dispersion_weight: β in MODA (default 1.0).
        compactness_weight: γ in MODA (default 0.3).
        layers: activation names; None = every non-mask entry of acts.

    Returns:
        `objective(logits, acts, labels, *, where=None) -> (loss, terms)`, terms keys: `ce`,
        `affinity`, `affinity_defined`, `dispersion`, `dispersion_defined`, `compactness`.

    Raises:
        ValueError: bad weights or `num_classes`; missing layers (at trace time).

    References:
        Ngo et al., ICSE 2026 (arXiv 2411.01074); METHODS §5.2, §11.
    """
    return combine(
        ce=Term(ce_term(num_classes=num_classes), 1.0),
        affinity=Term(affinity_term(num_classes=num_classes, layers=layers), affinity_weight),
        dispersion=Term(dispersion_term(num_classes=num_classes, layers=layers), dispersion_weight),
        compactness=Term(compactness_term(layers=layers), compactness_weight),
    )


def nemo_objective(
    *,
    num_classes: int,
    contrastive_weight: float = 1.0,
    temperature: float = 0.2,
    form: str = "parity",
    first_layer_ones: bool = True,
    layers: Sequence[str] | None = None,
) -> Objective:
    """NeMo objective: CE + α·L_con, NeMo's contrastive loss on the mask-generator outputs.

    loss = CE + α · mean_l mean_i −log((pos_i + 1e-8)/(pos_i + neg_i + 1e-8)) with pos_i, neg_i
    as in `contrastive` (parity form by default, `form="supcon"` optional). The cosine matrix is
    B×B per layer (the §11 shortcut does not apply to an exponentiated loss). MwT's cohesion,
    coupling and kernel rate are logged with weight 0 (NeMo logs them too), on the raw masks.

    Args:
        num_classes: number of classes N (see `mwt_objective` on label checks).
        contrastive_weight: α in NeMo (default 1.0, the low end of NeMo's CNN range 1.0–1.8 and
            the most accurate point of its α sweep; its ViT-S runs use 0.06 or 0.15).
        temperature: τ_c (default 0.2, what NeMo's run scripts pass; its trainers' argparse
            default is 0.3).
        form: `"parity"` (default) or `"supcon"`.
        first_layer_ones: NeMo's CNN-trainer quirk (default on; see `contrastive`). NeMo's ViT
            trainer has no such quirk (it masks no layer of block 0 instead).
        layers: conv names or mask keys; None = every `*/mask` entry, in acts (forward) order.

    Returns:
        `objective(logits, acts, labels, *, where=None) -> (loss, terms)`, terms keys: `ce`,
        `contrastive`, `contrastive_defined`, `cohesion`, `cohesion_defined`, `coupling`,
        `coupling_defined`, `kernel_rate`, `mask_mean`.

    Raises:
        ValueError: bad weight, `num_classes`, `temperature` (<= 0) or `form` (at construction);
            missing layers or no `*/mask` entries in acts (at trace time).

    Example:
        >>> import jax.numpy as jnp
        >>> objective = nemo_objective(num_classes=2, first_layer_ones=False)
        >>> acts = {"conv_1/mask": jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])}
        >>> loss, terms = objective(jnp.zeros((3, 2)), acts, jnp.array([0, 0, 1]))
        >>> round(float(terms["contrastive"]), 4)
        0.0133

    References:
        NeMo, arXiv 2508.11348; `XiaohanBi-Hub/NeMo, src/modular_trainer_contra.py`; METHODS §6.
    """
    return combine(
        ce=Term(ce_term(num_classes=num_classes), 1.0),
        contrastive=Term(
            contrastive_term(
                num_classes=num_classes,
                temperature=temperature,
                form=form,
                first_layer_ones=first_layer_ones,
                layers=layers,
            ),
            contrastive_weight,
        ),
        cohesion=Term(cohesion_term(num_classes=num_classes, layers=layers), 0.0),
        coupling=Term(coupling_term(num_classes=num_classes, layers=layers), 0.0),
        kernel_rate=Term(kernel_rate_term(layers=layers), 0.0),
    )
