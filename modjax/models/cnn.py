"""Small CNNs: LeNet5 (MODA, §3.7), CNNSplitter's SimCNN (§3.2) and ResCNN (§3.3)."""

from collections.abc import Mapping

import flax.linen as nn
import jax

from modjax.models import layers
from modjax.typing import Acts, Masks

# C_out at width 1 of conv_0 … conv_12, and the convs followed by a 2×2 max-pool.
_SIMCNN = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
_SIMCNN_POOL_AFTER = (1, 3, 6, 9, 12)
_RESCNN = (64, 128, 128, 128, 256, 512, 512, 512, 512, 512, 512, 512)


def _use_bn(batch_norm: bool | None, mask_generators: bool) -> bool:
    return mask_generators if batch_norm is None else batch_norm


class LeNet5(nn.Module):
    """LeNet5 for 32×32×3 inputs (MODA's weak model); PyTorch default init everywhere.

    conv_0 Conv(5, 3→6, valid) → ReLU → pool → conv_1 Conv(5, 6→16, valid) → ReLU → pool →
    Flatten (channel-major, 16·5·5) → fc_0 Lin(120) → ReLU → fc_1 Lin(84) → ReLU → head Lin(N).
    Pooling is max 2×2 (the reference's pool type is unknown). With `mask_generators=True`,
    conv_1 becomes an MwT MaskConvBN (Conv + BN + generator); conv_0 is never masked.

    Acts: `conv_0, conv_1, fc_0, fc_1` (4 tracked layers), plus `conv_1/mask` when masked.

    Attributes:
        num_classes: output units (6 in the replacement experiment).
        width: channel/unit multiplier.
        mask_generators: build the MwT modular model.
        batch_norm: BN after conv_1; default (None) follows `mask_generators`.
        channels: per-layer width overrides `{"conv_{i}" | "fc_{i}": int}` of a pruned instance
            (`modjax.prune`); unlisted layers keep the width-derived size.
    """

    num_classes: int = 10
    width: float = 1.0
    mask_generators: bool = False
    batch_norm: bool | None = None
    channels: Mapping[str, int] | None = None

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, masks: Masks | None = None
    ) -> tuple[jax.Array, Acts]:
        """Returns `(logits [B, num_classes], acts)`."""
        layers.check_min_size(x, 16, model="lenet5")
        rec = layers.Recorder(masks, model="lenet5", channels=self.channels)
        bn = _use_bn(self.batch_norm, self.mask_generators)
        c_in = x.shape[-1]
        for i, c in enumerate((6, 16)):
            c = rec.features(f"conv_{i}", layers.scaled(c, self.width))
            x = layers.conv_layer(
                rec,
                x,
                name=f"conv_{i}",
                train=train,
                features=c,
                kernel_size=5,
                padding=0,
                use_bn=bn and i > 0,
                generator=self.mask_generators and i > 0,
                kernel_init=layers.torch_default_kernel,
                bias_init=layers.torch_default_bias(25 * c_in),
            )
            x = layers.max_pool(x)
            c_in = c
        x = layers.flatten_nchw(x)
        for i, units in enumerate((120, 84)):
            units = rec.features(f"fc_{i}", layers.scaled(units, self.width))
            x = layers.dense_layer(rec, x, units, name=f"fc_{i}", init="torch")
        logits = layers.dense(x, self.num_classes, init="torch", name="head")
        return logits, rec.finish(self)


class SimCNN(nn.Module):
    """CNNSplitter's VGG-like SimCNN: 13 convs, 2 hidden FC layers (METHODS §3.2).

    Convs are 3×3, padding 1, bias, Kaiming-normal fan_out with zero bias; linears use the PyTorch
    default. Classifier: Flatten → Dropout → fc_0 Lin(512) → ReLU → Dropout → fc_1 Lin(512) → ReLU
    → head Lin(N). With `mask_generators=True`, conv_1…conv_12 become MaskConvBN (Conv + BN +
    generator), so the modular model gains BN layers (METHODS §4.2, quirk 5).

    Acts: `conv_0 … conv_12, fc_0, fc_1`, plus `conv_{i}/mask` for i ≥ 1 when masked.

    Attributes:
        num_classes: output units.
        width: channel/unit multiplier.
        mask_generators: build the MwT modular model.
        dropout_rate: classifier dropout (0.5).
        batch_norm: BN after conv_1…conv_12; default (None) follows `mask_generators` (True without
            generators is the "standard + BN" control).
        channels: per-layer width overrides `{"conv_{i}" | "fc_{i}": int}` of a pruned instance
            (`modjax.prune`); unlisted layers keep the width-derived size.
    """

    num_classes: int = 10
    width: float = 1.0
    mask_generators: bool = False
    dropout_rate: float = 0.5
    batch_norm: bool | None = None
    channels: Mapping[str, int] | None = None

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, masks: Masks | None = None
    ) -> tuple[jax.Array, Acts]:
        """Returns `(logits [B, num_classes], acts)`; `train` enables dropout (and BN stats)."""
        layers.check_min_size(x, 32, model="simcnn")
        rec = layers.Recorder(masks, model="simcnn", channels=self.channels)
        bn = _use_bn(self.batch_norm, self.mask_generators)
        for i, c in enumerate(_SIMCNN):
            x = layers.conv_layer(
                rec,
                x,
                name=f"conv_{i}",
                train=train,
                features=rec.features(f"conv_{i}", layers.scaled(c, self.width)),
                use_bn=bn and i > 0,
                generator=self.mask_generators and i > 0,
            )
            if i in _SIMCNN_POOL_AFTER:
                x = layers.max_pool(x)
        x = layers.flatten_nchw(x)
        for i in range(2):
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
            units = rec.features(f"fc_{i}", layers.scaled(512, self.width))
            x = layers.dense_layer(rec, x, units, name=f"fc_{i}", init="torch")
        logits = layers.dense(x, self.num_classes, init="torch", name="head")
        return logits, rec.finish(self)


