"""Reference VGG16-BN for CIFAR (METHODS §3.4): MwT variant (a) and MODA variant (b), NCHW."""

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvUnit, conv_act, linear, scaled

CFG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VARIANTS = {"mwt": (512, True), "moda": (4096, False)}  # (hidden FC units, dropout)


class VGG16(nn.Module):
    """Conv3 → BN → ReLU (config D, max-pools at "M"), fc_0 → ReLU → [Dropout] → fc_1 → ... head.

    With `mask_generators`, conv_1…conv_12 are MaskConvBN. Acts are taken before dropout.
    """

    def __init__(
        self,
        num_classes=10,
        width=1.0,
        mask_generators=False,
        variant="mwt",
        dropout_rate=0.5,
        channels=None,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant={variant!r} must be one of {list(VARIANTS)}")
        hidden, dropout = VARIANTS[variant]
        channels = channels or {}
        c_in, i, self.pool_after, convs = 3, 0, set(), {}
        for v in CFG_D:
            if v == "M":
                self.pool_after.add(i - 1)
                continue
            c = int(channels.get(f"conv_{i}", scaled(v, width)))
            convs[f"conv_{i}"] = ConvUnit(c_in, c, generator=mask_generators and i > 0)
            c_in, i = c, i + 1
        self.convs = nn.ModuleDict(convs)
        n_in, fcs = c_in, {}
        for j in range(2):
            units = int(channels.get(f"fc_{j}", scaled(hidden, width)))
            fcs[f"fc_{j}"] = linear(n_in, units, "normal001")
            n_in = units
        self.fcs = nn.ModuleDict(fcs)
        self.dropout = nn.Dropout(dropout_rate) if dropout else nn.Identity()
        self.head = linear(n_in, num_classes, "normal001")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        acts = {}
        for i, (name, unit) in enumerate(self.convs.items()):
            x = conv_act(unit, x, name, acts)
            if i in self.pool_after:
                x = F.max_pool2d(x, 2)
        x = torch.flatten(x, 1)
        for name, fc in self.fcs.items():
            acts[name] = F.relu(fc(x))
            x = self.dropout(acts[name])
        return self.head(x), acts
