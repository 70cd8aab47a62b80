"""Pan & Rajan's CNN decomposition (ICSE'22): CI + TI + channelling (+ MC-BLN), all classes at once.

`make_decompose(...)` returns one jitted `decompose(params, positives, negatives, valid)`:
per-class inactive-position reductions (`class_reductions`, vmapped over classes, a scan over
sample chunks inside), every class's CI + TI map (`inactive_maps`), then, vmapped over the
classes, channelling of the head and MC-BLN (`channel`). The result is stacked on a class axis:
module c runs as `run(params, x, keep=keep[c], head=head[c])`.
"""

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from modjax.decompose.cnn.channel import BLN_DELTA, apply_bln, bln_marks, channel_head
from modjax.decompose.cnn.identify import class_reductions, inactive_maps
from modjax.decompose.cnn.parent import layout

CM_VARIANTS = ("bln", "c", "none")
"""`bln`: channelling + MC-BLN (the paper's chosen method); `c`: channelling (CI+TI+MC);
`none`: CI + TI only (the parent's 10 outputs)."""


def modularize_class(
    params: Mapping[str, Any],
    inactive: Mapping[str, jax.Array],
    c: jax.Array,
    *,
    cm: str = "bln",
    delta: float = BLN_DELTA,
) -> dict[str, Any]:
    """Module c from its CI + TI inactive maps: keep-maps and (channelled) head.

    Args:
        params: the parent's `params`.
        inactive: `{point: bool [H, W, C]}` class c's inactive positions.
        c: the class (may be traced).
        cm: `bln`, `c` or `none` (`CM_VARIANTS`).
        delta: MC-BLN's δ.

    Returns:
        `{"keep": {point: bool [H, W, C]}, "head": {"kernel", "bias"}}`.
    """
    if cm not in CM_VARIANTS:
        raise ValueError(f"cm={cm!r} must be one of {list(CM_VARIANTS)}")
    w, b = params["head"]["kernel"], params["head"]["bias"]
    inactive = dict(inactive)
    if cm in ("c", "bln"):
        w, b = channel_head(w, b, c)
    if cm == "bln":
        last = layout(params)[-1].name
        inactive[last] = apply_bln(inactive[last], bln_marks(w, c, delta=delta))
    return {"keep": {k: ~v for k, v in inactive.items()}, "head": {"kernel": w, "bias": b}}


def make_decompose(
    *, cm: str = "bln", delta: float = BLN_DELTA, chunk: int = 64
) -> Callable[..., dict[str, Any]]:
    """A jitted `decompose(params, positives, negatives, valid=None)` for all classes at once.

    Args:
        cm: `bln` (default), `c` or `none`.
        delta: MC-BLN's δ (0.5).
        chunk: images per monitoring forward pass (memory bound, not a result).

    Returns:
        `decompose(params, positives [C, P, H, W, 3], negatives [C, Q, H, W, 3], valid [C, P])`
        → `{"keep": {point: bool [C, H, W, Ch]}, "head": {"kernel": [C, F, K], "bias":
        [C, K]}}`. `negatives[k]` are the TI images drawn *from* class k: module c re-activates
        what is active for the negatives of every class k ≠ c (TI at 1:1 takes P / (C − 1) per
        class). `valid` marks real positives (False: padding), None for all.

    Example:
        >>> from modjax import models
        >>> m = models.get_model("resnet_cifar", depth=8, width=0.25, batch_norm=False,
        ...                      num_classes=3)
        >>> x = jax.random.normal(jax.random.key(1), (3, 4, 8, 8, 3))
        >>> p = m.init(jax.random.key(0), x[0])["params"]
        >>> out = make_decompose()(p, x, x[:, :2])
        >>> out["keep"]["layer3.0"].shape, out["head"]["kernel"].shape
        ((3, 2, 2, 16), (3, 16, 3))
    """
    if cm not in CM_VARIANTS:
        raise ValueError(f"cm={cm!r} must be one of {list(CM_VARIANTS)}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk={chunk!r} must be an int >= 1")

    def decompose(params, positives, negatives, valid=None):
        if positives.shape[0] != negatives.shape[0]:
            raise ValueError(
                f"positives has {positives.shape[0]} classes and negatives {negatives.shape[0]}; "
                "negatives[k] are the TI images of class k, one group per class"
            )
        num_classes = params["head"]["kernel"].shape[-1]
        if positives.shape[0] != num_classes:
            raise ValueError(
                f"positives has {positives.shape[0]} classes; the parent has {num_classes} outputs"
            )
        pos, neg = class_reductions(params, positives, negatives, valid=valid, chunk=chunk)
        inactive = inactive_maps(pos, neg)
        classes = jnp.arange(positives.shape[0])
        return jax.vmap(lambda inact, c: modularize_class(params, inact, c, cm=cm, delta=delta))(
            inactive, classes
        )

    return jax.jit(decompose)
