"""The model zoo: `get_model` by name, and the layer names and channel counts of each model.

Every model is a Flax Linen module used as

    variables = model.init({"params": key, "dropout": key}, x, train=False)
    (logits, acts), updates = model.apply(variables, x, train=True, masks=None,
                                          rngs={"dropout": key}, mutable=["batch_stats"])
    logits, acts = model.apply(variables, x, train=False)

with `x` float32 NHWC. `acts` maps stable layer names to post-ReLU activations (`[B, H, W, C]` or
`[B, n]`) and, for MwT models, `f"{conv}/mask"` to generator masks `[B, C]`, in forward order.
JAX returns dicts with sorted keys from `jit`/`eval_shape`, so take the forward order from
`tracked_layers`, `masked_layers` and `mask_points` rather than from a jitted output.

`masks` takes external per-layer keep-masks `{name: [C] or [B, C]}` keyed by any name in
`mask_points(...)`: a conv/dense layer (applied after BN, before ReLU and any residual add), a
ResNet block output `layer{s}.{b}` (applied after the post-add ReLU), or a ViT block's heads
`block{i}.attn` and MLP neurons `block{i}.mlp` (acts `[B, units]`, token-averaged; see `ViT`).
"""

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import numpy as np
from flax.core import FrozenDict

from modjax.models.cnn import LeNet5, ResCNN, SimCNN
from modjax.models.layers import MASK_SUFFIX, ConvUnit, MaskGenerator, check_width
from modjax.models.mlp import MLP, check_mlp
from modjax.models.mobilenet import MobileNet
from modjax.models.resnet import ResNet18
from modjax.models.resnet_cifar import (
    DEEPARC_DEPTHS,
    ResNetCIFAR,
    blocks_for_depth,
    check_blocks,
)
from modjax.models.size import (
    count_conv_kernels,
    count_generator_params,
    count_macs,
    count_masked_kernels,
    count_params,
    summarize,
    trace,
)
from modjax.models.vgg import VGG, VGG16, VGG16_MODA
from modjax.models.vit import ViT

_CONSTRUCTORS = {
    "mlp": MLP,
    "lenet5": LeNet5,
    "simcnn": SimCNN,
    "rescnn": ResCNN,
    "vgg16": VGG16,
    "vgg16_moda": VGG16_MODA,
    "resnet18": ResNet18,
    "mobilenet": MobileNet,
    # CIFAR ResNet-v1 (METHODS §3.8): `resnet_cifar` takes `depth=`; `resnet{depth}` fixes it.
    "resnet_cifar": ResNetCIFAR,
    **{
        f"resnet{d}": functools.partial(ResNetCIFAR, depth=d)
        for d in sorted({20, 32, 56, *DEEPARC_DEPTHS})
    },
    # Pan & Rajan ICSE'22 parents: the same ResNets without BatchNorm (METHODS §3.8), at every
    # depth above (Fixup-style init by default, so each trains from `modjax train`).
    **{
        f"resnet{d}_nobn": functools.partial(ResNetCIFAR, depth=d, batch_norm=False)
        for d in sorted({20, 32, 56, *DEEPARC_DEPTHS})
    },
    # Vision Transformers (units: heads and MLP neurons): `vit` takes `size=`; `vit_{size}` fixes it.
    "vit": ViT,
    "vit_tiny": functools.partial(ViT, size="tiny"),
    "vit_small": functools.partial(ViT, size="small"),
}
MODEL_NAMES: tuple[str, ...] = tuple(_CONSTRUCTORS)
"""Names accepted by `get_model`."""

# Models with an MwT form (`mask_generators=True`, METHODS §4.2; `mlp`: neuron-level masks on
# every hidden dense layer, see `MLP`; the CIFAR ResNet-v1 family: block convs and projection
# shortcuts as ResNet18, see `ResNetCIFAR`). Every zoo model has one today; `get_model` still
# checks, so that a model added without an MwT form is rejected by name.
_MWT_MODELS: tuple[str, ...] = MODEL_NAMES

