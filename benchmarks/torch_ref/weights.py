"""Copies modjax (Flax) variables into a reference model by name, and its gradients back.

Torch module paths mirror Flax's with the containers dropped (`convs.conv_1.bn.weight` ↔
`params/conv_1/bn/scale`). Conv kernels are HWIO in Flax and OIHW in torch, dense kernels
[in, out] vs [out, in]; BN running statistics live in Flax's `batch_stats` collection.
"""

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

_CONTAINERS = {"convs", "fcs", "blocks"}
_LEAF = {"running_mean": "mean", "running_var": "var"}


def flax_path(torch_key: str) -> tuple[str, ...]:
    """`"convs.conv_1.bn.weight"` → `("batch_stats" | "params", "conv_1", "bn", "scale")`."""
    parts = [p for p in torch_key.split(".") if p not in _CONTAINERS]
    *mods, leaf = parts
    if leaf in _LEAF:
        return ("batch_stats", *mods, _LEAF[leaf])
    if leaf == "weight":
        leaf = "scale" if mods[-1] == "bn" else "kernel"
    return ("params", *mods, leaf)


def to_torch_layout(value: np.ndarray) -> np.ndarray:
    """HWIO conv kernel → OIHW, [in, out] dense kernel → [out, in], vectors unchanged."""
    if value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    return value.T if value.ndim == 2 else value


def to_flax_layout(value: np.ndarray) -> np.ndarray:
    """The inverse of `to_torch_layout`."""
    if value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    return value.T if value.ndim == 2 else value


def _flatten(tree: Mapping, prefix=()) -> dict[tuple[str, ...], np.ndarray]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, (*prefix, k)))
        else:
            out[(*prefix, k)] = np.asarray(v)
    return out


def load_flax_variables(model: nn.Module, variables: Mapping) -> nn.Module:
    """Overwrites every parameter and BN buffer of `model` with modjax's `variables`.

    Raises:
        ValueError: naming the torch keys without a Flax value, Flax leaves without a torch
            tensor, or a shape that differs.
    """
    flat = _flatten({k: variables[k] for k in ("params", "batch_stats") if k in variables})
    state = model.state_dict()
    missing, used = [], set()
    with torch.no_grad():
        for key, tensor in state.items():
            if key.endswith("num_batches_tracked"):
                continue
            path = flax_path(key)
            if path not in flat:
                missing.append(key)
                continue
            value = to_torch_layout(flat[path])
            if tuple(value.shape) != tuple(tensor.shape):
                raise ValueError(
                    f"{key}: torch shape {tuple(tensor.shape)} vs Flax {'/'.join(path)} "
                    f"shape {tuple(value.shape)} (after layout change)"
                )
            tensor.copy_(torch.from_numpy(np.array(value, order="C", copy=True)))
            used.add(path)
    unused = sorted("/".join(p) for p in set(flat) - used)
    if missing or unused:
        raise ValueError(f"torch keys without Flax values: {missing}; Flax leaves unused: {unused}")
    return model


def grads_as_flax(model: nn.Module) -> dict[tuple[str, ...], np.ndarray]:
    """`{Flax params path (without "params"): gradient in Flax layout}` after `backward()`."""
    return {
        flax_path(name)[1:]: to_flax_layout(p.grad.detach().numpy())
        for name, p in model.named_parameters()
        if p.grad is not None
    }
