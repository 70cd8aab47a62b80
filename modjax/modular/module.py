"""The extracted module value: per-layer keep-masks, classes, parent identity; union and checks.

A `Module` is the *masked* form (STYLE §2): the parent's shapes with one boolean keep-mask per
layer, so modules of one parent stack and compose in one pass. `modjax.modular.masked` turns it
into the `masks=` argument of the zoo's `apply`.
"""

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from modjax import models
from modjax.modules import jsonrules

METHODS = ("mwt", "moda")
"""This family's methods: MwT generator masks (§4.5) and MODA activations (§5.4); registered
with the module layer by `modjax.modular.family`."""


class FallbackEvent(NamedTuple):
    """One use of a method's fallback rule for an empty (or too small) layer of one class.

    Attributes:
        layer: layer name.
        class_id: the class.
        threshold: MwT: the final lowered threshold of the layer; MODA: None.
        k: units kept after the fallback (MODA: the top-k size).
    """

    layer: str
    class_id: int
    threshold: float | None
    k: int


class Module(NamedTuple):
    """An extracted module in masked form: one keep-mask per layer of the parent model.

    Attributes:
        keep: `{layer: bool [C]}` in forward order; for MwT the masked convs, for MODA the
            tracked layers.
        classes: parent class ids the module covers (sorted).
        parent: JSON-able description of the parent (`modules.identity.describe_parent`): `model`,
            `model_kwargs` (with `num_classes`, `width`, `mask_generators`), `dataset`,
            `checkpoint`, `input_shape`.
        method: `"mwt"` or `"moda"`.
        threshold: τ used by `extract`.
        fallbacks: the fallback events of these classes.
        metrics: JSON-able scalars, e.g. `kernel_rate` (KRR, METHODS §10.1), `num_samples`.
    """

    keep: dict[str, np.ndarray]
    classes: tuple[int, ...]
    parent: dict[str, Any]
    method: str
    threshold: float
    fallbacks: tuple[FallbackEvent, ...]
    metrics: dict[str, Any]


def check_method(method: str) -> str:
    """Returns `method` if it is one of `METHODS`, else raises `ValueError` naming it."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} must be one of {list(METHODS)}")
    return method


def check_threshold(threshold: float) -> float:
    """Returns τ as a float if it is in (0, 1], else raises `ValueError` naming it."""
    ok = isinstance(threshold, int | float) and not isinstance(threshold, bool)
    if not ok or not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold={threshold!r} must be in (0, 1] (τ = 0.9 in MwT and MODA)")
    return float(threshold)


def kernel_rate(keep: Mapping[str, np.ndarray]) -> float:
    """Fraction of kept units over all layers of `keep` (KRR for MwT, METHODS §10.1)."""
    total = sum(np.asarray(k).size for k in keep.values())
    return float(sum(int(np.asarray(k).sum()) for k in keep.values()) / max(total, 1))


def module_for_class(
    keep_masks: Mapping[str, np.ndarray],
    class_id: int,
    *,
    parent: Mapping[str, Any],
    method: str,
    threshold: float = 0.9,
    fallbacks: Sequence[FallbackEvent] = (),
    metrics: Mapping[str, Any] | None = None,
) -> Module:
    """The module of one class: row `class_id` of every `[N, C]` keep-mask from `extract`.

    `fallbacks` may hold every class's events; only `class_id`'s are kept. `metrics` defaults
    to `{"kernel_rate": KRR_c}`.
    """
    check_method(method)
    keep = {}
    for name, m in keep_masks.items():
        m = np.asarray(m, bool)
        if m.ndim != 2 or not 0 <= class_id < m.shape[0]:
            raise ValueError(
                f"class_id={class_id} is not a row of keep_masks[{name!r}] with shape {m.shape}"
            )
        keep[name] = m[class_id].copy()
    events = tuple(e for e in fallbacks if e.class_id == class_id)
    return Module(
        keep=keep,
        classes=(int(class_id),),
        parent=dict(parent),
        method=method,
        threshold=check_threshold(threshold),
        fallbacks=events,
        metrics=dict(metrics) if metrics is not None else {"kernel_rate": kernel_rate(keep)},
    )


def union(modules: Sequence[Module]) -> Module:
    """The module of a set of classes: OR of the keep-masks (METHODS §4.6 u_T, §5.5 M[l]).

    Raises:
        ValueError: no modules, or modules of different parents, methods, thresholds or
            layers.
    """
    if not modules:
        raise ValueError("union needs at least one module")
    for m in modules:
        check_method(m.method)
    first = modules[0]
    for m in modules[1:]:
        for field in ("parent", "method", "threshold"):
            a, b = getattr(first, field), getattr(m, field)
            if jsonrules.canonical(a) != jsonrules.canonical(b):
                raise ValueError(
                    f"cannot unite modules of classes {first.classes} and {m.classes}: "
                    f"{field} differs ({a!r} vs {b!r})"
                )
        if list(m.keep) != list(first.keep):
            raise ValueError(
                f"cannot unite modules with layers {list(first.keep)} and {list(m.keep)}"
            )
    keep = {
        n: np.logical_or.reduce([np.asarray(m.keep[n], bool) for m in modules]) for n in first.keep
    }
    events = tuple(dict.fromkeys(e for m in modules for e in m.fallbacks))
    return first._replace(
        keep=keep,
        classes=tuple(sorted({c for m in modules for c in m.classes})),
        fallbacks=events,
        metrics={"kernel_rate": kernel_rate(keep)},
    )


def check_module(module: Module) -> None:
    """Checks a module's keep-masks against its parent's mask points and channel counts.

    Raises:
        ValueError: a layer that is no mask point of the parent, or a keep shape that differs
            from the parent's channel count (naming both).
    """
    parent = module.parent
    if parent.get("model") not in models.MODEL_NAMES:
        raise ValueError(f"module parent model={parent.get('model')!r} is not a zoo model")
    shape = parent.get("input_shape") or (32, 32, 3)
    points = models.mask_points(
        models.get_model(parent["model"], **parent["model_kwargs"]), input_shape=shape
    )
    desc = f"{parent['model']}({parent['model_kwargs']})"
    for name, k in module.keep.items():
        if name not in points:
            raise ValueError(f"module layer {name!r} is not a mask point of parent {desc}")
        if np.shape(k) != (points[name],):
            raise ValueError(
                f"module keep[{name!r}] has shape {np.shape(k)} but parent {desc} has "
                f"{points[name]} channels there"
            )


__all__ = [
    "METHODS",
    "FallbackEvent",
    "Module",
    "check_method",
    "check_module",
    "check_threshold",
    "kernel_rate",
    "module_for_class",
    "union",
]
