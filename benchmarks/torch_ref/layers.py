"""The reference conv unit: Conv → BN → MwT mask generator (METHODS §4.1), and init schemes."""

import torch
import torch.nn.functional as F
from torch import nn

MASK_SUFFIX = "/mask"


def scaled(channels: int, width: float) -> int:
    """The width multiplier, as modjax: `round(channels * width)`, at least 1 unit required."""
    units = round(channels * width)
    if units < 1:
        raise ValueError(f"width={width!r} leaves a layer of {channels} channels with no units")
    return units


def generator_hidden(channels: int) -> int:
    """H_g = C_out if C_out < 128 else C_out // 2 (METHODS §4.1)."""
    return channels if channels < 128 else channels // 2


class MaskGenerator(nn.Module):
    """m = ReLU(tanh(W₂ ReLU(W₁ mean_{H,W} x) + b₂)), per sample and output channel; b₂ = 1."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        hidden = generator_hidden(c_out)
        self.fc1 = nn.Linear(c_in, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, c_out)
        nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")
        nn.init.kaiming_normal_(self.fc2.weight, nonlinearity="relu")
        nn.init.constant_(self.fc2.bias, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.mean(dim=(2, 3))
        return torch.relu(torch.tanh(self.fc2(torch.relu(self.fc1(z)))))


class ConvUnit(nn.Module):
    """MwT's MaskConvBN when `generator`: y = BN(conv(x)) ⊙ G(x); returns `(y, mask)` pre-ReLU.

    `init`: `"kaiming"` (normal fan_out, zero bias) or `"torch"` (PyTorch's default).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        bias: bool = True,
        bn: bool = True,
        generator: bool = False,
        init: str = "kaiming",
    ):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=bias)
        if init == "kaiming":
            nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
            if bias:
                nn.init.zeros_(self.conv.bias)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1) if bn else None
        self.generator = MaskGenerator(c_in, c_out) if generator else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        mask = None
        if self.generator is not None:
            mask = self.generator(x)
            y = y * mask[:, :, None, None]
        return y, mask


def linear(n_in: int, n_out: int, init: str) -> nn.Linear:
    """A Linear with `"torch"` (default U(±1/√fan_in)) or `"normal001"` (N(0, 0.01²), 0 bias)."""
    layer = nn.Linear(n_in, n_out)
    if init == "normal001":
        nn.init.normal_(layer.weight, 0.0, 0.01)
        nn.init.zeros_(layer.bias)
    elif init != "torch":
        raise ValueError(f"init={init!r} must be 'torch' or 'normal001'")
    return layer


def conv_act(unit: ConvUnit, x: torch.Tensor, name: str, acts: dict) -> torch.Tensor:
    """Runs `unit`, records its mask (`name/mask`) and post-ReLU act `name`; returns the act."""
    y, mask = unit(x)
    if mask is not None:
        acts[name + MASK_SUFFIX] = mask
    a = F.relu(y)
    acts[name] = a
    return a
