"""VGG16-BN for CIFAR, MwT variant (a) and MODA variant (b) (METHODS §3.4)."""

import functools
from collections.abc import Mapping

import flax.linen as nn
import jax

from modjax.models import layers
from modjax.typing import Acts, Masks

# Features config D; "M" = 2×2 max-pool.
_CFG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
_VARIANTS = {"mwt": (512, True), "moda": (4096, False)}  # (hidden FC units, dropout)


class VGG(nn.Module):
    """VGG16-BN (features config D) with a 2-hidden-layer classifier.

    Every conv is 3×3, padding 1, bias, followed by BN and ReLU; Kaiming-normal fan_out conv init
    with zero bias, BN γ = 1, β = 0, linears N(0, 0.01²) with zero bias. The flatten is
    channel-major, so larger inputs (e.g. 224 px, 7×7 map) match PyTorch.

    - `variant="mwt"` (a): fc_0 Lin(512) → ReLU → Dropout → fc_1 Lin(512) → ReLU → Dropout → head.
    - `variant="moda"` (b): fc_0 Lin(4096) → ReLU → fc_1 Lin(4096) → ReLU → head, no dropout.

    With `mask_generators=True`, conv_1…conv_12 become MwT MaskConvBN layers (METHODS §4.2).

    Acts: `conv_0 … conv_12, fc_0, fc_1` (15 tracked layers; acts are taken before dropout), plus
    `conv_{i}/mask` for i ≥ 1 when masked.

    Attributes:
        num_classes: output units.
        width: channel/unit multiplier (hidden FC widths too).
        mask_generators: build the MwT modular model.
        variant: `"mwt"` or `"moda"`.
        dropout_rate: classifier dropout of the MwT variant (0.5).
        channels: per-layer width overrides `{"conv_{i}" | "fc_{j}": int}` of a pruned
            instance (`modjax.prune`); unlisted layers keep the width-derived size.
    """

    num_classes: int = 10
    width: float = 1.0
    mask_generators: bool = False
    variant: str = "mwt"
    dropout_rate: float = 0.5
    channels: Mapping[str, int] | None = None

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, masks: Masks | None = None
    ) -> tuple[jax.Array, Acts]:
        """Returns `(logits [B, num_classes], acts)`; `train` enables BN stats and dropout."""
        if self.variant not in _VARIANTS:
            raise ValueError(f"variant={self.variant!r} must be one of {list(_VARIANTS)}")
        hidden, dropout = _VARIANTS[self.variant]
        layers.check_min_size(x, 32, model=f"VGG(variant={self.variant!r})")
        rec = layers.Recorder(
            masks,
            model="vgg16" if self.variant == "mwt" else "vgg16_moda",
            channels=self.channels,
        )
        i = 0
        for v in _CFG_D:
            if v == "M":
                x = layers.max_pool(x)
                continue
            x = layers.conv_layer(
                rec,
                x,
                name=f"conv_{i}",
                train=train,
                features=rec.features(f"conv_{i}", layers.scaled(v, self.width)),
                generator=self.mask_generators and i > 0,
            )
            i += 1
        x = layers.flatten_nchw(x)
        for j in range(2):
            units = rec.features(f"fc_{j}", layers.scaled(hidden, self.width))
            x = layers.dense_layer(rec, x, units, name=f"fc_{j}", init="normal001")
            if dropout:
                x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        logits = layers.dense(x, self.num_classes, init="normal001", name="head")
        return logits, rec.finish(self)


VGG16 = functools.partial(VGG, variant="mwt")
VGG16_MODA = functools.partial(VGG, variant="moda")
