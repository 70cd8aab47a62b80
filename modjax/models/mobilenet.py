"""MobileNet-v1 for CIFAR, kuangliu design (METHODS §3.6), with MwT masking of dw/pw convs."""

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from modjax.models import layers
from modjax.typing import Acts, Masks

# Pointwise output channels C' or (C', depthwise stride).
_CFG = (64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024)


class DepthwiseSeparable(nn.Module):
    """Depthwise Conv(3, C→C, s, groups=C) → BN → ReLU, pointwise Conv(1, C→C') → BN → ReLU.

    Layer names `{prefix}.dw` and `{prefix}.pw` (both acts and mask points). With MwT, each gets a
    generator; the depthwise generator maps C_in → C_in.

    In a pruned instance (`modjax.prune`) the recorder's index wiring at `{prefix}.dw` first
    rewires the block input into the depthwise layout (`layers.gather_or_zero`: kept input
    channels go to their own positions, the rest are zeros), so the depthwise width is the wiring's
    length; the pointwise width comes from the recorder's `channels`.

    Attributes:
        features: pointwise output channels C'.
        strides: depthwise stride.
        prefix: e.g. `"block4"`.
        mask_dw: MwT generator on the depthwise conv.
        mask_pw: MwT generator on the pointwise conv.
    """

    features: int
    strides: int
    prefix: str
    mask_dw: bool = False
    mask_pw: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, rec: layers.Recorder, *, train: bool) -> jax.Array:
        """Returns `[B, H', W', features]`; records acts and masks on `rec`."""
        x = layers.gather_or_zero(x, rec.wiring(f"{self.prefix}.dw"))
        c = x.shape[-1]
        x = layers.conv_layer(
            rec,
            x,
            name=f"{self.prefix}.dw",
            module_name="dw",
            train=train,
            features=c,
            strides=self.strides,
            groups=c,
            use_bias=False,
            generator=self.mask_dw,
        )
        return layers.conv_layer(
            rec,
            x,
            name=f"{self.prefix}.pw",
            module_name="pw",
            train=train,
            features=rec.features(f"{self.prefix}.pw", self.features),
            kernel_size=1,
            padding=0,
            use_bias=False,
            generator=self.mask_pw,
        )


class MobileNet(nn.Module):
    """MobileNet-v1 for 32×32 inputs: 3×3 stem and 13 depthwise-separable blocks.

    Stem Conv(3, 3→32, 1) → BN → ReLU; blocks per cfg 64, (128,2), 128, (256,2), 256, (512,2),
    512×5, (1024,2), 1024; global average pool (= the 2×2 pool on 32 px) → head Lin(1024, N). Convs
    have no bias; init as the MODA / forked-MwT code: conv Kaiming-normal fan_out, BN 1/0, head
    N(0, 0.01²) with zero bias (the MwT generators keep their own init). Parameters nest as
    `params["stem"]`, `params["block{i}"]["dw" | "pw"]`, `params["head"]`.

    Acts (27 tracked layers): `stem`, `block{i}.dw`, `block{i}.pw` for i = 0…12; with
    `mask_generators=True` also `block{i}.dw/mask` and `block{i}.pw/mask` (26 masked layers).

    Attributes:
        num_classes: output units.
        width: channel multiplier.
        mask_generators: build the MwT modular model.
        mask_depthwise: with `mask_generators`, also mask the depthwise convs (the reference does;
            False is the quirk-8 option that leaves them unmasked).
        channels: per-layer width overrides `{"stem" | "block{i}.pw": int}` of a pruned instance
            (`modjax.prune`); unlisted layers keep the width-derived size.
        dw_inputs: index wiring of a pruned instance's depthwise inputs, `{"block{i}.dw": src}`
            with, per kept depthwise channel, the block-input channel feeding it or -1 (zero
            input): METHODS §4.6/§5.5's zero-padding into the depthwise layout. Its length is the
            depthwise width; unlisted blocks keep the input layout.
    """

    num_classes: int = 10
    width: float = 1.0
    mask_generators: bool = False
    mask_depthwise: bool = True
    channels: Mapping[str, int] | None = None
    dw_inputs: Mapping[str, tuple[int, ...]] | None = None

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, masks: Masks | None = None
    ) -> tuple[jax.Array, Acts]:
        """Returns `(logits [B, num_classes], acts)`; `train` uses BN batch statistics."""
        layers.check_min_size(x, 1, model="mobilenet")
        rec = layers.Recorder(
            masks, model="mobilenet", channels=self.channels, index=self.dw_inputs
        )
        stem = rec.features("stem", layers.scaled(32, self.width))
        x = layers.conv_layer(rec, x, name="stem", train=train, features=stem, use_bias=False)
        for i, v in enumerate(_CFG):
            c, stride = (v, 1) if isinstance(v, int) else v
            x = DepthwiseSeparable(
                layers.scaled(c, self.width),
                stride,
                f"block{i}",
                mask_dw=self.mask_generators and self.mask_depthwise,
                mask_pw=self.mask_generators,
                name=f"block{i}",
            )(x, rec, train=train)
        x = jnp.mean(x, axis=(1, 2))
        logits = layers.dense(x, self.num_classes, init="normal001", name="head")
        return logits, rec.finish(self)
