"""CIFAR ResNet-v1 (He et al. 2016, §4.2) as in DeepArc and Pan & Rajan ICSE'22 (METHODS §3.8).

With `mask_generators=True` it has MwT's form (METHODS §4.1, §4.2 as for ResNet18): every block
masks conv1, conv2 and its 1×1 projection shortcut; the stem and identity shortcuts are unmasked.
"""

from collections.abc import Mapping, Sequence

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
# (truncated, fan_in) conv and dense kernels, zero biases, "same" padding. `empty_safe` only
# changes shapes with a zero dimension (zero-width layers of pruned modules).
KERAS_BN_MOMENTUM = 0.99
KERAS_BN_EPSILON = 1e-3
he_normal = layers.empty_safe(nn.initializers.he_normal())


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
    """Keras-style Conv ("same" padding, bias) → optional BN → optional MwT generator mask.

    Returns `(pre-activation, mask or None)`. The generator reads the conv input; its mask
    multiplies the BN output (MaskConvBN, METHODS §4.1; BN statistics stay unmasked) or, without
    BN, the conv output (bias included), as the MLP's `layers.DenseUnit` does.
    """

    features: int
    kernel_size: int = 3
    strides: int = 1
    batch_norm: bool = True
    generator: bool = False
    zero_init: bool = False
    init_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array | None]:
        k, s = self.kernel_size, self.strides
        if self.zero_init:
            kernel_init = layers.zeros
        elif self.init_scale == 1.0:
            kernel_init = he_normal
        else:  # He-normal with its standard deviation times init_scale
            kernel_init = layers.empty_safe(
                nn.initializers.variance_scaling(
                    2.0 * self.init_scale**2, "fan_in", "truncated_normal"
                )
            )
        y = nn.Conv(
            self.features,
            (k, k),
            strides=(s, s),
            padding="SAME",
            kernel_init=kernel_init,
            name="conv",
        )(x)
        if self.batch_norm:
            # The mode is a call argument, not a constructor one, so that DeepArc's repair
            # can switch single blocks' BN to training mode (`deeparc.repair.apply_bn_train`).
            y = nn.BatchNorm(momentum=KERAS_BN_MOMENTUM, epsilon=KERAS_BN_EPSILON, name="bn")(
                y, use_running_average=not train
            )
        mask = None
        if self.generator:
            mask = layers.MaskGenerator(self.features, name="generator")(x)
            y = y * mask[:, None, None, :]
        return y, mask


