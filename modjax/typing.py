"""Pytree aliases shared across modjax."""

from collections.abc import Callable, Mapping
from typing import Any

import jax

Array = jax.Array
Params = Mapping[str, Any]
"""A Flax `params` collection: nested dict of arrays."""
BatchStats = Mapping[str, Any]
"""A Flax `batch_stats` collection (BatchNorm running moments); `{}` for models without BN."""
Acts = dict[str, jax.Array]
"""Hidden activations keyed by stable layer name (post-ReLU), plus `"<conv>/mask"` entries for
MwT mask-generator outputs."""
Masks = Mapping[str, jax.Array]
"""Per-layer channel keep-masks keyed by layer name, each `[C]` or `[batch, C]`."""
Batch = Mapping[str, jax.Array]
"""`{"image": [B, H, W, C] uint8, "label": [B] int32}`, plus `"mask": [B] bool` for padded eval batches."""
Objective = Callable[[jax.Array, Acts, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]
"""`(logits, acts, labels) -> (loss, terms)`: a scalar loss and a fixed-key dict of its terms."""
