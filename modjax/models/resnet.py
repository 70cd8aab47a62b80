"""ResNet18 for CIFAR (METHODS §3.5), with MwT masking of conv1, conv2 and shortcuts (§4.2)."""

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from modjax.models import layers
from modjax.typing import Acts, Masks


class BasicBlock(nn.Module):
    """h = ReLU(BN1(conv1(x))); o = BN2(conv2(h)); out = ReLU(o + shortcut(x)).

    The shortcut is the identity, or Conv(1, stride) + BN when the shape changes (a MaskConvBN 1×1
    in the MwT model). Convs have no bias and Kaiming-normal fan_out init.

    Layer names (with `prefix = "layer{s}.{b}"`): `{prefix}.conv1` (act: relu1), `{prefix}.conv2`
    and `{prefix}.shortcut` (mask points, no act), `{prefix}` (act: the post-add ReLU; its keep-mask
    is applied after that ReLU, the MODA point).

    A pruned instance (`modjax.prune`) takes the conv widths from the recorder's `channels`
    overrides and, when the add's two sides differ in layout, the recorder's index wiring at
    `prefix` (`layers.residual_add`).

    Attributes:
        features: block width (before any `channels` override).
        strides: stride of conv1 and the shortcut.
        prefix: the block's PyTorch-style name, e.g. `"layer2.0"`.
        mask_generators: MwT generators on conv1, conv2 and the downsample shortcut.
        downsample: conv shortcut; None infers it from the shapes (stride or width change),
            which only holds for an unpruned block.
    """

    features: int
    strides: int
    prefix: str
    mask_generators: bool = False
    downsample: bool | None = None

    @nn.compact
    def __call__(self, x: jax.Array, rec: layers.Recorder, *, train: bool) -> jax.Array:
        """Returns the block output `[B, H', W', features]`; records acts and masks on `rec`."""
        conv = {"use_bias": False, "generator": self.mask_generators, "train": train}
        h = layers.conv_layer(
            rec,
            x,
            name=f"{self.prefix}.conv1",
            module_name="conv1",
            features=rec.features(f"{self.prefix}.conv1", self.features),
            strides=self.strides,
            **conv,
        )
        o = layers.conv_layer(
            rec,
            h,
            name=f"{self.prefix}.conv2",
            module_name="conv2",
            features=rec.features(f"{self.prefix}.conv2", self.features),
            relu=False,
            **conv,
        )
        downsample = self.downsample
        if downsample is None:
            downsample = self.strides != 1 or x.shape[-1] != self.features
        if downsample:
            x = layers.conv_layer(
                rec,
                x,
                name=f"{self.prefix}.shortcut",
                module_name="shortcut",
                features=rec.features(f"{self.prefix}.shortcut", self.features),
                kernel_size=1,
                strides=self.strides,
                padding=0,
                relu=False,
                **conv,
            )
        out = rec.keep(self.prefix, nn.relu(layers.residual_add(rec, self.prefix, o, x)))
        return rec.act(self.prefix, out)


class ResNet18(nn.Module):
    """ResNet18 for 32×32 inputs: 3×3 stem, no max-pool, BasicBlock × [2, 2, 2, 2].

    Stem Conv(3, 3→64, 1, no bias) → BN → ReLU; stages of width 64/128/256/512 with first-block
    strides 1/2/2/2; global average pool → head Lin(512, N) (PyTorch default init). Parameters
    nest as `params["stem"]`, `params["layer{s}_{b}"]["conv1" | "conv2" | "shortcut"]`,
    `params["head"]`; each conv unit holds `conv`, `bn` and (MwT) `generator`.

    Acts (17 tracked layers): `stem`, then per block `layer{s}.{b}.conv1` and `layer{s}.{b}`; with
    `mask_generators=True` also `layer{s}.{b}.conv1/mask`, `.conv2/mask` and `.shortcut/mask`
    (19 masked layers; the stem is never masked).

    Attributes:
        num_classes: output units.
        width: channel multiplier.
        mask_generators: build the MwT modular model.
        channels: per-conv width overrides `{"stem" | "layer{s}.{b}.conv1" | ".conv2" |
            ".shortcut": int}` of a pruned instance (`modjax.prune`); unlisted convs keep the
            width-derived size.
        residual: index wiring of a pruned instance's adds, keyed by block (`"layer{s}.{b}"`):
            `(branch_src, shortcut_src)`, each giving per channel of the block's kept output set
            the source channel of conv2's output / of the shortcut (the downsample output or the
            block input) or -1 (zero), see `layers.residual_add`. The block output width is
            `len(branch_src)`. Unlisted blocks add plainly (equal widths).
    """

    num_classes: int = 10
    width: float = 1.0
    mask_generators: bool = False
    channels: Mapping[str, int] | None = None
    residual: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, masks: Masks | None = None
    ) -> tuple[jax.Array, Acts]:
        """Returns `(logits [B, num_classes], acts)`; `train` uses BN batch statistics."""
        layers.check_min_size(x, 1, model="resnet18")
        rec = layers.Recorder(masks, model="resnet18", channels=self.channels, index=self.residual)
        c_in = layers.scaled(64, self.width)
        x = layers.conv_layer(
            rec, x, name="stem", train=train, features=rec.features("stem", c_in), use_bias=False
        )
        for s, (c, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
            for b in range(2):
                c_out, block_stride = layers.scaled(c, self.width), stride if b == 0 else 1
                x = BasicBlock(
                    c_out,
                    block_stride,
                    f"layer{s}.{b}",
                    self.mask_generators,
                    downsample=block_stride != 1 or c_in != c_out,  # from unpruned widths
                    name=f"layer{s}_{b}",
                )(x, rec, train=train)
                c_in = c_out
        x = jnp.mean(x, axis=(1, 2))
        logits = layers.dense(x, self.num_classes, init="torch", name="head")
        return logits, rec.finish(self)
