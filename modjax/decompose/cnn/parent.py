"""The parent of a CNN decomposition: the no-BN CIFAR ResNet-v1 as a pure function of its params.

Pan & Rajan (ICSE'22) decompose ResNets without BatchNorm (METHODS §3.8, §7.7). `layout`
reads the zoo `resnet_cifar` parameter tree (`stem`, `layer{s}_{b}` with `conv1`, `conv2` and an
optional 1×1 `shortcut`, `head`) and rejects anything else by name, BatchNorm included; the
forward pass here is the zoo model's, written out so that a module can zero single positions
(`keep`) at every ReLU:

- `stem`: Conv → ReLU;
- per block `layer{s}.{b}.conv1`: Conv → ReLU, then Conv (`conv2`), shortcut (identity or
  strided 1×1 conv), `layer{s}.{b}`: Add → ReLU;
- global average pool (= Keras AveragePooling(8) → Flatten at 32 px) → Dense head.

These ReLU points carry the zoo's act names and are where the inactive-position maps live: an
Add's map is over the sum of its branches (METHODS §7.7 "Add sums its branches").
"""

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

MODELS = ("resnet_cifar", "resnet20_nobn", "resnet32_nobn", "resnet56_nobn")
"""Zoo parents of the CNN decomposition (with `batch_norm=False` where it is an option)."""

_NHWC = ("NHWC", "HWIO", "NHWC")


class Block(NamedTuple):
    """One residual block: its params key, act name, stride and whether it has a 1×1 shortcut."""

    key: str
    name: str
    stride: int
    shortcut: bool


def check(model_name: str, model_kwargs: Mapping[str, Any] | None = None) -> None:
    """Checks that a zoo parent can be decomposed by the CNN (ICSE'22) method.

    Args:
        model_name: the zoo name.
        model_kwargs: its `get_model` options (`batch_norm` must be False for `resnet_cifar`
            and `resnet{depth}`).

    Raises:
        ValueError: another architecture, or BatchNorm (naming the model and option).

    Example:
        >>> check("resnet20_nobn")
        >>> check("resnet_cifar", {"depth": 8, "batch_norm": False})
    """
    kwargs = dict(model_kwargs or {})
    depth = model_name[6:]
    bn_variant = model_name == "resnet_cifar" or (
        model_name.startswith("resnet") and depth.isdigit() and (int(depth) - 2) % 6 == 0
    )
    if bn_variant and kwargs.get("batch_norm", True):
        raise ValueError(
            f"model {model_name!r} has BatchNorm after every conv (batch_norm="
            f"{kwargs.get('batch_norm', True)}); Pan & Rajan's CNN decomposition (ICSE'22) "
            "needs the ResNet without BN: resnet20_nobn / resnet32_nobn / resnet56_nobn, or "
            "batch_norm=False"
        )
    if model_name not in MODELS and not bn_variant:
        raise ValueError(
            f"unsupported architecture {model_name!r}: the CNN decomposition (ICSE'22) supports "
            f"the CIFAR ResNet-v1 without BatchNorm ({list(MODELS)}); the dense method "
            "(FSE'20) takes 'mlp'"
        )


def _conv(params: Mapping[str, Any], where: str) -> tuple[jax.Array, jax.Array]:
    if "bn" in params:
        raise ValueError(
            f"layer {where} has BatchNorm ('bn' parameters); Pan & Rajan's CNN decomposition "
            "(ICSE'22) needs a ResNet without BatchNorm (e.g. resnet20_nobn)"
        )
    if set(params) != {"conv"} or set(params["conv"]) != {"kernel", "bias"}:
        raise ValueError(
            f"layer {where} has parameters {sorted(params)}; expected conv/kernel+bias"
        )
    return params["conv"]["kernel"], params["conv"]["bias"]


