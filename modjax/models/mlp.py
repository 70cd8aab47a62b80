"""Pan & Rajan's MLP-k×49 (METHODS §3.1)."""

from collections.abc import Mapping

import flax.linen as nn
import jax

from modjax.models import layers
from modjax.typing import Acts, Masks


class MLP(nn.Module):
    """Flatten → `depth` × [Dense(hidden) → ReLU] → Dense(num_classes); Keras default init.

    Inputs of any shape `[B, ...]` are flattened row-major (Keras `Flatten`). The width multiplier
    applies to the hidden size too: each hidden layer has `max(1, round(hidden * width))` units, so
    `width=1.0` (the default) keeps `hidden`.

    Acts: `dense_0 … dense_{depth-1}`, each `[B, units]`; every hidden layer is a mask point.

    Attributes:
        num_classes: output units.
        width: unit multiplier.
        mask_generators: must be False (an MLP has no conv layers for MwT).
        depth: number of hidden layers k (the paper uses 1–4).
        hidden: hidden units at width 1 (49 in the paper).
        channels: per-layer width overrides `{"dense_{i}": units}` of a pruned instance
            (`modjax.prune`); unlisted layers keep the width-derived size.
    """

    num_classes: int = 10
    width: float = 1.0
    mask_generators: bool = False
    depth: int = 4
    hidden: int = 49
    channels: Mapping[str, int] | None = None

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, masks: Masks | None = None
    ) -> tuple[jax.Array, Acts]:
        """Returns `(logits [B, num_classes], acts)`; `train` is unused (no BN, no dropout)."""
        del train
        check_mlp(depth=self.depth, hidden=self.hidden, mask_generators=self.mask_generators)
        rec = layers.Recorder(masks, model="mlp", channels=self.channels)
        units = layers.scaled(self.hidden, self.width)
        h = x.reshape(x.shape[0], -1)
        for i in range(self.depth):
            name = f"dense_{i}"
            h = layers.dense_layer(rec, h, rec.features(name, units), name=name, init="keras")
        logits = layers.dense(h, self.num_classes, init="keras", name="head")
        return logits, rec.finish(self)


def check_mlp(*, depth: int, hidden: int, mask_generators: bool) -> None:
    """Validates MLP hyperparameters.

    Raises:
        ValueError: for `depth < 1`, `hidden < 1` or `mask_generators=True`.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth={depth!r} must be an int >= 1 (hidden layers; the paper uses 1-4)")
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"hidden={hidden!r} must be an int >= 1")
    if mask_generators:
        raise ValueError(
            "mlp has no conv layers for MwT mask generators; mask_generators=True needs a CNN "
            "(lenet5, simcnn, rescnn, vgg16, vgg16_moda, resnet18, mobilenet)"
        )
