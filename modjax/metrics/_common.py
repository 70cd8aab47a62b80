"""Shared input validation of the metrics: boolean class sets, labels and keep trees."""

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.typing import ArrayLike

_GENERATOR_KEY = "generator"  # params subtree of an MwT mask generator (models.MaskGenerator)


def _bool_array(x: ArrayLike, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype != np.bool_:
        raise TypeError(f"{name} must be a boolean array; got dtype {arr.dtype} (use `m > 0`)")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions; got shape {arr.shape}")
    return arr


def _class_set(U: ArrayLike) -> np.ndarray:
    U = _bool_array(U, "U", 2)
    if U.shape[0] < 1 or U.shape[1] < 1:
        raise ValueError(f"U must be [num_classes >= 1, K >= 1]; got shape {U.shape}")
    return U


def _labels(labels: ArrayLike, n: int, num_classes: int | None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be [{n}] integers (one per mask row); got shape {labels.shape}, "
            f"dtype {labels.dtype}"
        )
    if num_classes is not None and n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}); got range [{labels.min()}, {labels.max()}]"
        )
    return labels


def _leaves(tree: Any, name: str, include_generators: bool) -> list[tuple[str, Any]]:
    """`(path, leaf)` pairs of a pytree, without MwT generator subtrees unless asked."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
        if include_generators or _GENERATOR_KEY not in keys:
            out.append((jax.tree_util.keystr(path), leaf))
    if not out:
        raise ValueError(f"{name} has no leaves to measure")
    return out


def _packed_keeps(
    trees: Sequence[Any], names: Sequence[str], include_generators: bool
) -> tuple[list[np.ndarray], int]:
    """Checks keep trees against the first; returns each one bit-packed, and the scalar count.

    Packing tree by tree keeps host memory at ~1/8 byte per scalar per module.
    """
    ref = _leaves(trees[0], names[0], include_generators)
    ref_shapes = [np.shape(leaf) for _, leaf in ref]
    packed = []
    for tree, name in zip(trees, names, strict=True):
        leaves = _leaves(tree, name, include_generators)
        if [p for p, _ in leaves] != [p for p, _ in ref]:
            raise ValueError(f"{name} does not have the tree structure of {names[0]}")
        arrays = []
        for (path, leaf), shape in zip(leaves, ref_shapes):
            arr = np.asarray(leaf)
            if arr.dtype != np.bool_:
                raise TypeError(f"{name}{path} must be boolean; got dtype {arr.dtype}")
            if arr.shape != shape:
                raise ValueError(f"{name}{path} has shape {arr.shape}; {names[0]} has {shape}")
            arrays.append(arr.ravel())
        packed.append(np.packbits(np.concatenate(arrays)))
    return packed, sum(math.prod(s) for s in ref_shapes)