_COMMON = ("num_classes", "width", "mask_generators")


def _extra_kwargs(name: str) -> tuple[str, ...]:
    ctor = _CONSTRUCTORS[name]
    fixed = ()
    if isinstance(ctor, functools.partial):
        ctor, fixed = ctor.func, tuple(ctor.keywords)
    fields = (f.name for f in dataclasses.fields(ctor) if f.init)
    return tuple(f for f in fields if f not in (*_COMMON, *fixed, "parent", "name"))


def get_model(
    name: str,
    *,
    num_classes: int = 10,
    width: float = 1.0,
    mask_generators: bool = False,
    **model_kwargs,
) -> nn.Module:
    """Builds a model of the zoo by name.

    Args:
        name: one of `MODEL_NAMES`: `mlp`, `lenet5`, `simcnn`, `rescnn`, `vgg16` (MwT variant (a)),
            `vgg16_moda` (variant (b)), `resnet18`, `mobilenet`, and the CIFAR ResNet-v1
            `resnet_cifar` (option `depth`) with its fixed depths `resnet14`, `resnet20`,
            `resnet32`, `resnet44`, `resnet56`, `resnet86`, `resnet110`, `resnet152`,
            and without BatchNorm `resnet{depth}_nobn` at the same depths; the Vision
            Transformer `vit` (option `size`) with its fixed sizes `vit_tiny` and `vit_small`.
        num_classes: output units N.
        width: channel/unit multiplier: every conv width and hidden FC width c becomes
            `max(1, round(c * width))`; 1.0 is the paper architecture (for `mlp`, the hidden size).
        mask_generators: build the MwT modular model (METHODS §4.1, §4.2): every conv but the first
            gets a mask generator, returned in acts as `f"{conv}/mask"`; for `mlp`, every hidden
            dense layer gets a neuron-level generator (`f"dense_{i}/mask"`, see `MLP`); the CIFAR
            ResNet-v1 models (`resnet_cifar`, `resnet{depth}`, `resnet{depth}_nobn`) mask each
            block's conv1, conv2 and projection shortcut (see `ResNetCIFAR`); the ViTs mask
            every block's heads and MLP neurons (see `ViT`).
        **model_kwargs: model-specific options: `mlp`: `depth` (4), `hidden` (49); `simcnn`,
            `rescnn`: `dropout_rate` (0.5), `batch_norm` (None = follow `mask_generators`);
            `lenet5`: `batch_norm`; `vgg16`: `dropout_rate`; `mobilenet`: `mask_depthwise` (True);
            `resnet_cifar` and `resnet{depth}`: `batch_norm` (True), `blocks` (blocks per
            stage, overriding the depth), `zero_init_residual` (None = `not batch_norm`:
            Fixup-style init, each block's conv2 starts at zero and its conv1 at He init times
            blocks^(-1/2); on for the `_nobn` models); `resnet_cifar` also
            `depth` (20); `vit`, `vit_tiny`, `vit_small`: `patch_size` (4), `image_size`
            (None: from the input), `pool` ("cls" or "mean"), `depth`, `num_heads`
            (overrides of the size's 12 blocks and heads) and for `vit` also `size` ("tiny"),
            with D and the MLP width scaled by `width` and the head count kept (`ViT`).
            Pruned (narrower) instances, as built by `modjax.prune`: every model takes
            `channels={layer: int}` (per-layer output widths; unlisted layers keep their
            width-derived size); `resnet18`, the CIFAR ResNet-v1 models and `rescnn` also take
            `residual={add: (branch_src, shortcut_src)}` and `mobilenet` takes
            `dw_inputs={"block{i}.dw": src}`, static index wiring (tuples of source channels,
            -1 = zero) documented on the model classes. For the ViTs `channels` sets
            per-block head counts and MLP widths (`{"block{i}.attn": heads, "block{i}.mlp":
            neurons}`, built by `modjax.modular.prune_vit`).

    Returns:
        An unbound Flax module whose `__call__(x, *, train=False, masks=None)` returns
        `(logits, acts)`.

    Raises:
        ValueError: for an unknown name, an unknown or bad option, or `mask_generators` on a
            model without an MwT form.
        TypeError: if `mask_generators` (or `zero_init_residual`) is not a bool.

    Example:
        >>> model = get_model("resnet18", width=0.125)
        >>> len(tracked_layers(model))
        17
    """
    if name not in _CONSTRUCTORS:
        raise ValueError(f"unknown model name={name!r}; expected one of {list(MODEL_NAMES)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be an int >= 1")
    check_width(width)
    if not isinstance(mask_generators, bool):
        raise TypeError(f"mask_generators={mask_generators!r} must be a bool")
    if mask_generators and name not in _MWT_MODELS:
        raise ValueError(
            f"mask_generators=True is not supported by {name} (no MwT form); MwT models: "
            f"{', '.join(_MWT_MODELS)}"
        )
    allowed = _extra_kwargs(name)
    unknown = sorted(set(model_kwargs) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown options {unknown} for model {name!r}; expected some of {list(allowed)}"
        )
    rate = model_kwargs.get("dropout_rate", 0.0)
    if not isinstance(rate, int | float) or not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout_rate={rate!r} must be in [0, 1)")
    zero_init = model_kwargs.get("zero_init_residual")
    if zero_init is not None and not isinstance(zero_init, bool):
        raise TypeError(f"zero_init_residual={zero_init!r} must be a bool or None")
    if name == "resnet_cifar" and "depth" in model_kwargs:
        blocks_for_depth(model_kwargs["depth"])  # validates 6n + 2
    if model_kwargs.get("blocks") is not None:
        model_kwargs["blocks"] = check_blocks(model_kwargs["blocks"])  # hashable tuple
    for key in ("channels", "residual", "dw_inputs"):
        if model_kwargs.get(key) is not None:
            model_kwargs[key] = _freeze_pruned_option(key, model_kwargs[key])
    if name == "mlp":
        check_mlp(depth=model_kwargs.get("depth", 4), hidden=model_kwargs.get("hidden", 49))
    model = _CONSTRUCTORS[name](
        num_classes=num_classes, width=width, mask_generators=mask_generators, **model_kwargs
    )
    if isinstance(model, ViT):
        model.dims()  # validates size, patch grid, pooling and heads against the width
    return model


