"""Channel pruning: a module's pruned form and the masked form it equals (METHODS §4.6, §5.5).

A module is a set of per-layer keep-masks over a parent model's mask points (STYLE §2). Its
*pruned* form is a narrower instance of the same zoo class (`get_model(..., channels=...)`, plus
static index wiring where layouts must be aligned) applied to sliced parameters; its *masked*
form is the parent (without MwT generators) applied with full-shape keep-masks. `prune` builds
the first, `masked_equivalent` the second, and the two agree on every input in eval mode:

    pruned_model, pruned_vars = prune("vgg16", kw, variables, keep, classes=(3, 5))
    model, masks = masked_equivalent("vgg16", kw, keep)
    pruned_model.apply(pruned_vars, x)[0] == model.apply(variables, x, masks=masks)[0][:, [3, 5]]

Rules (R_l = kept output indices of layer l; unlisted mask points keep everything):
- Sequential layers: conv kernel → [R_l out, R_{l-1} in]; conv bias and BN tensors → R_l; at a
  conv→dense flatten the channel set expands over the H·W positions (channel-major).
- Residual adds (ResNet18, the CIFAR ResNet-v1, ResCNN): the add keeps
  R_add = (R_branch ∪ R_shortcut) ∩ R_block, where R_block is the ResNet block-output mask
  (MODA's post-add ReLU; all when unkeyed). Each side is zero-padded into R_add's layout at its
  own indices by one static gather (`layers.residual_add`); conv2 and a downsample conv keep only
  their channels inside R_add, and an identity shortcut contributes only (block input ∩ R_add):
  the union rule of §4.6 and the identity-intersection rule of §5.5 in one formula.
- MobileNet: each depthwise layer keeps its own set R_dw; its input set (the previous pointwise
  layer, or the stem) becomes E = R_prev ∩ R_dw, or the first index of R_dw if that is empty,
  and is zero-padded into R_dw's layout (`dw_inputs` wiring), so depthwise channels outside E
  see a zero input and emit ReLU(BN(0)) in both forms. With `method="mwt"` block 0's depthwise
  layer is kept whole (forked_MwT). The masked form uses these effective sets.
- Output layer: input sliced to the last kept set; rows = `classes` (MODA, |T| logits) or all N
  (MwT keeps the whole classifier).

MwT mask generators are dropped: both forms are built with `mask_generators=False`, keeping BN
(`batch_norm=True` for lenet5/simcnn/rescnn, whose BN otherwise follows the generators). Where a
generator mask multiplied a conv output without BN (the CIFAR ResNet-v1's shortcut, its `_nobn`
models, the MLP) the keep-mask takes its place on that pre-activation.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from modjax import models
from modjax.models import trace  # one abstract pass: mask points and variable shapes
from modjax.modular._prune_plans import (
    _Plan,
    _plan_mobilenet,
    _plan_rescnn,
    _plan_resnet,
    _plan_sequential,
)
from modjax.modular.masked import without_generators
from modjax.modular.module import check_method

_PRUNED_KWARGS = ("channels", "residual", "dw_inputs")
_WIRING_KWARG = {"resnet": "residual", "rescnn": "residual", "mobilenet": "dw_inputs"}


def _family(model_name: str, kwargs: Mapping[str, Any]) -> str:
    """The planner of a zoo model: `"resnet"` for ResNet18 and every CIFAR ResNet-v1 name
    (`resnet_cifar`, `resnet{depth}`, `resnet{depth}_nobn`), else the model name."""
    if model_name == "resnet18" or isinstance(
        models.get_model(model_name, **kwargs), models.ResNetCIFAR
    ):
        return "resnet"
    return model_name


def _check_keep(
    keep: Mapping[str, Any], points: dict[str, int], model_name: str
) -> dict[str, np.ndarray]:
    if not isinstance(keep, Mapping):
        raise TypeError(f"keep must be a dict {{mask point: bool [C]}}; got {type(keep).__name__}")
    out = {}
    for name, value in keep.items():
        if name not in points:
            raise ValueError(
                f"keep[{name!r}] names no mask point of {model_name}; valid names: {list(points)}"
            )
        k = np.asarray(value)
        if k.ndim != 1 or k.shape[0] != points[name]:
            raise ValueError(
                f"keep[{name!r}] has shape {k.shape}; {model_name} layer {name!r} has "
                f"{points[name]} channels, so expected ({points[name]},)"
            )
        if k.dtype != bool:
            if not np.isin(k, (0, 1)).all():
                values = np.unique(k)[:6]
                raise ValueError(f"keep[{name!r}] must be boolean (or 0/1); got values {values}")
            k = k.astype(bool)
        out[name] = k
    return out


def _check_classes(classes: Sequence[int] | None, num_classes: int) -> np.ndarray:
    if classes is None:
        return np.arange(num_classes)
    c = np.asarray(classes)
    ok = c.ndim == 1 and c.size > 0 and np.issubdtype(c.dtype, np.integer)
    if not ok or len(np.unique(c)) != c.size or c.min() < 0 or c.max() >= num_classes:
        raise ValueError(
            f"classes={classes!r} must be distinct ints in [0, {num_classes}) (the kept outputs)"
        )
    return c.astype(np.int64)


def _parent_kwargs(model_name: str, model_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    if model_name not in models.MODEL_NAMES:
        raise ValueError(f"unknown model name={model_name!r}; expected one of {models.MODEL_NAMES}")
    kwargs = dict(model_kwargs)
    already = [k for k in _PRUNED_KWARGS if kwargs.get(k)]
    if already:
        raise ValueError(
            f"model_kwargs {already} describe an already pruned instance; prune the parent model"
        )
    return kwargs


def _default_shape(model_name: str, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    if input_shape is not None:
        return tuple(input_shape)
    return (28, 28, 1) if model_name == "mlp" else (32, 32, 3)


def _parent_trace(model_name: str, kwargs: dict[str, Any], shape: tuple[int, ...]):
    """The parent's abstract pass (points, variable shapes; `trace` caches it)."""
    return trace(models.get_model(model_name, **kwargs), shape)