class ResNetCIFAR(nn.Module):
    """CIFAR ResNet-v1: stem, three stages of basic blocks (16/32/64 channels), avg-pool, dense.

    Stem Conv(3, 3→16) → BN → ReLU. Block: Conv(3) → BN → ReLU → Conv(3) → BN; the shortcut is
    the identity, or a strided 1×1 conv **without BN** at the first block of stages 2 and 3
    (stride 2; option B, a projection); add; ReLU. Head: global average pool (= Keras
    AveragePooling(8) at 32 px) → Dense(N). Keras conventions (DeepArc): "same" padding, conv
    biases, He-normal kernels, BN momentum 0.99 and eps 1e-3. `batch_norm=False` drops every BN
    (Pan & Rajan ICSE'22).

    **Fixup-style residual init** (`zero_init_residual`, default on exactly when
    `batch_norm=False`): the last conv of every residual branch (`conv2`) starts with a zero
    kernel (its bias is zero anyway), so every block starts as its shortcut (Goyal et al. 2017),
    and the branch's first conv (`conv1`) starts at He init times L^(-1/2), L = the number of
    blocks (Fixup's rule for two-layer branches, Zhang et al. 2019; without its scalar biases
    and multipliers). Without BN nothing rescales the residual sum: under He init each block
    adds a branch of about the input's variance, so the variance roughly doubles per block, and
    a He-initialized ResNet-20 without BN starts near loss 130 on CIFAR-10 and reaches NaN by
    SGD step 3–4 at lr 0.02. Zeroing conv2 alone keeps the start finite, but every zeroed branch
    then learns at once and the function moves about L times as far per step: measured on
    Fashion-MNIST (ResNet-20 w0.5, lr 0.02, 150 steps), conv2-zeroing alone stalled at 22%
    test accuracy and died (constant outputs) within 3 epochs, with the L^(-1/2) scale it
    reached 70%. Pan & Rajan's initializer is unknown (METHODS §3.8); this is modjax's choice.
    With BN the default keeps Keras' He init, so BN results do not change. Only the initial
    values differ; the parameter tree is the same.

    **MwT form** (`mask_generators=True`; METHODS §4.1, §4.2 as for ResNet18): in every block,
    conv1 (generator reads the block input), conv2 (generator reads ReLU(masked conv1)) and the
    1×1 projection shortcut where there is one (generator reads the block input) are masked;
    identity shortcuts and the stem are not. With BN the mask multiplies the BN output. MwT always
    pairs its generators with BN; without BN (the `_nobn` models) and on the shortcut (which has
    no BN in this architecture) the mask multiplies the conv output, the pre-activation, as the
    MLP's neuron-level form does (`layers.DenseUnit`). Each generator sits in its conv's scope,
    `params[...]["conv1" | "conv2" | "shortcut"]["generator"]`, so dropping generators
    (`modjax.modular.drop_generators`) leaves the plain model's variables.

    Parameters nest as `params["stem"]`, `params["layer{s}_{b}"]["conv1" | "conv2" |
    "shortcut"]`, `params["head"]`; each conv holds `conv` and (with BN) `bn`. Because blocks are
    named by stage and position, a model with other `blocks` is the same class with a different
    tree (`modjax.deeparc.surgery` maps parameters between them).

    Acts in forward order: `stem`, then per block `layer{s}.{b}.conv1` (the inner ReLU) and
    `layer{s}.{b}` (the block output, after the post-add ReLU; DeepArc's cut point); with
    generators also `layer{s}.{b}.conv1/mask`, `.conv2/mask` and `.shortcut/mask`. Select block
    outputs with `modjax.deeparc.block_names(model)` or the keys without a third dot. Mask points
    (`masks=`): every act name, plus `layer{s}.{b}.conv2` and `.shortcut` (the pre-add outputs,
    after any generator mask), as in ResNet18.

    Attributes:
        num_classes: output units.
        width: channel multiplier (`layers.scaled`).
        mask_generators: build the MwT modular model.
        depth: 6n + 2; gives n blocks per stage when `blocks` is None.
        batch_norm: BatchNorm after every conv but the shortcut.
        blocks: blocks per stage `(n1, n2, n3)`; overrides `depth` (surgery builds models
            with uneven stages this way).
        zero_init_residual: Fixup-style init (zero `conv2` kernels, `conv1` kernels scaled by
            L^(-1/2)); None (default) = `not batch_norm`.
        channels: per-conv width overrides `{"stem" | "layer{s}.{b}.conv1" | ".conv2" |
            ".shortcut": int}` of a pruned instance (`modjax.prune`).
        residual: index wiring of a pruned instance's adds, keyed by block, as `ResNet18`'s.
    """

    num_classes: int = 10
    width: float = 1.0
    mask_generators: bool = False
    depth: int = 20
    batch_norm: bool = True
    blocks: tuple[int, int, int] | None = None
    zero_init_residual: bool | None = None
    channels: Mapping[str, int] | None = None
    residual: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None

    def stage_blocks(self) -> tuple[int, int, int]:
        """Blocks per stage: `blocks`, else from `depth`."""
        if self.blocks is not None:
            return check_blocks(self.blocks)
        return blocks_for_depth(self.depth)

    def zeroes_residual(self) -> bool:
        """Whether `conv2` kernels start at zero: `zero_init_residual`, else `not batch_norm`."""
        if self.zero_init_residual is None:
            return not self.batch_norm
        return bool(self.zero_init_residual)

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, masks: Masks | None = None
    ) -> tuple[jax.Array, Acts]:
        """Returns `(logits [B, num_classes], acts)`; `train` uses BN batch statistics."""
        layers.check_min_size(x, 1, model="resnet_cifar")
        stage_blocks = self.stage_blocks()
        rec = layers.Recorder(
            masks, model="resnet_cifar", channels=self.channels, index=self.residual
        )
        bn = self.batch_norm
        c_in = layers.scaled(STAGE_WIDTHS[0], self.width)
        y, _ = _Conv(rec.features("stem", c_in), batch_norm=bn, name="stem")(x, train=train)
        x = rec.act("stem", nn.relu(rec.keep("stem", y)))
        for s, (c, n) in enumerate(zip(STAGE_WIDTHS, stage_blocks, strict=True), start=1):
            c = layers.scaled(c, self.width)
            for b in range(n):
                stride = 2 if (s > 1 and b == 0) else 1
                x = _Block(
                    c,
                    stride,
                    block_name(s, b),
                    bn,
                    self.mask_generators,
                    self.zeroes_residual(),
                    sum(stage_blocks) ** -0.5 if self.zeroes_residual() else 1.0,
                    downsample=stride != 1 or c_in != c,  # from unpruned widths
                    name=f"layer{s}_{b}",
                )(x, rec, train=train)
                c_in = c
        x = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(self.num_classes, kernel_init=he_normal, name="head")(x)
        return logits, rec.finish(self)


class _Block(nn.Module):
    """The v1 basic block; records `{prefix}.conv1`, its masks and `{prefix}` (block output)."""

    features: int
    strides: int
    prefix: str
    batch_norm: bool
    mask_generators: bool
    zero_init: bool
    conv1_scale: float
    downsample: bool

    @nn.compact
    def __call__(self, x: jax.Array, rec: layers.Recorder, *, train: bool) -> jax.Array:
        bn, g, p = self.batch_norm, self.mask_generators, self.prefix

        def conv(inputs, name, **kwargs):
            layer = f"{p}.{name}"
            unit = _Conv(rec.features(layer, self.features), generator=g, name=name, **kwargs)
            y, mask = unit(inputs, train=train)
            rec.generated(layer, mask)
            return rec.keep(layer, y)

        h = conv(x, "conv1", strides=self.strides, batch_norm=bn, init_scale=self.conv1_scale)
        h = rec.act(f"{p}.conv1", nn.relu(h))
        o = conv(h, "conv2", batch_norm=bn, zero_init=self.zero_init)
        if self.downsample:
            x = conv(x, "shortcut", kernel_size=1, strides=self.strides, batch_norm=False)
        out = rec.keep(p, nn.relu(layers.residual_add(rec, p, o, x)))
        return rec.act(p, out)
