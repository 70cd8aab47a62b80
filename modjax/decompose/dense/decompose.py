"""Pan & Rajan's dense decomposition (FSE'20): variants and the one jitted call for all classes.

`make_decompose(...)` returns `decompose(params, positives, negatives) -> stacked module
params`: CI + TI (`identify`), then optional CM-RIE and CM-C (`channel`), vmapped over the
classes, under one `jax.jit`. Module c is the parent-shaped parameter tree of
`models.get_model("mlp", depth=k)` with edges zeroed and (with CM) outputs channelled, so it
runs with the parent's own `apply`.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from modjax.decompose.dense import channel as channel_lib
from modjax.decompose.dense.identify import identify
from modjax.decompose.dense.parent import to_layers, to_params


class Variant(NamedTuple):
    """Constants of one tangling-identification variant (METHODS §7.3).

    Attributes:
        num_positives: CI positives per class.
        negatives_per_class: TI negatives from each other class.
        ti_out_threshold: TI restores output column j when p_j > this.
        ci_out_threshold: CI zeroes output column j when p_j ≤ this (TI-PN), or None.
        negatives_first: TI-HP's order.
        guard_fraction: sparsity reset when nnz(D_L) < fraction · size(W_L).
    """

    num_positives: int
    negatives_per_class: int
    ti_out_threshold: float
    ci_out_threshold: float | None = None
    negatives_first: bool = False
    guard_fraction: float = 45 / 490


TI_VARIANTS = ("sne", "i", "pn", "hp")
CM_VARIANTS = ("rie", "c", "none")

_CODE = {
    "i": Variant(1000, 1, 0.5),
    "pn": Variant(200, 22, 0.5, ci_out_threshold=1e-4),
    "hp": Variant(1000, 110, 0.5, negatives_first=True),
    "sne": Variant(1000, 110, 0.5),
}
_PAPER = {
    "i": Variant(1000, 1, 1e-4, guard_fraction=0.1),
    "pn": Variant(100, 11, 0.5, ci_out_threshold=1e-4, guard_fraction=0.1),
    "hp": Variant(1000, 110, 0.5, negatives_first=True, guard_fraction=0.1),
    "sne": Variant(1000, 110, 0.5, guard_fraction=0.1),
}


def variant(ti: str = "sne", *, paper_constants: bool = False) -> Variant:
    """The constants of TI variant `ti`: the reference code's (default) or the paper's.

    Raises:
        ValueError: an unknown variant.

    Example:
        >>> variant("sne").negatives_per_class, variant("pn", paper_constants=True).num_positives
        (110, 100)
    """
    if ti not in TI_VARIANTS:
        raise ValueError(f"ti={ti!r} must be one of {list(TI_VARIANTS)}")
    return (_PAPER if paper_constants else _CODE)[ti]


def decompose_class(
    params: Any,
    positives: jax.Array,
    negatives: jax.Array,
    c: jax.Array,
    *,
    ti: str = "sne",
    cm: str = "rie",
    parity: bool = False,
    paper_constants: bool = False,
    valid: jax.Array | None = None,
) -> dict[str, Any]:
    """The module of class `c` (library maths, not jitted; see `make_decompose`).

    Args:
        params: the parent MLP's `params`.
        positives: `[P, ...]` CI samples of class c.
        negatives: `[Q, ...]` TI samples of the other classes.
        c: the class (may be traced).
        ti: tangling identification: `sne` (default), `i`, `pn` or `hp`.
        cm: concern modularization: `rie` (default), `c`, or `none`.
        parity: the reference code's quirks (CI order, CM-RIE criterion/merge, bias mean).
        paper_constants: the paper's thresholds and counts instead of the code's.
        valid: `[P]` bool marking real positives (False: padding), or None.

    Returns:
        The module's parameters, shaped like `params`.
    """
    if cm not in CM_VARIANTS:
        raise ValueError(f"cm={cm!r} must be one of {list(CM_VARIANTS)}")
    v = variant(ti, paper_constants=paper_constants)
    layers = to_layers(params)
    masks = identify(
        layers,
        positives,
        negatives,
        ti_out_threshold=v.ti_out_threshold,
        ci_out_threshold=v.ci_out_threshold,
        negatives_first=v.negatives_first,
        guard_fraction=v.guard_fraction,
        parity=parity,
        valid=valid,
    )
    module = [
        (jnp.where(km, w, 0.0), jnp.where(bm, b, 0.0))
        for (w, b), km, bm in zip(layers, masks.kernels, masks.biases)
    ]
    if cm == "rie":
        module = channel_lib.remove_irrelevant(module, c, parity=parity)
    if cm in ("rie", "c"):
        module = channel_lib.channel(module, c, parity=parity)
    return to_params(module)


def make_decompose(
    *,
    ti: str = "sne",
    cm: str = "rie",
    parity: bool = False,
    paper_constants: bool = False,
) -> Callable[[Any, jax.Array, jax.Array], dict[str, Any]]:
    """A jitted `decompose(params, positives, negatives)` for all classes at once.

    Args:
        ti, cm, parity, paper_constants: as in `decompose_class`.

    Returns:
        `decompose(params, positives [C, P, ...], negatives [C, Q, ...], valid=None)` → module
        params with a leading class axis `[C, ...]` on every leaf (module c is class c);
        `valid [C, P]` marks real positives when a class has fewer than P (padding last).

    Example:
        >>> import numpy as np
        >>> from modjax import models
        >>> m = models.get_model("mlp", depth=1, hidden=3, num_classes=2)
        >>> p = m.init(jax.random.key(0), jnp.ones((1, 4)))["params"]
        >>> out = make_decompose(cm="c")(p, jnp.ones((2, 5, 4)), jnp.ones((2, 2, 4)))
        >>> out["head"]["kernel"].shape
        (2, 3, 2)
    """
    variant(ti)
    if cm not in CM_VARIANTS:
        raise ValueError(f"cm={cm!r} must be one of {list(CM_VARIANTS)}")

    def one(params, pos, neg, c, ok):
        return decompose_class(
            params,
            pos,
            neg,
            c,
            ti=ti,
            cm=cm,
            parity=parity,
            paper_constants=paper_constants,
            valid=ok,
        )

    def decompose(params, positives, negatives, valid=None):
        if positives.shape[0] != negatives.shape[0]:
            raise ValueError(
                f"positives has {positives.shape[0]} classes and negatives {negatives.shape[0]}"
            )
        if valid is None:
            valid = jnp.ones(positives.shape[:2], bool)
        classes = jnp.arange(positives.shape[0])
        return jax.vmap(one, in_axes=(None, 0, 0, 0, 0))(
            params, positives, negatives, classes, valid
        )

    return jax.jit(decompose)