def _plan(
    model_name: str,
    model_kwargs: Mapping[str, Any],
    keep: Mapping[str, Any],
    *,
    classes: Sequence[int] | None,
    method: str,
    input_shape: Sequence[int] | None,
):
    check_method(method)
    kwargs = _parent_kwargs(model_name, model_kwargs)
    if isinstance(models.get_model(model_name, **kwargs), models.ViT):
        raise ValueError(
            f"model_name={model_name!r} is a ViT: prune its heads and MLP neurons with "
            "modjax.modular.prune_vit"
        )
    found = _parent_trace(model_name, kwargs, _default_shape(model_name, input_shape))
    points = dict(found.points)
    plan = _Plan(model_name, points, _check_keep(keep, points, model_name))
    params = found.variables["params"]
    shapes = {k: v.shape for k, v in traverse_util.flatten_dict(params).items()}
    cls = _check_classes(classes, shapes[("head", "kernel")][1])
    family = _family(model_name, kwargs)
    if family == "rescnn":
        _plan_rescnn(plan, shapes, cls)
    elif family == "resnet":
        _plan_resnet(plan, shapes, cls)
    elif family == "mobilenet":
        _plan_mobilenet(plan, shapes, cls, method)
    else:
        _plan_sequential(plan, shapes, cls)
    return plan, kwargs, found.variables, len(cls)


def _take(a: Any, idx: np.ndarray | None, axis: int) -> np.ndarray:
    a = np.asarray(a)
    return a if idx is None else np.take(a, idx, axis=axis)


def _get(tree: Mapping, path: tuple[str, ...], what: str) -> Mapping:
    node = tree
    for k in path:
        if not isinstance(node, Mapping) or k not in node:
            raise ValueError(f"variables[{what!r}] has no entry {'/'.join(path)}")
        node = node[k]
    return node


def _slice(plan: _Plan, variables: Mapping[str, Any]) -> dict[str, Any]:
    params, stats = variables["params"], variables.get("batch_stats", {})
    new_params, new_stats = {}, {}
    for path, kind, in_idx, out_idx in plan.ops:
        p = _get(params, path, "params")
        if kind == "dense":
            kernel = _take(_take(p["kernel"], in_idx, 0), out_idx, 1)
            new_params[path] = {"kernel": kernel, "bias": _take(p["bias"], out_idx, 0)}
            continue
        kernel = _take(p["conv"]["kernel"], out_idx, 3)
        if kind == "conv":
            kernel = _take(kernel, in_idx, 2)
        elif out_idx.size == 0:  # a zero-width depthwise layer is an empty 0 → 0 conv
            kernel = kernel[:, :, :0, :]
        unit = {"conv": {"kernel": kernel}}
        if "bias" in p["conv"]:
            unit["conv"]["bias"] = _take(p["conv"]["bias"], out_idx, 0)
        if "bn" in p:
            unit["bn"] = {k: _take(v, out_idx, 0) for k, v in p["bn"].items()}
            s = _get(stats, (*path, "bn"), "batch_stats")
            new_stats[path] = {"bn": {k: _take(v, out_idx, 0) for k, v in s.items()}}
        new_params[path] = unit
    out = {"params": new_params}
    if new_stats:
        out["batch_stats"] = new_stats
    out = {col: traverse_util.unflatten_dict(tree) for col, tree in out.items()}
    return jax.tree.map(jnp.asarray, out)


def _check_shapes(expected: Any, given: Any, what: str) -> None:
    exp = traverse_util.flatten_dict(dict(expected))
    got = traverse_util.flatten_dict(dict(given))
    if exp.keys() != got.keys():
        missing, extra = sorted(exp.keys() - got.keys()), sorted(got.keys() - exp.keys())
        raise ValueError(f"{what} does not match the model: missing {missing}, unexpected {extra}")
    for k, v in exp.items():
        if tuple(np.shape(got[k])) != tuple(v.shape):
            raise ValueError(
                f"{what} entry {'/'.join(k)} has shape {tuple(np.shape(got[k]))}; "
                f"the model expects {tuple(v.shape)}"
            )


