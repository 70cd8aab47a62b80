"""CIFAR ResNet-v1 (He et al. 2016, §4.2) as in DeepArc and Pan & Rajan ICSE'22 (METHODS §3.8)."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from modjax.models import layers
from modjax.typing import Acts, Masks

STAGE_WIDTHS = (16, 32, 64)
"""Channels of the three stages before the width multiplier."""

DEEPARC_DEPTHS = (14, 44, 86, 110, 152)
"""The depths of DeepArc's RQ1 grid (METHODS §8.1)."""

# Keras defaults used by DeepArc (METHODS §2.4): BN momentum 0.99, eps 1e-3; He-normal
# (truncated, fan_in) conv and dense kernels, zero biases, "same" padding.
KERAS_BN_MOMENTUM = 0.99
KERAS_BN_EPSILON = 1e-3
he_normal = nn.initializers.he_normal()


def blocks_for_depth(depth: int) -> tuple[int, int, int]:
    """Blocks per stage of a depth-`depth` CIFAR ResNet-v1: n = (depth − 2) / 6 in each stage.

    Raises:
        ValueError: if `depth` is not of the form 6n + 2 with n >= 1.

    Example:
        >>> blocks_for_depth(110)
        (18, 18, 18)
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth={depth!r} must be 6n + 2 with n >= 1 (e.g. 20, 32, 56, 110)")
    n = (depth - 2) // 6
    return (n, n, n)


def block_name(stage: int, index: int) -> str:
    """The act key of a block output: `"layer{stage}.{index}"`, stages from 1, blocks from 0."""
    return f"layer{stage}.{index}"


def check_blocks(blocks: Sequence[int]) -> tuple[int, int, int]:
    """Validates blocks per stage (three ints >= 1) and returns them as a tuple.

    Raises:
        ValueError: naming the bad value.
    """
    try:
        out = tuple(int(b) for b in blocks)
        ok = len(out) == 3 and all(b >= 1 and b == v for b, v in zip(out, blocks, strict=True))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"blocks={blocks!r} must be three ints >= 1 (blocks per stage)")
    return out


class _Conv(nn.Module):
    """Keras-style Conv ("same" padding, bias, He-normal) → optional BN; returns the pre-act."""

    features: int
    kernel_size: int = 3
    strides: int = 1
    batch_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        k, s = self.kernel_size, self.strides
        y = nn.Conv(
            self.features,
            (k, k),
            strides=(s, s),
            padding="SAME",
            kernel_init=he_normal,
            name="conv",
        )(x)
        if self.batch_norm:
            y = nn.BatchNorm(
                use_running_average=not train,
                momentum=KERAS_BN_MOMENTUM,
                epsilon=KERAS_BN_EPSILON,
                name="bn",
            )(y)
        return y


class ResNetCIFAR(nn.Module):
    """CIFAR ResNet-v1: stem, three stages of basic blocks (16/32/64 channels), avg-pool, dense.

    Stem Conv(3, 3→16) → BN → ReLU. Block: Conv(3) → BN → ReLU → Conv(3) → BN; the shortcut is
    the identity, or a strided 1×1 conv **without BN** at the first block of stages 2 and 3
    (stride 2); add; ReLU. Head: global average pool (= Keras AveragePooling(8) at 32 px) →
    Dense(N). Keras conventions (DeepArc): "same" padding, conv biases, He-normal kernels, BN
    momentum 0.99 and eps 1e-3. `batch_norm=False` drops every BN (Pan & Rajan ICSE'22).

    Parameters nest as `params["stem"]`, `params["layer{s}_{b}"]["conv1" | "conv2" |
    "shortcut"]`, `params["head"]`; each conv holds `conv` and (with BN) `bn`. Because blocks are
    named by stage and position, a model with other `blocks` is the same class with a different
    tree (`modjax.deeparc.surgery` maps parameters between them).

    Acts in forward order: `stem`, then per block `layer{s}.{b}.conv1` (the inner ReLU) and
    `layer{s}.{b}` (the block output, after the post-add ReLU; DeepArc's cut point). Select block
    outputs with `modjax.deeparc.block_names(model)` or the keys without a third dot. Mask points
    (`masks=`): every act name.

    Attributes:
        num_classes: output units.
        width: channel multiplier (`layers.scaled`).
        mask_generators: must be False (no MwT variant of this model).
        depth: 6n + 2; gives n blocks per stage when `blocks` is None.
        batch_norm: BatchNorm after every conv but the shortcut.
        blocks: blocks per stage `(n1, n2, n3)`; overrides `depth` (surgery builds models
            with uneven stages this way).
    """

    num_classes: int = 10
    width: float = 1.0
    mask_generators: bool = False
    depth: int = 20
    batch_norm: bool = True
    blocks: tuple[int, int, int] | None = None

    def stage_blocks(self) -> tuple[int, int, int]:
        """Blocks per stage: `blocks`, else from `depth`."""
        if self.blocks is not None:
            return check_blocks(self.blocks)
        return blocks_for_depth(self.depth)

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, masks: Masks | None = None
    ) -> tuple[jax.Array, Acts]:
        """Returns `(logits [B, num_classes], acts)`; `train` uses BN batch statistics."""
        if self.mask_generators:
            raise ValueError("mask_generators=True is not supported by resnet_cifar (no MwT form)")
        layers.check_min_size(x, 1, model="resnet_cifar")
        stage_blocks = self.stage_blocks()
        rec = layers.Recorder(masks, model="resnet_cifar")
        bn = self.batch_norm
        y = _Conv(layers.scaled(STAGE_WIDTHS[0], self.width), batch_norm=bn, name="stem")(
            x, train=train
        )
        x = rec.act("stem", nn.relu(rec.keep("stem", y)))
        for s, (c, n) in enumerate(zip(STAGE_WIDTHS, stage_blocks, strict=True), start=1):
            c = layers.scaled(c, self.width)
            for b in range(n):
                stride = 2 if (s > 1 and b == 0) else 1
                x = _Block(c, stride, block_name(s, b), bn, name=f"layer{s}_{b}")(
                    x, rec, train=train
                )
        x = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(self.num_classes, kernel_init=he_normal, name="head")(x)
        return logits, rec.finish(self)


class _Block(nn.Module):
    """The v1 basic block; records `{prefix}.conv1` and `{prefix}` (the block output)."""

    features: int
    strides: int
    prefix: str
    batch_norm: bool

    @nn.compact
    def __call__(self, x: jax.Array, rec: layers.Recorder, *, train: bool) -> jax.Array:
        bn, c = self.batch_norm, self.features
        h = _Conv(c, strides=self.strides, batch_norm=bn, name="conv1")(x, train=train)
        h = rec.act(f"{self.prefix}.conv1", nn.relu(rec.keep(f"{self.prefix}.conv1", h)))
        o = _Conv(c, batch_norm=bn, name="conv2")(h, train=train)
        if self.strides != 1 or x.shape[-1] != c:
            x = _Conv(c, 1, self.strides, batch_norm=False, name="shortcut")(x, train=train)
        out = rec.keep(self.prefix, nn.relu(o + x))
        return rec.act(self.prefix, out)