class ResCNN(nn.Module):
    """CNNSplitter's residual CNN: 12 convs with three residual pairs (METHODS §3.3).

    Forward: conv_0 → conv_1 → M; r; conv_2 → conv_3, + r (added after conv_3's ReLU); conv_4 → M
    → conv_5 → M; r; conv_6 → conv_7, + r; conv_8 → M → conv_9 → M; r; conv_10 → conv_11, + r;
    Flatten → Dropout → head Lin(N). Convs are 3×3, padding 1, bias. Standard model: PyTorch
    default conv init, as in the reference code (METHODS leaves it open). With
    `mask_generators=True` (or `batch_norm=True`), conv_1…conv_11 gain BN (and generators) and all
    convs are Kaiming-normal fan_out with zero bias (METHODS §4.2). The head uses the PyTorch
    default. Acts hold each conv's own ReLU output (before any residual add).

    Acts: `conv_0 … conv_11`, plus `conv_{i}/mask` for i ≥ 1 when masked.

    Attributes:
        num_classes: output units.
        width: channel multiplier.
        mask_generators: build the MwT modular model.
        dropout_rate: dropout before the head (0.5 in MwT's copy, 0.4 in CNNSplitter's).
        batch_norm: BN after conv_1…conv_11; default (None) follows `mask_generators`.
        channels: per-conv width overrides `{"conv_{i}": int}` of a pruned instance
            (`modjax.prune`); unlisted convs keep the width-derived size.
        residual: index wiring of a pruned instance's adds, keyed by the branch conv (`"conv_3"`,
            `"conv_7"`, `"conv_11"`): `(branch_src, shortcut_src)`, each giving per channel of
            the add's kept set R_branch ∪ R_shortcut the source channel or -1 (zero), see
            `layers.residual_add`. Unlisted adds are plain (equal widths).
    """

    num_classes: int = 10
    width: float = 1.0
    mask_generators: bool = False
    dropout_rate: float = 0.5
    batch_norm: bool | None = None
    channels: Mapping[str, int] | None = None
    residual: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, masks: Masks | None = None
    ) -> tuple[jax.Array, Acts]:
        """Returns `(logits [B, num_classes], acts)`; `train` enables dropout (and BN stats)."""
        layers.check_min_size(x, 32, model="rescnn")
        rec = layers.Recorder(masks, model="rescnn", channels=self.channels, index=self.residual)
        bn = _use_bn(self.batch_norm, self.mask_generators)
        c_in = x.shape[-1]

        def conv(i: int, h: jax.Array) -> jax.Array:
            nonlocal c_in
            c = rec.features(f"conv_{i}", layers.scaled(_RESCNN[i], self.width))
            if bn or self.mask_generators:
                inits = {}  # ConvUnit defaults: Kaiming-normal fan_out, zero bias
            else:
                inits = {
                    "kernel_init": layers.torch_default_kernel,
                    "bias_init": layers.torch_default_bias(9 * c_in),
                }
            c_in = c
            return layers.conv_layer(
                rec,
                h,
                name=f"conv_{i}",
                train=train,
                features=c,
                use_bn=bn and i > 0,
                generator=self.mask_generators and i > 0,
                **inits,
            )

        x = layers.max_pool(conv(1, conv(0, x)))
        x = layers.residual_add(rec, "conv_3", conv(3, conv(2, x)), x)
        x = layers.max_pool(conv(5, layers.max_pool(conv(4, x))))
        x = layers.residual_add(rec, "conv_7", conv(7, conv(6, x)), x)
        x = layers.max_pool(conv(9, layers.max_pool(conv(8, x))))
        x = layers.residual_add(rec, "conv_11", conv(11, conv(10, x)), x)
        x = layers.flatten_nchw(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        logits = layers.dense(x, self.num_classes, init="torch", name="head")
        return logits, rec.finish(self)
