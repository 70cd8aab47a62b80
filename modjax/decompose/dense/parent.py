"""The parent of a dense decomposition: its layers as `(W, b)` pairs and the monitoring pass.

Pan & Rajan (FSE'20) decompose a ReLU MLP (METHODS §3.1, §7.1). `to_layers` reads the zoo
MLP's parameters into a list of `(kernel [n_in, n_out], bias [n_out])`, hidden layers first and
the output layer last, and rejects anything else by name; `monitor` is the paper's monitoring
pass, which decides every node's activity with the original weights.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

Layers = list[tuple[jax.Array, jax.Array]]
"""`[(W_1, b_1), …, (W_L, b_L)]`: hidden layers, then the output layer."""


def check(model_name: str, *, activations: Sequence[str] | None = None) -> None:
    """Checks that a parent can be decomposed by the dense (FSE'20) method.

    Args:
        model_name: the zoo name of the parent (`"mlp"` is the only dense parent).
        activations: the hidden activations in forward order, if the caller knows them
            (the zoo MLP uses ReLU everywhere); None means all ReLU.

    Raises:
        ValueError: another architecture, or a non-ReLU hidden activation (naming the layer).

    Example:
        >>> check("mlp", activations=["relu", "relu"])
    """
    if model_name != "mlp":
        raise ValueError(
            f"unsupported architecture {model_name!r}: the dense Pan & Rajan decomposition "
            "(FSE'20) needs the zoo 'mlp' (Flatten, ReLU Dense layers, Dense head); CIFAR "
            "ResNets without BatchNorm take the CNN method (check_cnn_parent, ICSE'22)"
        )
    for i, act in enumerate(activations or ()):
        if act != "relu":
            raise ValueError(
                f"layer dense_{i} has activation {act!r}; Pan & Rajan's activity rule "
                "(a node is active iff its pre-activation is > 0) needs ReLU"
            )


def to_layers(params: Mapping[str, Any]) -> Layers:
    """The zoo MLP's parameters as `[(W, b), …]`, hidden layers `dense_0…` then `head`.

    Args:
        params: the `params` collection of `models.get_model("mlp", depth=k)`; a leading
            class axis is not allowed here.

    Returns:
        The layers in forward order.

    Raises:
        ValueError: a missing or unexpected layer, or kernels whose shapes do not chain.

    Example:
        >>> import numpy as np
        >>> p = {"dense_0": {"kernel": np.ones((4, 3)), "bias": np.zeros(3)},
        ...      "head": {"kernel": np.ones((3, 2)), "bias": np.zeros(2)}}
        >>> [w.shape for w, _ in to_layers(p)]
        [(4, 3), (3, 2)]
    """
    names = sorted((k for k in params if k.startswith("dense_")), key=lambda k: int(k[6:]))
    expected = [f"dense_{i}" for i in range(len(names))]
    extra = sorted(set(params) - set(expected) - {"head"})
    if names != expected or "head" not in params or extra or not names:
        raise ValueError(
            f"params has layers {sorted(params)}; the dense decomposition expects the zoo MLP's "
            "dense_0 … dense_{k-1} and head (unsupported architecture)"
        )
    layers = []
    width = None
    for name in [*names, "head"]:
        w, b = params[name]["kernel"], params[name]["bias"]
        if w.ndim != 2 or b.shape != (w.shape[1],) or (width is not None and w.shape[0] != width):
            raise ValueError(
                f"layer {name!r} has kernel {tuple(w.shape)} and bias {tuple(b.shape)}; expected "
                f"[{width or 'n_in'}, n] and [n] (one parent, no class axis)"
            )
        width = w.shape[1]
        layers.append((jnp.asarray(w), jnp.asarray(b)))
    return layers


def to_params(layers: Layers) -> dict[str, dict[str, jax.Array]]:
    """Inverse of `to_layers`: `{"dense_i": {kernel, bias}, "head": …}` (any leading axes)."""
    names = [f"dense_{i}" for i in range(len(layers) - 1)] + ["head"]
    return {n: {"kernel": w, "bias": b} for n, (w, b) in zip(names, layers)}


def monitor(layers: Layers, x: jax.Array) -> tuple[list[jax.Array], jax.Array]:
    """The monitoring pass (METHODS §7.1): pre-activations with no ReLU between layers.

    z₁ = xW₁ + b₁, z_l = z_{l−1}W_l + b_l, p = softmax(z_L). Hidden node j of layer l is
    active iff z_l[j] > 0. This is the reference code's pass, not the model's forward pass.

    Args:
        layers: `to_layers(params)`.
        x: inputs `[N, ...]`, flattened row-major.

    Returns:
        `(zs, p)`: the hidden pre-activations `[N, n_l]` per hidden layer, and `p [N, K]`.

    Example:
        >>> layers = [(jnp.eye(2), jnp.zeros(2)), (jnp.eye(2), jnp.zeros(2))]
        >>> zs, p = monitor(layers, jnp.array([[1.0, -1.0]]))
        >>> zs[0].tolist(), p.shape
        ([[1.0, -1.0]], (1, 2))
    """
    h = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    zs = []
    for w, b in layers[:-1]:
        h = h @ w + b
        zs.append(h)
    w, b = layers[-1]
    return zs, jax.nn.softmax(h @ w + b, axis=-1)


def forward(layers: Layers, x: jax.Array) -> jax.Array:
    """The model's (and a module's) forward pass: ReLU hidden layers, logits out."""
    h = x.reshape(x.shape[0], math.prod(x.shape[1:]))
    for w, b in layers[:-1]:
        h = jax.nn.relu(h @ w + b)
    w, b = layers[-1]
    return h @ w + b