def _index_tuple(key: str, site: str, value) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        out = None
    if out is None or any(v < -1 for v in out):
        raise ValueError(
            f"{key}[{site!r}]={value!r} must be a sequence of channel indices (-1 = zero; "
            "empty for a zero-width layer)"
        )
    return out


def _freeze_pruned_option(key: str, value) -> FrozenDict:
    """Validates a pruned instance's `channels` / `residual` / `dw_inputs` and makes it hashable."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{key}={value!r} must be a dict keyed by layer name")
    out = {}
    for site, v in value.items():
        if key == "channels":
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
                raise ValueError(
                    f"channels[{site!r}]={v!r} must be an int >= 0 (0: a zero-width layer)"
                )
            out[site] = int(v)
        elif key == "residual":
            if not isinstance(v, Sequence) or len(v) != 2:
                raise ValueError(
                    f"residual[{site!r}] must be a pair (branch_src, shortcut_src); got {v!r}"
                )
            branch, shortcut = (_index_tuple(key, site, part) for part in v)
            if len(branch) != len(shortcut):
                raise ValueError(
                    f"residual[{site!r}] has branch_src of length {len(branch)} and "
                    f"shortcut_src of length {len(shortcut)}; both must be the add's width"
                )
            out[site] = (branch, shortcut)
        else:
            out[site] = _index_tuple(key, site, v)
    return FrozenDict(out)


def _resolve(model: str | nn.Module, model_kwargs: dict) -> nn.Module:
    if isinstance(model, str):
        return get_model(model, **model_kwargs)
    if model_kwargs:
        raise ValueError(f"model options {sorted(model_kwargs)} need a model name, not a module")
    return model


def mask_points(
    model: str | nn.Module, *, input_shape: Sequence[int] = (32, 32, 3), **model_kwargs
) -> dict[str, int]:
    """Every name the `masks` argument accepts, in forward order, with its channel count.

    Computed from an abstract forward pass. These are the hidden conv/dense layers, plus ResNet's
    `layer{s}.{b}.conv2`, `.shortcut` (pre-add) and `layer{s}.{b}` (post-add ReLU) points.

    Args:
        model: a name of `MODEL_NAMES` (built with `model_kwargs`) or a model instance.
        input_shape: one example's shape without the batch axis.
        **model_kwargs: `get_model` keyword arguments (with a name only).

    Example:
        >>> list(mask_points("mlp", depth=2).items())
        [('dense_0', 49), ('dense_1', 49)]
    """
    return trace(_resolve(model, model_kwargs), input_shape).points


def tracked_layers(
    model: str | nn.Module, *, input_shape: Sequence[int] = (32, 32, 3), **model_kwargs
) -> dict[str, int]:
    """The act names (post-ReLU hidden layers, MODA §5.1) in forward order, with channel counts.

    Excludes the `"/mask"` entries of MwT models. Arguments as `mask_points`.

    Example:
        >>> list(tracked_layers("lenet5"))
        ['conv_0', 'conv_1', 'fc_0', 'fc_1']
    """
    acts = trace(_resolve(model, model_kwargs), input_shape).acts
    return {n: shape[-1] for n, shape in acts.items() if not n.endswith(MASK_SUFFIX)}


def masked_layers(
    model: str | nn.Module, *, input_shape: Sequence[int] = (32, 32, 3), **model_kwargs
) -> dict[str, int]:
    """The MwT-masked layers in forward order, with channel counts (empty without generators).

    Convs for CNNs, every hidden `dense_{i}` for `mlp`.

    The keys of `acts` holding their masks are `f"{name}/mask"`; K = sum of the counts. Arguments
    as `mask_points`.

    Example:
        >>> list(masked_layers("lenet5", mask_generators=True).items())
        [('conv_1', 16)]
    """
    acts = trace(_resolve(model, model_kwargs), input_shape).acts
    return {
        n.removesuffix(MASK_SUFFIX): shape[-1]
        for n, shape in acts.items()
        if n.endswith(MASK_SUFFIX)
    }


def model_kwargs_of(model: nn.Module) -> dict[str, Any]:
    """The `get_model` keyword arguments of a zoo model instance (JSON-able: lists, dicts).

    `get_model(<its zoo family name>, **model_kwargs_of(m))` rebuilds `m`, including models
    that block surgery or pruning made (e.g. a `resnet_cifar` with fewer `blocks`).
    """

    def plain(x):
        if isinstance(x, Mapping):
            return {str(k): plain(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [plain(v) for v in x]
        if isinstance(x, np.generic):
            return x.item()
        return x

    skip = {"parent", "name"}
    return {
        f.name: plain(getattr(model, f.name))
        for f in dataclasses.fields(model)
        if f.init and f.name not in skip
    }


__all__ = [
    "model_kwargs_of",
    "MASK_SUFFIX",
    "MLP",
    "MODEL_NAMES",
    "VGG",
    "VGG16",
    "VGG16_MODA",
    "ViT",
    "ConvUnit",
    "LeNet5",
    "MaskGenerator",
    "MobileNet",
    "ResCNN",
    "ResNet18",
    "ResNetCIFAR",
    "SimCNN",
    "count_conv_kernels",
    "count_generator_params",
    "count_macs",
    "count_masked_kernels",
    "count_params",
    "get_model",
    "mask_points",
    "masked_layers",
    "summarize",
    "trace",
    "tracked_layers",
]