def prune(
    model_name: str,
    model_kwargs: Mapping[str, Any],
    variables: Mapping[str, Any],
    keep: Mapping[str, Any],
    *,
    classes: Sequence[int] | None = None,
    method: str = "mwt",
    input_shape: Sequence[int] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The pruned form of a module: a narrower model of the same class and its sliced variables.

    Args:
        model_name: the parent's zoo name (`models.MODEL_NAMES`).
        model_kwargs: the parent's `get_model` keyword arguments (`num_classes`, `width`,
            `mask_generators`, ...).
        variables: the parent's `{"params", "batch_stats"}` (generator subtrees are dropped).
        keep: `{mask point: bool [C]}` kept channels per layer (`models.mask_points`); unlisted
            points keep all channels. MwT keys the masked convs (ResNet18 and the CIFAR
            ResNet-v1: `conv1`, `conv2`, `shortcut`), MODA the tracked layers (`stem`, `conv1`,
            block outputs).
        classes: output rows to keep, in this order (MODA slicing: |T| logits); None keeps all
            N outputs (MwT: the whole classifier, input sliced).
        method: `"mwt"` or `"moda"`; only MobileNet's first depthwise rule differs (MwT keeps
            block 0's depthwise layer whole).
        input_shape: one example's shape, for checking `variables` and the flatten width
            (default `(32, 32, 3)`, `(28, 28, 1)` for `mlp`; e.g. `(224, 224, 3)` for 224-px VGG).

    Returns:
        `(pruned_model, pruned_variables)`: a zoo model built with `mask_generators=False`, per-
        layer `channels` and any index wiring (`residual` / `dw_inputs`), `num_classes =
        len(classes)`; and its `{"params", "batch_stats"}` sliced from `variables` (no
        `batch_stats` for models without BN). In eval mode its logits equal those of
        `masked_equivalent`'s model and masks on `variables`, restricted to `classes`.

    Raises:
        ValueError: an unknown model or method; a keep key that is no mask point, a keep of the
            wrong shape or non-boolean values; bad `classes`; variables that do not match the
            parent. A layer that keeps no channel (parity extraction without the fallback, or
            after the residual rules) is valid: it becomes a zero-width layer that passes zeros
            on, so what follows sees only its biases, exactly as in the masked form.

    Example:
        >>> kw = {"depth": 1, "num_classes": 3}
        >>> model = models.get_model("mlp", **kw)
        >>> v = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
        >>> keep = {"dense_0": np.arange(49) < 7}
        >>> pruned, pv = prune("mlp", kw, v, keep, classes=[2], method="moda")
        >>> pv["params"]["dense_0"]["kernel"].shape, pruned.num_classes
        ((784, 7), 1)
    """
    plan, kwargs, abstract, n_out = _plan(
        model_name, model_kwargs, keep, classes=classes, method=method, input_shape=input_shape
    )
    for col in ("params", "batch_stats"):
        if col in abstract or col in variables:
            _check_shapes(abstract.get(col, {}), variables.get(col, {}), f"variables[{col!r}]")
    pruned_kwargs = without_generators(model_name, kwargs)
    pruned_kwargs["num_classes"] = n_out
    if plan.channels:
        pruned_kwargs["channels"] = plan.channels
    if plan.wiring:
        pruned_kwargs[_WIRING_KWARG[_family(model_name, kwargs)]] = plan.wiring
    # Flax checks every sliced shape against the pruned model on its first apply.
    return models.get_model(model_name, **pruned_kwargs), _slice(plan, variables)


def masked_equivalent(
    model_name: str,
    model_kwargs: Mapping[str, Any],
    keep: Mapping[str, Any],
    *,
    method: str = "mwt",
    input_shape: Sequence[int] | None = None,
) -> tuple[nn.Module, dict[str, jax.Array]]:
    """The masked form equal to `prune`'s pruned form: the parent model and full-shape masks.

    Keep-masks are applied as `model.apply(variables, x, masks=masks)` with the parent's own
    `variables` (generator entries are unused). They equal `keep` except for MobileNet, whose
    depthwise inputs use the effective sets E (and MwT's whole first depthwise layer); residual
    unions need no change because masked channels are exact zeros.

    Args:
        model_name, model_kwargs, keep, method, input_shape: as `prune`.

    Returns:
        `(model, masks)`: the parent built with `mask_generators=False` (BN kept), and
        `{mask point: float32 [C]}` for the keys of `keep`.

    Raises:
        ValueError: as `prune`.
    """
    plan, kwargs, _, _ = _plan(
        model_name, model_kwargs, keep, classes=None, method=method, input_shape=input_shape
    )
    masks = {}
    for name, k in plan.keep.items():
        if name in plan.effective:
            k = np.zeros(plan.points[name], bool)
            k[plan.effective[name]] = True
        masks[name] = jnp.asarray(k, jnp.float32)
    return models.get_model(model_name, **without_generators(model_name, kwargs)), masks


__all__ = ["masked_equivalent", "prune"]
