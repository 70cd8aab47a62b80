"""The masked form of a module: full-shape keep-masks applied to the parent model.

Two rules live here and nowhere else: MobileNet's depthwise effective sets (METHODS §4.6 fork,
§5.5), which the pruned form (`modjax.modular.prune`) uses too, and dropping MwT's mask
generators while keeping their BatchNorm (METHODS §4.6, §12 row 4).
"""

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from modjax import models
from modjax.modular.module import Module

GENERATOR = "generator"
"""Name of the MwT mask-generator subtree of a masked conv's variables."""

# Zoo models whose BatchNorm follows `mask_generators` by default (METHODS §4.2, quirk 5).
_BN_FOLLOWS_GENERATORS = ("lenet5", "simcnn", "rescnn")
MOBILENET_BLOCKS = 13


def mobilenet_effective(
    keep: Mapping[str, np.ndarray], method: str, points: Mapping[str, int] | None = None
) -> dict[str, np.ndarray]:
    """MobileNet's depthwise rule: the kept sets both forms of a module apply.

    For each depthwise layer with a predecessor p (the previous pointwise conv, or the stem
    before block 0): E = keep[p] ∧ keep[dw]; if E is empty it is the first index of keep[dw].
    The predecessor's output set becomes E; the depthwise layer keeps its own set, so its
    channels outside E get a zero input and emit ReLU(BN(0)), exactly as the pruned form (which
    zero-pads the block input into the depthwise layout). The MwT fork keeps block 0's
    depthwise layer intact (all channels).

    Args:
        keep: `{layer: bool [C]}` for the masked layers.
        method: `"mwt"` or `"moda"`.
        points: channel counts of every mask point; layers absent from `keep` count as fully
            kept. Without it, only layers in `keep` take part.

    Returns:
        `{layer: bool [C]}` for every layer of `keep` (and of `points`, when given).
    """
    eff = {n: np.asarray(k, bool).copy() for n, k in keep.items()}
    for name, size in (points or {}).items():
        eff.setdefault(name, np.ones(size, bool))
    if method == "mwt" and "block0.dw" in eff:
        eff["block0.dw"] = np.ones_like(eff["block0.dw"])
    i = 0
    while f"block{i}.dw" in eff:
        dw, prev = f"block{i}.dw", ("stem" if i == 0 else f"block{i - 1}.pw")
        if prev in eff:
            e = eff[prev] & eff[dw]
            if not e.any() and eff[dw].any():
                e[np.argmax(eff[dw])] = True
            eff[prev] = e
        i += 1
    return eff


def effective_keep(module: Module) -> dict[str, np.ndarray]:
    """The keep-masks the masked form applies: `module.keep` after architecture rules.

    Only MobileNet differs from `module.keep` (see `mobilenet_effective`); VGG, ResNet18 and
    the CIFAR ResNet-v1 need no rule because masked inputs are exact zeros (METHODS §5.5).
    """
    keep = {n: np.asarray(k, bool) for n, k in module.keep.items()}
    if module.parent.get("model") == "mobilenet":
        eff = mobilenet_effective(keep, module.method)
        keep = {n: eff[n] for n in keep}
    return keep


def as_masks(module: Module) -> dict[str, jax.Array]:
    """The masked form: float32 keep-masks `{layer: [C]}` for `model.apply(..., masks=...)`.

    Keys are mask points of the parent (`models.mask_points`): for MwT the masked convs, whose
    keep-mask multiplies the BN output (the conv output where the layer has no BN) in place of
    the dropped generator (apply with `masked_form_model(module)` and
    `drop_generators(variables)`); for MODA the tracked layers (ReLU outputs; ResNet block
    outputs `layer{s}.{b}`). MobileNet uses the effective sets of `effective_keep`.
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
    if method == "mwt":
        kwargs = without_generators(name, kwargs)
    return models.get_model(name, **kwargs)


def drop_generators(variables: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `variables` without MwT mask-generator subtrees (keys named `GENERATOR`)."""

    def strip(tree):
        if isinstance(tree, Mapping):
            return {k: strip(v) for k, v in tree.items() if k != GENERATOR}
        return tree

    return {col: strip(tree) for col, tree in variables.items()}


def without_generators(model_name: str, model_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A zoo model's kwargs with MwT generators dropped and their BatchNorm kept (METHODS §4.6)."""
    kwargs = dict(model_kwargs)
    if kwargs.get("mask_generators"):
        kwargs["mask_generators"] = False
        if model_name in _BN_FOLLOWS_GENERATORS and kwargs.get("batch_norm") is None:
            kwargs["batch_norm"] = True
    return kwargs


__all__ = [
    "GENERATOR",
    "as_masks",
    "drop_generators",
    "effective_keep",
    "masked_form_model",
    "mobilenet_effective",
    "without_generators",
]
