"""Pan & Rajan's Jaccard indices of modules' weights: value-based (parity) and edge-based."""

import math
from typing import Any

import jax
import numpy as np


def _weight_values(weights: Any, name: str) -> list[np.ndarray]:
    arrays = [np.asarray(leaf) for leaf in jax.tree.leaves(weights)]
    if not arrays or sum(a.size for a in arrays) == 0:
        raise ValueError(f"{name} has no weights")
    return arrays


def value_jaccard(weights_a: Any, weights_b: Any) -> float:
    """Pan & Rajan's value-based Jaccard index of two modules' weights (parity).

    Flattens each module's weight matrices (pass kernels only, biases excluded) into value
    lists v₁, v₂ and returns |set(v₁) ∩ set(v₂)| / (len(v₁) + len(v₂) − |set(v₁) ∩ set(v₂)|).
    Equal surviving values and shared zeros count, and the lengths count duplicates, so this is
    not a Jaccard index of parameters; `edge_jaccard` is the position-based default. Average over
    the 90 ordered module pairs for the paper's figure (it is symmetric).

    Args:
        weights_a: pytree (or list) of weight arrays of module a.
        weights_b: the same for module b; shapes may differ.

    Returns:
        The value-based JI.

    Raises:
        ValueError: if either module has no weights.

    References:
        METHODS §10.3, §12 quirk 20; `rangeetpan/decomposeDNNintoModules, similarity.py`.

    Example:
        >>> value_jaccard([np.array([[0.0, 0.5], [0.5, 1.0]])], [np.array([0.0, 0.0, 2.0])])
        0.16666666666666666
    """
    a = np.concatenate([x.ravel() for x in _weight_values(weights_a, "weights_a")])
    b = np.concatenate([x.ravel() for x in _weight_values(weights_b, "weights_b")])
    inter = np.intersect1d(np.unique(a), np.unique(b), assume_unique=True).size
    return inter / (a.size + b.size - inter)


def edge_jaccard(weights_a: Any, weights_b: Any) -> float:
    """Position-based Jaccard of two modules' non-zero edges: Σ(a≠0 ∧ b≠0) / Σ(a≠0 ∨ b≠0).

    The modjax default for Pan & Rajan modules, which zero out edges of parent-shaped weights.

    Args:
        weights_a: pytree of weight arrays of module a (kernels only).
        weights_b: the same structure and shapes for module b.

    Returns:
        The Jaccard index; NaN if neither module has a non-zero weight.

    Raises:
        ValueError: on a structure or shape mismatch, or no weights.

    References:
        METHODS §10.3, §12 quirk 20.

    Example:
        >>> edge_jaccard([np.array([[0.0, 0.5], [0.5, 1.0]])], [np.array([[0.0, 0.0], [2.0, 1.0]])])
        0.6666666666666666
    """
    _weight_values(weights_a, "weights_a")
    if jax.tree.structure(weights_a) != jax.tree.structure(weights_b):
        raise ValueError("weights_b must have the tree structure of weights_a")
    inter = union = 0
    for x, y in zip(jax.tree.leaves(weights_a), jax.tree.leaves(weights_b)):
        x, y = np.asarray(x) != 0, np.asarray(y) != 0
        if x.shape != y.shape:
            raise ValueError(f"weights_b has a leaf of shape {y.shape}; weights_a has {x.shape}")
        inter += int(np.count_nonzero(x & y))
        union += int(np.count_nonzero(x | y))
    return inter / union if union else math.nan
