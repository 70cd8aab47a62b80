"""Reference LeNet5 (MODA, METHODS §3.7) and SimCNN (CNNSplitter, §3.2), NCHW."""

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvUnit, conv_act, linear, scaled

SIMCNN = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
SIMCNN_POOL_AFTER = (1, 3, 6, 9, 12)


def _width(channels, name, default):
    return int((channels or {}).get(name, default))


class LeNet5(nn.Module):
    """conv_0 Conv5(3→6) → ReLU → pool → conv_1 Conv5(6→16) → ReLU → pool → fc_0 → fc_1 → head.

    With `mask_generators`, conv_1 is a MaskConvBN; `batch_norm` (default: follows the generators)
    puts BN after conv_1. `channels` overrides per-layer widths (a pruned instance).
    """

    def __init__(
        self, num_classes=10, width=1.0, mask_generators=False, batch_norm=None, channels=None
    ):
        super().__init__()
        bn = mask_generators if batch_norm is None else batch_norm
        c_in, convs = 3, {}
        for i, c in enumerate((6, 16)):
            c = _width(channels, f"conv_{i}", scaled(c, width))
            convs[f"conv_{i}"] = ConvUnit(
                c_in, c, kernel_size=5, padding=0, bn=bn and i > 0,
                generator=mask_generators and i > 0, init="torch",
            )  # fmt: skip
            c_in = c
        self.convs = nn.ModuleDict(convs)
        n_in, fcs = c_in * 5 * 5, {}
        for i, units in enumerate((120, 84)):
            units = _width(channels, f"fc_{i}", scaled(units, width))
            fcs[f"fc_{i}"] = linear(n_in, units, "torch")
            n_in = units
        self.fcs = nn.ModuleDict(fcs)
        self.head = linear(n_in, num_classes, "torch")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        acts = {}
        for name, unit in self.convs.items():
            x = F.max_pool2d(conv_act(unit, x, name, acts), 2)
        x = torch.flatten(x, 1)
        for name, fc in self.fcs.items():
            x = acts[name] = F.relu(fc(x))
        return self.head(x), acts


class SimCNN(nn.Module):
    """13 3×3 convs (pools after conv 1, 3, 6, 9, 12), Dropout → fc_0 → Dropout → fc_1 → head.

    With `mask_generators`, conv_1…conv_12 are MaskConvBN (Conv + BN + generator).
    """

    def __init__(
        self,
        num_classes=10,
        width=1.0,
        mask_generators=False,
        dropout_rate=0.5,
        batch_norm=None,
        channels=None,
    ):
        super().__init__()
        bn = mask_generators if batch_norm is None else batch_norm
        c_in, convs = 3, {}
        for i, c in enumerate(SIMCNN):
            c = _width(channels, f"conv_{i}", scaled(c, width))
            convs[f"conv_{i}"] = ConvUnit(
                c_in, c, bn=bn and i > 0, generator=mask_generators and i > 0
            )
            c_in = c
        self.convs = nn.ModuleDict(convs)
        self.dropout = nn.Dropout(dropout_rate)
        n_in, fcs = c_in, {}
        for i in range(2):
            units = _width(channels, f"fc_{i}", scaled(512, width))
            fcs[f"fc_{i}"] = linear(n_in, units, "torch")
            n_in = units
        self.fcs = nn.ModuleDict(fcs)
        self.head = linear(n_in, num_classes, "torch")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        acts = {}
        for i, (name, unit) in enumerate(self.convs.items()):
            x = conv_act(unit, x, name, acts)
            if i in SIMCNN_POOL_AFTER:
                x = F.max_pool2d(x, 2)
        x = torch.flatten(x, 1)
        for name, fc in self.fcs.items():
            x = acts[name] = F.relu(fc(self.dropout(x)))
        return self.head(x), acts