def layout(params: Mapping[str, Any]) -> list[Block]:
    """The residual blocks of a zoo `resnet_cifar` parameter tree, in forward order.

    Raises:
        ValueError: BatchNorm anywhere (naming the layer), or a tree that is not the zoo's CIFAR
            ResNet (naming the unexpected keys).

    Example:
        >>> from modjax import models
        >>> m = models.get_model("resnet_cifar", depth=8, width=0.25, batch_norm=False)
        >>> p = m.init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))["params"]
        >>> [(b.name, b.stride, b.shortcut) for b in layout(p)]
        [('layer1.0', 1, False), ('layer2.0', 2, True), ('layer3.0', 2, True)]
    """
    blocks = [k for k in params if k.startswith("layer")]
    extra = sorted(set(params) - set(blocks) - {"stem", "head"})
    if extra or "stem" not in params or "head" not in params or not blocks:
        raise ValueError(
            f"params has layers {sorted(params)}; the CNN decomposition expects the zoo CIFAR "
            "ResNet's stem, layer{s}_{b} blocks and head (unsupported architecture)"
        )
    _conv(params["stem"], "stem")
    out = []
    for key in blocks:
        try:
            s, b = (int(v) for v in key[5:].split("_"))
        except ValueError:
            raise ValueError(f"params key {key!r} is not a block name layer{{s}}_{{b}}") from None
        sub = params[key]
        unexpected = sorted(set(sub) - {"conv1", "conv2", "shortcut"})
        if unexpected or "conv1" not in sub or "conv2" not in sub:
            raise ValueError(f"block {key} has {sorted(sub)}; expected conv1, conv2 [, shortcut]")
        for part in sub:
            _conv(sub[part], f"{key}/{part}")
        out.append(Block(key, f"layer{s}.{b}", 2 if (s > 1 and b == 0) else 1, "shortcut" in sub))
    out.sort(key=lambda blk: tuple(int(v) for v in blk.key[5:].split("_")))
    head = params["head"]
    if set(head) != {"kernel", "bias"} or jnp.ndim(head["kernel"]) != 2:
        raise ValueError(f"head has {sorted(head)}; expected a Dense kernel [F, K] and bias [K]")
    return out


def relu_points(params: Mapping[str, Any]) -> list[str]:
    """The act names of the ReLU points, in forward order: the inactive maps' keys."""
    names = ["stem"]
    for blk in layout(params):
        names += [f"{blk.name}.conv1", blk.name]
    return names


def conv2d(x: jax.Array, params: Mapping[str, Any], stride: int = 1) -> jax.Array:
    """The zoo's Keras-style conv ("same" padding, bias) on NHWC inputs."""
    kernel, bias = params["conv"]["kernel"], params["conv"]["bias"]
    y = jax.lax.conv_general_dilated(x, kernel, (stride, stride), "SAME", dimension_numbers=_NHWC)
    return y + bias


def run(
    params: Mapping[str, Any],
    x: jax.Array,
    *,
    keep: Mapping[str, jax.Array] | None = None,
    head: tuple[jax.Array, jax.Array] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The forward pass: logits and the pre-activations at every ReLU point.

    Args:
        params: the parent's `params` (no class axis).
        x: `[B, H, W, C]` preprocessed images.
        keep: `{point: bool [H, W, C]}` position keep-maps; a position outside the map is
            zeroed after its ReLU (the module's inactive positions). None: the parent.
        head: `(W [F, K], b [K])` replacing `params["head"]` (a module's channelled head).

    Returns:
        `(logits [B, K], {point: pre-activation [B, H, W, C]})`, the pre-activations of this
        pass (the parent's when `keep` is None: the monitoring pass of METHODS §7.7).

    Example:
        >>> from modjax import models
        >>> m = models.get_model("resnet_cifar", depth=8, width=0.25, batch_norm=False)
        >>> x = jnp.ones((2, 8, 8, 3))
        >>> p = m.init(jax.random.key(0), x)["params"]
        >>> logits, pre = run(p, x)
        >>> bool(jnp.allclose(logits, m.apply({"params": p}, x)[0], atol=1e-5)), list(pre)[:2]
        (True, ['stem', 'layer1.0.conv1'])
    """
    keep = keep or {}
    pre: dict[str, jax.Array] = {}

    def act(name, z):
        pre[name] = z
        a = jax.nn.relu(z)
        return a * keep[name].astype(a.dtype) if name in keep else a

    h = act("stem", conv2d(x, params["stem"]))
    for blk in layout(params):
        p = params[blk.key]
        inner = act(f"{blk.name}.conv1", conv2d(h, p["conv1"], blk.stride))
        branch = conv2d(inner, p["conv2"])
        short = conv2d(h, p["shortcut"], blk.stride) if blk.shortcut else h
        h = act(blk.name, branch + short)
    w, b = head if head is not None else (params["head"]["kernel"], params["head"]["bias"])
    return jnp.mean(h, axis=(1, 2)) @ w + b, pre
