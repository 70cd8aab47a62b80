"""Reference ResNet18 for CIFAR (METHODS §3.5) with MwT masking of conv1, conv2, shortcuts."""

import torch
import torch.nn.functional as F
from torch import nn

from .layers import MASK_SUFFIX, ConvUnit, conv_act, linear, scaled


class BasicBlock(nn.Module):
    """h = ReLU(BN(conv1 x)); o = BN(conv2 h); out = ReLU(o + shortcut(x)); convs without bias."""

    def __init__(self, c_in, c_out, stride, prefix, mask_generators):
        super().__init__()
        self.prefix = prefix
        kw = {"bias": False, "generator": mask_generators}
        self.conv1 = ConvUnit(c_in, c_out, stride=stride, **kw)
        self.conv2 = ConvUnit(c_out, c_out, **kw)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = ConvUnit(c_in, c_out, kernel_size=1, stride=stride, padding=0, **kw)

    def forward(self, x: torch.Tensor, acts: dict) -> torch.Tensor:
        h = conv_act(self.conv1, x, f"{self.prefix}.conv1", acts)
        o, mask = self.conv2(h)
        if mask is not None:
            acts[f"{self.prefix}.conv2{MASK_SUFFIX}"] = mask
        if self.shortcut is not None:
            x, mask = self.shortcut(x)
            if mask is not None:
                acts[f"{self.prefix}.shortcut{MASK_SUFFIX}"] = mask
        out = acts[self.prefix] = F.relu(o + x)
        return out


class ResNet18(nn.Module):
    """3×3 stem (no max-pool), BasicBlock × [2, 2, 2, 2] at 64/128/256/512 × width, avg-pool, head."""

    def __init__(self, num_classes=10, width=1.0, mask_generators=False):
        super().__init__()
        c_in = scaled(64, width)
        self.stem = ConvUnit(3, c_in, bias=False)
        blocks = {}
        for s, (c, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
            for b in range(2):
                c_out = scaled(c, width)
                blocks[f"layer{s}_{b}"] = BasicBlock(
                    c_in, c_out, stride if b == 0 else 1, f"layer{s}.{b}", mask_generators
                )
                c_in = c_out
        self.blocks = nn.ModuleDict(blocks)
        self.head = linear(c_in, num_classes, "torch")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        acts = {}
        x = conv_act(self.stem, x, "stem", acts)
        for block in self.blocks.values():
            x = block(x, acts)
        return self.head(x.mean(dim=(2, 3))), acts
