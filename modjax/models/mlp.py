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
    With `mask_generators=True`, also `dense_{i}/mask` `[B, units]` right before `dense_{i}`.

    MwT on an MLP (`mask_generators=True`) is the neuron-level analogue of MwT's MaskConvBN
    (METHODS §4.1), as NeMo extends MwT to Linear layers (§6); the choices:

    - Every hidden layer `dense_i` gets a generator (`layers.DenseUnit`). There is no "first conv"
      to leave unmasked (§4.2): the first hidden layer is masked too, so K = depth × units.
    - The generator reads the layer's input with no spatial mean, z = x (the flattened image for
      `dense_0`, the previous hidden activation after its mask and ReLU otherwise);
      h = ReLU(W₁ z) without bias, m = ReLU(tanh(W₂ h + b₂)) per sample and per neuron, with
      H_g = `layers.generator_hidden(units)` (= units below 128), W₁, W₂ Kaiming-normal fan_in
      and b₂ = 1 (m ≈ tanh(1) at init). Generator parameters per layer: C_in·H_g + H_g·C + C.
    - The mask multiplies the pre-activation, y = Dense(x) ⊙ m, then ReLU; there is no BN.
    - The head is not masked. The Dense parameters keep their plain paths `params["dense_i"]`
      (the generator sits at `params["dense_i"]["generator"]`), so the pruned and masked forms
      of a module are the plain MLP once generators are dropped, exactly as for CNNs (§4.6).

    Attributes:
        num_classes: output units.
        width: unit multiplier.
        mask_generators: build the MwT modular model (neuron-level masks on every hidden layer).
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
        check_mlp(depth=self.depth, hidden=self.hidden)
        rec = layers.Recorder(masks, model="mlp", channels=self.channels)
        units = layers.scaled(self.hidden, self.width)
        h = x.reshape(x.shape[0], -1)
        for i in range(self.depth):
            name = f"dense_{i}"
            h = layers.dense_layer(
                rec,
                h,
                rec.features(name, units),
                name=name,
                init="keras",
                generator=self.mask_generators,
            )
        logits = layers.dense(h, self.num_classes, init="keras", name="head")
        return logits, rec.finish(self)


def check_mlp(*, depth: int, hidden: int) -> None:
    """Validates MLP hyperparameters.

    Raises:
        ValueError: for `depth < 1` or `hidden < 1`.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth={depth!r} must be an int >= 1 (hidden layers; the paper uses 1-4)")
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"hidden={hidden!r} must be an int >= 1")
