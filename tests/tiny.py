"""A tiny Flax model with the modjax contract `(logits, acts)`, BatchNorm and dropout."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class TinyNet(nn.Module):
    num_classes: int = 3
    width: int = 8

    @nn.compact
    def __call__(self, x, *, train: bool, masks=None):
        del masks
        h = nn.Conv(self.width, (3, 3), name="conv_0")(x)
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn_0")(h)
        h = nn.relu(h)
        acts = {"conv_0": h}
        h = jnp.mean(h, axis=(1, 2))
        h = nn.Dropout(0.1, deterministic=not train)(h)
        h = nn.relu(nn.Dense(self.width, name="fc_0")(h))
        acts["fc_0"] = h
        return nn.Dense(self.num_classes, name="head")(h), acts


def to_float(images, rng):
    """A trivial on-device preprocess: uint8 -> [0, 1] float32."""
    del rng
    return images.astype(jnp.float32) / 255.0


def synthetic(num=64, shape=(8, 8, 1), num_classes=3, seed=0):
    """Random uint8 images whose mean brightness depends on the label (learnable)."""
    rs = np.random.RandomState(seed)
    labels = rs.randint(0, num_classes, size=num).astype(np.int32)
    base = (labels[:, None, None, None] * 80 + 20).astype(np.float32)
    images = np.clip(base + rs.randn(num, *shape) * 20, 0, 255).astype(np.uint8)
    return images, labels


def tree_max_diff(a, b):
    return max(
        float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )
