"""Kernel retention of class, task and composed modules, and weight retention (METHODS §10.1-2)."""

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from jax.typing import ArrayLike

from modjax.metrics._common import _class_set, _leaves
from modjax.typing import Params

RESCNN_TOTAL_KERNELS = 4288
"""ResCNN conv kernels, first conv included: the composition-KRR denominator (METHODS §4.7)."""
RESCNN_TOTAL_KERNELS_PARITY = 4228
"""The typo'd ResCNN total of MwT's `reuse_modules.py` (parity mode; METHODS §12 quirk 6)."""
SIMCNN_TOTAL_KERNELS = 4224
"""SimCNN conv kernels, first conv included (METHODS §4.7)."""


# ----------------------------------------------------------------------------- kernel retention


class KernelRetention(NamedTuple):
    """Kernel retention rates (METHODS §10.1).

    Attributes:
        per_class: `[N]` float64, KRR_c = |u_c| / K.
        mean: the model KRR, mean over classes.
    """

    per_class: np.ndarray
    mean: float


def kernel_retention(U: ArrayLike) -> KernelRetention:
    """MwT kernel retention rate of every class module and their mean.

    Args:
        U: `[N, K]` bool, the kept masked kernels of each class module (first conv excluded).

    Returns:
        A `KernelRetention` with `per_class` `[N]` and the scalar `mean`.

    Raises:
        TypeError: if `U` is not boolean. ValueError: if it is not a non-empty matrix.

    References:
        METHODS §4.5, §10.1 (MwT, ICSE'24).

    Example:
        >>> krr = kernel_retention(np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool))
        >>> krr.per_class.tolist(), krr.mean
        ([0.5, 0.25], 0.375)
    """
    U = _class_set(U)
    per_class = U.sum(axis=1) / U.shape[1]
    return KernelRetention(per_class, float(per_class.mean()))


def task_kernel_retention(U: ArrayLike, classes: Sequence[int]) -> float:
    """Kernel rate of a task module: |OR_{c∈T} u_c| / K (METHODS §4.6, §10.1).

    Args:
        U: `[N, K]` bool class modules.
        classes: the task's distinct class ids T, each in `[0, N)`.

    Returns:
        The fraction of the K masked kernels kept by the union module.

    Raises:
        ValueError: for an empty, repeated or out-of-range class list. TypeError: non-bool `U`.

    Example:
        >>> U = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]], bool)
        >>> task_kernel_retention(U, [0, 1])
        0.75
    """
    U = _class_set(U)
    classes = [int(c) for c in classes]
    num_classes = U.shape[0]
    if not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes={classes} must be a non-empty list of distinct class ids")
    if min(classes) < 0 or max(classes) >= num_classes:
        raise ValueError(f"classes={classes} must lie in [0, {num_classes})")
    return float(np.any(U[classes], axis=0).sum() / U.shape[1])


def composition_kernel_retention(
    kernel_counts_per_module: Sequence[int], total_kernels: int
) -> float:
    """CNNSplitter-style composition KRR: Σ_{t∈T} |kernels(module_t)| / total kernels.

    Each module counts its own kernels, so a kernel shared by two modules counts twice, and the
    value can exceed 1. The first (unmasked) conv is included in both the counts and the total:
    for an MwT class module, `|kernels| = U[c].sum() + (total conv kernels − K)`.

    Totals (`models.count_conv_kernels`): SimCNN 4,224 (`SIMCNN_TOTAL_KERNELS`); ResCNN 4,288
    (`RESCNN_TOTAL_KERNELS`, the modjax default). MwT's `reuse_modules.py` uses 4,228 for ResCNN
    (`RESCNN_TOTAL_KERNELS_PARITY`), a typo that inflates the KRR slightly; pass it for parity.

    Args:
        kernel_counts_per_module: the conv-kernel count of each composed module, `[|T|]` ints.
        total_kernels: conv kernels of the whole model, first conv included.

    Returns:
        The composition kernel rate.

    Raises:
        ValueError: for no modules, a non-positive total or a count outside `[0, total_kernels]`.

    References:
        METHODS §4.7, §10.1; `qibinhang/MwT, src/exp_cnnsplitter_reusing/reuse_modules.py`.

    Example:
        >>> composition_kernel_retention([1000, 1144], RESCNN_TOTAL_KERNELS)
        0.5
    """
    if isinstance(total_kernels, bool) or not isinstance(total_kernels, int) or total_kernels < 1:
        raise ValueError(f"total_kernels={total_kernels!r} must be a positive int")
    counts = np.asarray(kernel_counts_per_module)
    if counts.ndim != 1 or counts.size == 0 or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(
            f"kernel_counts_per_module={kernel_counts_per_module!r} must be a non-empty list of "
            "ints"
        )
    if counts.min() < 0 or counts.max() > total_kernels:
        raise ValueError(
            f"kernel_counts_per_module={counts.tolist()} must lie in [0, {total_kernels}]"
        )
    return float(counts.sum() / total_kernels)


# ----------------------------------------------------------------------------- weight retention


def _retention(keep_tree, params, *, include_generators, linear_only) -> float:
    keep = _leaves(keep_tree, "keep_tree", include_generators)
    full = _leaves(params, "params", include_generators)
    if [p for p, _ in keep] != [p for p, _ in full]:
        raise ValueError("keep_tree must have the tree structure of params")
    # A Linear (Dense) layer is a params dict whose "kernel" is 2-D; its bias counts with it.
    shapes = {path: tuple(getattr(leaf, "shape", np.shape(leaf))) for path, leaf in full}
    kept = total = 0
    for (path, leaf), _ in zip(keep, full):
        arr = np.asarray(leaf)
        if arr.dtype != np.bool_:
            raise TypeError(f"keep_tree{path} must be boolean; got dtype {arr.dtype}")
        if arr.shape != shapes[path]:
            raise ValueError(f"keep_tree{path} has shape {arr.shape}; params has {shapes[path]}")
        if linear_only:
            kernel = path.rsplit("[", 1)[0] + "['kernel']"
            if len(shapes.get(kernel, ())) != 2:
                continue
        kept += int(arr.sum())
        total += arr.size
    if total == 0:
        raise ValueError(
            "params has no Linear (2-D kernel) layers" if linear_only else "params has no scalars"
        )
    return kept / total


def weight_retention(keep_tree: Any, params: Params, *, include_generators: bool = False) -> float:
    """Module size: surviving trainable scalars / all trainable scalars (MODA "module size").

    A scalar survives iff the module keeps it after slicing: conv/dense weights whose output and
    input are both retained, biases and BN scale/bias of retained outputs, output-layer rows of
    the module's classes. BN running statistics live in `batch_stats`, not `params`, so they are
    excluded. MwT mask generators (`generator` subtrees) are dropped by extraction and excluded
    from both counts unless `include_generators`. Average over classes for MODA's figure; a
    composed model uses its union keep tree.

    Args:
        keep_tree: pytree of bool arrays with the structure and shapes of `params`.
        params: the parent's `variables["params"]` (arrays or `jax.ShapeDtypeStruct`s).
        include_generators: count MwT generator parameters too.

    Returns:
        The retained fraction in [0, 1].

    Raises:
        ValueError: on a structure or shape mismatch. TypeError: on a non-boolean keep leaf.

    References:
        METHODS §10.2; `dnn-modularization/MODA, exp_analysis/module_analysis.py`.

    Example:
        >>> params = {"fc": {"kernel": np.zeros((2, 3)), "bias": np.zeros(3)}}
        >>> keep = {"fc": {"kernel": np.array([[1, 1, 0], [1, 1, 0]], bool),
        ...                "bias": np.array([1, 1, 0], bool)}}
        >>> round(weight_retention(keep, params), 4)
        0.6667
    """
    return _retention(keep_tree, params, include_generators=include_generators, linear_only=False)


def linear_weight_retention(
    keep_tree: Any, params: Params, *, include_generators: bool = False
) -> float:
    """NeMo's weight retention rate: `weight_retention` over Linear (Dense) layers only.

    A Linear layer is a params dict whose `kernel` is 2-D; its `bias` counts with it. Conv and BN
    parameters are ignored. Arguments as `weight_retention`.

    Raises:
        ValueError: as `weight_retention`, or if `params` has no Linear layer.

    References:
        METHODS §10.2 (NeMo, arXiv 2508.11348).

    Example:
        >>> params = {"conv": {"kernel": np.zeros((3, 3, 1, 2))},
        ...           "fc": {"kernel": np.zeros((2, 2)), "bias": np.zeros(2)}}
        >>> keep = {"conv": {"kernel": np.zeros((3, 3, 1, 2), bool)},
        ...         "fc": {"kernel": np.eye(2, dtype=bool), "bias": np.ones(2, bool)}}
        >>> linear_weight_retention(keep, params)
        0.6666666666666666
    """
    return _retention(keep_tree, params, include_generators=include_generators, linear_only=True)
