"""A task's composed network by channel slicing (METHODS §4.6–4.7, §5.5), sequential models.

The union keep-mask of the task's class modules prunes the parent: each conv / FC keeps its kept
outputs and the previous layer's kept inputs (with bias and BN tensors); at the flatten the
last conv's channel set is expanded over H·W, channel-major. MwT drops the generators (BN stays)
and keeps the N-way head, taking the task's columns; MODA keeps only the task's head rows.
ResNet18 (union rule at residual adds) is not covered here.
"""

import torch
from torch import nn

from .cnn import LeNet5, SimCNN
from .vgg import VGG16

_FLATTEN_HW = {LeNet5: 25, SimCNN: 1, VGG16: 1}  # spatial size of the last map at 32×32


def union_keep(keep: dict, classes) -> dict[str, torch.Tensor]:
    """`{layer: bool [C]}`: OR of the class keep-masks `{layer: bool [N, C]}` over `classes`."""
    idx = torch.as_tensor(sorted(classes))
    return {name: m[idx].any(dim=0) for name, m in keep.items()}


def prune(parent: nn.Module, keep: dict, classes, *, method: str, build):
    """`(pruned model, output columns)` for the task `classes`.

    Args:
        parent: the trained reference model (LeNet5, SimCNN or VGG16).
        keep: `{layer: bool [C]}` union keep-masks (`union_keep`); unlisted layers stay whole.
        classes: the task's class ids.
        method: `"mwt"` or `"moda"`.
        build: `build(num_classes, channels) -> nn.Module`, the parent's constructor without
            generators (BN kept as in the parent).

    Raises:
        ValueError: for a model this slicer does not cover.
    """
    if type(parent) not in _FLATTEN_HW:
        raise ValueError(
            f"torch_ref.compose covers LeNet5, SimCNN and VGG16; got {type(parent).__name__}"
        )
    classes = sorted(classes)
    idx, prev = {}, torch.arange(3)
    for name in parent.convs:
        c = parent.convs[name].conv.out_channels
        out = torch.nonzero(keep[name]).flatten() if name in keep else torch.arange(c)
        idx[name] = (out, prev)
        prev = out
    hw = _FLATTEN_HW[type(parent)]
    prev = (prev[:, None] * hw + torch.arange(hw)[None, :]).flatten()
    for name in parent.fcs:
        n = parent.fcs[name].out_features
        out = torch.nonzero(keep[name]).flatten() if name in keep else torch.arange(n)
        idx[name] = (out, prev)
        prev = out
    head_rows = (
        torch.as_tensor(classes) if method == "moda" else torch.arange(parent.head.out_features)
    )
    channels = {name: len(out) for name, (out, _) in idx.items()}
    pruned = build(len(head_rows), channels)
    with torch.no_grad():
        for name, (out, inp) in idx.items():
            src = parent.convs[name] if name in parent.convs else None
            dst = pruned.convs[name] if src is not None else None
            if src is not None:
                dst.conv.weight.copy_(src.conv.weight[out][:, inp])
                if src.conv.bias is not None:
                    dst.conv.bias.copy_(src.conv.bias[out])
                if src.bn is not None:
                    for t in ("weight", "bias", "running_mean", "running_var"):
                        getattr(dst.bn, t).copy_(getattr(src.bn, t)[out])
            else:
                pruned.fcs[name].weight.copy_(parent.fcs[name].weight[out][:, inp])
                pruned.fcs[name].bias.copy_(parent.fcs[name].bias[out])
        pruned.head.weight.copy_(parent.head.weight[head_rows][:, prev])
        pruned.head.bias.copy_(parent.head.bias[head_rows])
    columns = list(range(len(classes))) if method == "moda" else classes
    return pruned.eval(), columns
