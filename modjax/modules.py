"""The extracted module value (masked form) and its helpers: union, masks, parent model, checks.

A `Module` is the *masked* form (STYLE §2): the parent's shapes with one boolean keep-mask per
layer, so modules of one parent stack and compose in one pass. `as_masks` turns it into the
`masks=` argument of the zoo's `apply`. `modjax.modularize` extracts modules and re-exports
everything public here.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np

from modjax import models

METHODS = ("mwt", "moda")
"""Extraction methods: MwT generator masks (§4.5) and MODA activations (§5.4)."""

# Zoo models whose BatchNorm follows `mask_generators` by default (METHODS §4.2, quirk 5).
_BN_FOLLOWS_GENERATORS = ("lenet5", "simcnn", "rescnn")


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
        parent: JSON-able description of the parent (see `describe_parent`): `model`,
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


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method={method!r} must be one of {list(METHODS)}")
    return method


def _check_threshold(threshold: float) -> float:
    ok = isinstance(threshold, int | float) and not isinstance(threshold, bool)
    if not ok or not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold={threshold!r} must be in (0, 1] (τ = 0.9 in MwT and MODA)")
    return float(threshold)


def describe_parent(
    model: str,
    *,
    dataset: str | None = None,
    checkpoint: str | None = None,
    input_shape: Sequence[int] | None = None,
    **model_kwargs,
) -> dict[str, Any]:
    """A JSON-able description of a zoo parent model, stored in every `Module`.

    Args:
        model: zoo name (`models.MODEL_NAMES`).
        dataset: dataset name the parent was trained on.
        checkpoint: identity of the parent checkpoint (e.g. path and step, or a hash).
        input_shape: one example's shape `(H, W, C)`, used to trace channel counts.
        **model_kwargs: `models.get_model` keyword arguments; `num_classes`, `width` and
            `mask_generators` are always recorded (with their defaults).

    Raises:
        ValueError: whatever `models.get_model` rejects.
    """
    kwargs = {"num_classes": 10, "width": 1.0, "mask_generators": False, **model_kwargs}
    models.get_model(model, **kwargs)  # validates
    return {
        "model": model,
        "model_kwargs": kwargs,
        "dataset": dataset,
        "checkpoint": checkpoint,
        "input_shape": None if input_shape is None else [int(d) for d in input_shape],
    }


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
    _check_method(method)
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
        threshold=_check_threshold(threshold),
        fallbacks=events,
        metrics=dict(metrics) if metrics is not None else {"kernel_rate": kernel_rate(keep)},
    )


def _canonical(x: Any) -> str:
    """A comparable form of JSON-like metadata (tuples and lists compare equal)."""
    return json.dumps(x, sort_keys=True, default=str)


def union(modules: Sequence[Module]) -> Module:
    """The module of a set of classes: OR of the keep-masks (METHODS §4.6 u_T, §5.5 M[l]).

    Raises:
        ValueError: no modules, or modules of different parents, methods, thresholds or
            layers.
    """
    if not modules:
        raise ValueError("union needs at least one module")
    first = modules[0]
    for m in modules[1:]:
        for field in ("parent", "method", "threshold"):
            a, b = getattr(first, field), getattr(m, field)
            if _canonical(a) != _canonical(b):
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


def _mobilenet_effective(keep: dict[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
    """MobileNet's depthwise rule in masked form (METHODS §4.6 fork, §5.5).

    For each depthwise layer with a masked predecessor p (the previous pointwise conv, or for
    MODA the stem before block 0): E = keep[p] ∧ keep[dw]; if E is empty it is the first index
    of keep[dw]. The predecessor's output set becomes E; the depthwise layer keeps its own set,
    so its channels outside E get a zero input and emit ReLU(BN(0)), exactly as the pruned form
    (which zero-pads the block input into the depthwise layout). The MwT fork keeps block 0's
    depthwise layer intact (all channels).
    """
    keep = dict(keep)
    i = 0
    while f"block{i}.dw" in keep:
        dw = f"block{i}.dw"
        prev = "stem" if i == 0 else f"block{i - 1}.pw"
        if method == "mwt" and i == 0:
            keep[dw] = np.ones_like(keep[dw])
        elif prev in keep:
            e = keep[prev] & keep[dw]
            if not e.any() and keep[dw].any():
                e[np.argmax(keep[dw])] = True
            keep[prev] = e
        i += 1
    return keep


def effective_keep(module: Module) -> dict[str, np.ndarray]:
    """The keep-masks the masked form applies: `module.keep` after architecture rules.

    Only MobileNet differs from `module.keep` (see `_mobilenet_effective`); VGG and ResNet18
    need no rule because masked inputs are exact zeros (METHODS §5.5).
    """
    keep = {n: np.asarray(k, bool) for n, k in module.keep.items()}
    if module.parent.get("model") == "mobilenet":
        keep = _mobilenet_effective(keep, module.method)
    return keep


def as_masks(module: Module) -> dict[str, jax.Array]:
    """The masked form: float32 keep-masks `{layer: [C]}` for `model.apply(..., masks=...)`.

    Keys are mask points of the parent (`models.mask_points`): for MwT the masked convs, whose
    keep-mask multiplies the BN output in place of the dropped generator (apply with
    `masked_form_model(module)` and `drop_generators(variables)`); for MODA the tracked
    layers (ReLU outputs; ResNet18 block outputs `layer{s}.{b}`). MobileNet uses the effective
    sets of `effective_keep`.
    """
    return {n: jax.device_put(k.astype(np.float32)) for n, k in effective_keep(module).items()}


def masked_form_model(module_or_parent: Module | Mapping[str, Any]) -> nn.Module:
    """The zoo model that applies a module's masked form.

    For an MwT module the generators are dropped (METHODS §4.6, §12 row 4): the parent is built
    with `mask_generators=False`, keeping its BatchNorm (`batch_norm=True` for models whose BN
    otherwise follows the generators). Pair it with `drop_generators(variables)`. For MODA it
    is the parent model itself.
    """
    if isinstance(module_or_parent, Module):
        parent, method = module_or_parent.parent, module_or_parent.method
    else:
        parent, method = module_or_parent, "moda"
    name, kwargs = parent["model"], dict(parent["model_kwargs"])
    if method == "mwt" and kwargs.get("mask_generators"):
        kwargs["mask_generators"] = False
        if name in _BN_FOLLOWS_GENERATORS and kwargs.get("batch_norm") is None:
            kwargs["batch_norm"] = True
    return models.get_model(name, **kwargs)


def drop_generators(variables: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `variables` without MwT mask-generator subtrees (keys named `generator`)."""

    def strip(tree):
        if isinstance(tree, Mapping):
            return {k: strip(v) for k, v in tree.items() if k != "generator"}
        return tree

    return {col: strip(tree) for col, tree in variables.items()}


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
    "as_masks",
    "check_module",
    "describe_parent",
    "drop_generators",
    "effective_keep",
    "kernel_rate",
    "masked_form_model",
    "module_for_class",
    "union",
]
