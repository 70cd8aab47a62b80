"""A decomposed module as a value: masked weights, edge masks, the pruned form and its sizes.

A Pan & Rajan module of class c is the parent's parameter tree with edges zeroed (and, after
CM, the outputs channelled): the *masked* form, which runs with the parent's `apply`. Its edge
masks are `kernel != 0`. The *pruned* form physically drops hidden nodes that lost every
incoming edge (their constant output relu(d_j) is folded into the next layer's bias) or every
outgoing edge, and runs with `models.get_model("mlp", depth=k, channels=...)`; both forms give
the same logits on every input (STYLE §2).
"""

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from modjax import models
from modjax.decompose.dense.parent import to_layers, to_params

KIND = "dense"
"""The `kind` a dense module's directory records (`io`; a directory without one is dense too)."""


class DenseModule(NamedTuple):
    """One decomposed module (host arrays).

    Attributes:
        params: the masked form, shaped like the parent's `params`.
        masks: `{layer: bool [n_in, n_out]}` kept edges, the edge masks of the value.
        class_id: the module's class (its positive output).
        parent: JSON-able parent description (`modular.describe_parent`).
        settings: `{"ti", "cm", "parity", "paper_constants", "confidence", ...}`.
        metrics: JSON-able scalars (`sizes(...)` and whatever the caller adds).
    """

    params: dict[str, Any]
    masks: dict[str, np.ndarray]
    class_id: int
    parent: dict[str, Any]
    settings: dict[str, Any]
    metrics: dict[str, Any]


def edge_masks(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """`{layer: kernel != 0}` of a module's masked parameters."""
    return {name: np.asarray(p["kernel"]) != 0 for name, p in params.items()}


def unstack(
    stacked: Mapping[str, Any],
    *,
    parent: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> list[DenseModule]:
    """Splits `make_decompose`'s `[C, ...]` output into one `DenseModule` per class.

    Example:
        >>> p = {"dense_0": {"kernel": np.ones((2, 3, 2)), "bias": np.zeros((2, 2))},
        ...      "head": {"kernel": np.ones((2, 2, 2)), "bias": np.zeros((2, 2))}}
        >>> [m.class_id for m in unstack(p, parent={}, settings={})]
        [0, 1]
    """
    host = jax.device_get(dict(stacked))
    num = jax.tree.leaves(host)[0].shape[0]
    out = []
    for c in range(num):
        params = jax.tree.map(lambda a, c=c: np.asarray(a[c]), host)
        out.append(
            DenseModule(
                params=params,
                masks=edge_masks(params),
                class_id=c,
                parent=dict(parent),
                settings=dict(settings),
                metrics=sizes(params),
            )
        )
    return out


def prune(params: Mapping[str, Any]) -> tuple[dict[str, int], dict[str, Any]]:
    """The pruned form of a module: hidden nodes without incoming or outgoing edges removed.

    A node whose incoming column is all zero outputs the constant relu(d_j); it is removed and
    relu(d_j)·D_{l+1}[j, :] is added to the next bias. A node whose outgoing row is all zero is
    removed. Every hidden layer keeps at least one (possibly all-zero) node.

    Args:
        params: a module's masked parameters (no class axis).

    Returns:
        `(channels, pruned params)`: `channels={"dense_i": units}` for
        `models.get_model("mlp", depth=k, channels=channels)`.

    Example:
        >>> p = {"dense_0": {"kernel": np.array([[1.0, 0.0]]), "bias": np.array([0.0, 2.0])},
        ...      "head": {"kernel": np.array([[1.0], [3.0]]), "bias": np.array([0.5])}}
        >>> channels, q = prune(p)
        >>> channels, q["head"]["bias"].tolist()
        ({'dense_0': 1}, [6.5])
    """
    layers = [(np.array(w, np.float32), np.array(b, np.float32)) for w, b in to_layers(params)]
    num_hidden = len(layers) - 1
    for l in range(num_hidden):
        (w, b), (w_next, b_next) = layers[l], layers[l + 1]
        dead = ~np.any(w != 0, axis=0)
        if dead.all():
            dead[0] = False
            w[:, 0] = 0.0
            b_next = b_next + np.maximum(b[0], 0.0) * w_next[0]
            w_next = w_next.copy()
            w_next[0] = 0.0
            b = b.copy()
            b[0] = 0.0
        b_next = b_next + np.maximum(b[dead], 0.0) @ w_next[dead]
        layers[l] = (w[:, ~dead], b[~dead])
        layers[l + 1] = (w_next[~dead], b_next)
    for l in reversed(range(num_hidden)):
        (w, b), (w_next, b_next) = layers[l], layers[l + 1]
        silent = ~np.any(w_next != 0, axis=1)
        if silent.all():
            silent[0] = False
        layers[l] = (w[:, ~silent], b[~silent])
        layers[l + 1] = (w_next[~silent], b_next)
    channels = {f"dense_{l}": int(layers[l][0].shape[1]) for l in range(num_hidden)}
    return channels, to_params(layers)


def sizes(params: Mapping[str, Any], *, input_shape=None) -> dict[str, Any]:
    """Edge and node retention and MACs of a module vs its parent (METHODS §10.2, §10.9).

    `input_shape` defaults to the flat input the first kernel reads, `(n_in,)`.

    Returns:
        `edges` (non-zero kernel entries, the published "NonZero" fraction's numerator),
        `edge_rate`, `nodes` (hidden nodes of the pruned form), `node_rate`, `macs` (pruned
        form) and `mac_rate`.
    """
    layers = to_layers(params)
    if input_shape is None:
        input_shape = (int(layers[0][0].shape[0]),)
    total_edges = sum(int(np.size(w)) for w, _ in layers)
    edges = sum(int(np.count_nonzero(np.asarray(w))) for w, _ in layers)
    channels, _ = prune(params)
    depth = len(layers) - 1
    hidden = [int(w.shape[1]) for w, _ in layers[:-1]]
    num_classes = int(layers[-1][0].shape[1])
    kwargs = {"depth": depth, "hidden": max(hidden), "num_classes": num_classes}
    full = {f"dense_{i}": h for i, h in enumerate(hidden)}
    parent_macs = models.count_macs(models.get_model("mlp", channels=full, **kwargs), input_shape)
    macs = models.count_macs(models.get_model("mlp", channels=channels, **kwargs), input_shape)
    nodes = sum(channels.values())
    return {
        "edges": edges,
        "edge_rate": edges / total_edges,
        "nodes": nodes,
        "node_rate": nodes / sum(hidden),
        "macs": macs,
        "mac_rate": macs / parent_macs,
    }
