"""Modularity metrics: kernel/weight retention, overlap, Jaccard cohesion/coupling, sizes, accuracy.

Conventions (METHODS §10). A per-class module's kernel selection is a boolean vector over the K
masked kernels (all masked layers concatenated in forward order), so a class set is `U: bool
[N, K]` and per-sample binary masks are `B: bool [n, K]` (`m > 0` of the MwT generator masks).
Parameter-level membership (weight retention, overlap) is a *keep tree*: a pytree of boolean
arrays with the structure and shapes of the parent's `params` (True = the scalar survives
slicing). Jaccard metrics are invariant to the kernel order, so any consistent concatenation works.

Everything here runs offline on the host in NumPy, except `batch_jaccard_metrics`, which is
`jnp` and traceable so an eval step can compute it per batch.
"""

import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from modjax import models
from modjax.typing import Params

RESCNN_TOTAL_KERNELS = 4288
"""ResCNN conv kernels, first conv included: the composition-KRR denominator (METHODS §4.7)."""
RESCNN_TOTAL_KERNELS_PARITY = 4228
"""The typo'd ResCNN total of MwT's `reuse_modules.py` (parity mode; METHODS §12 quirk 6)."""
SIMCNN_TOTAL_KERNELS = 4224
"""SimCNN conv kernels, first conv included (METHODS §4.7)."""

_GENERATOR_KEY = "generator"  # params subtree of an MwT mask generator (models.MaskGenerator)
_POPCOUNT = np.array([i.bit_count() for i in range(256)], np.int64)


# ----------------------------------------------------------------------------- validation


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
    for (path, leaf), (_, ref) in zip(keep, full):
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


# ----------------------------------------------------------------------------- overlap


class Overlap(NamedTuple):
    """Overlap of two modules' parameters (METHODS §10.3).

    Attributes:
        moda: MODA's overlap |a∧b| / params(full model) (parity; not a Jaccard index).
        jaccard: the true Jaccard |a∧b| / |a∨b|; NaN if both modules are empty.
        intersection: |a∧b| scalars.
        union: |a∨b| scalars.
        total: scalars of the full model.
    """

    moda: float
    jaccard: float
    intersection: int
    union: int
    total: int


def _overlap_counts(a: np.ndarray, b: np.ndarray, total: int) -> Overlap:
    inter = int(_POPCOUNT[a & b].sum())
    union = int(_POPCOUNT[a | b].sum())
    return Overlap(inter / total, inter / union if union else math.nan, inter, union, total)


def overlap(keep_a: Any, keep_b: Any, *, include_generators: bool = False) -> Overlap:
    """MODA overlap and true Jaccard of two modules given as keep trees over one parent.

    Args:
        keep_a: pytree of bool arrays shaped like the parent's `params`.
        keep_b: the same for the other module.
        include_generators: count MwT generator parameters too (default: excluded, as in
            `weight_retention`).

    Returns:
        An `Overlap`; `moda` divides by the full model's size, `jaccard` by the union.

    Raises:
        ValueError: on a structure or shape mismatch. TypeError: on a non-boolean leaf.

    References:
        METHODS §10.3, §12 quirk 14; `dnn-modularization/MODA, exp_analysis/module_analysis.py`.

    Example:
        >>> a = {"w": np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)}
        >>> b = {"w": np.array([0, 1, 1, 1, 0, 0, 0, 0], bool)}
        >>> o = overlap(a, b)
        >>> o.moda, o.jaccard
        (0.25, 0.5)
    """
    (a, b), total = _packed_keeps((keep_a, keep_b), ("keep_a", "keep_b"), include_generators)
    return _overlap_counts(a, b, total)


class PairwiseOverlap(NamedTuple):
    """Mean overlap over class-module pairs (METHODS §10.3).

    Attributes:
        moda: mean MODA overlap over the pairs.
        jaccard: mean true Jaccard over the pairs with a non-empty union (NaN if none).
        pairs: `[P, 2]` int, the unordered pairs `(i, j)`, `i < j`, that were averaged.
        per_pair_moda: `[P]` float64.
        per_pair_jaccard: `[P]` float64, NaN where the union is empty.
        empty_union_pairs: pairs excluded from the Jaccard mean because both modules are empty.
    """

    moda: float
    jaccard: float
    pairs: np.ndarray
    per_pair_moda: np.ndarray
    per_pair_jaccard: np.ndarray
    empty_union_pairs: int


def mean_pairwise_overlap(
    keep_trees: Sequence[Any],
    *,
    pairs: Sequence[tuple[int, int]] | None = None,
    max_pairs: int | None = 357,
    seed: int = 42,
    include_generators: bool = False,
) -> PairwiseOverlap:
    """MODA overlap and true Jaccard averaged over pairs of class modules.

    With `pairs=None`, all N(N−1)/2 unordered pairs are used (45 for 10 classes) when there are
    at most `max_pairs` of them; otherwise `max_pairs` distinct pairs are drawn without
    replacement with `np.random.default_rng(seed)` (MODA: 357 pairs for 100 classes; its seed is
    unknown, 42 by default). `max_pairs=None` always uses all pairs.

    Args:
        keep_trees: N keep trees (one per class module) over the same parent.
        pairs: explicit `(i, j)` module-index pairs, `i != j`, overriding the sampling.
        max_pairs: the pair budget above which pairs are sampled.
        seed: sampling seed.
        include_generators: as in `overlap`.

    Returns:
        A `PairwiseOverlap`.

    Raises:
        ValueError: for fewer than 2 modules, a bad pair or `max_pairs`, or mismatched trees.

    Example:
        >>> trees = [{"w": np.array(m, bool)} for m in ([1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1])]
        >>> r = mean_pairwise_overlap(trees)
        >>> r.pairs.tolist(), round(r.moda, 4), round(r.jaccard, 4)
        ([[0, 1], [0, 2], [1, 2]], 0.0833, 0.1111)
    """
    n = len(keep_trees)
    if n < 2:
        raise ValueError(f"keep_trees has {n} modules; overlap needs at least 2")
    if pairs is None:
        all_pairs = np.array(list(itertools.combinations(range(n), 2)), np.int64)
        if max_pairs is not None:
            if isinstance(max_pairs, bool) or not isinstance(max_pairs, int) or max_pairs < 1:
                raise ValueError(f"max_pairs={max_pairs!r} must be a positive int or None")
            if len(all_pairs) > max_pairs:
                rng = np.random.default_rng(seed)
                pick = np.sort(rng.choice(len(all_pairs), size=max_pairs, replace=False))
                all_pairs = all_pairs[pick]
        pairs_arr = all_pairs
    else:
        pairs_arr = np.asarray(pairs, np.int64).reshape(-1, 2) if len(pairs) else None
        if (
            pairs_arr is None
            or pairs_arr.min() < 0
            or pairs_arr.max() >= n
            or np.any(pairs_arr[:, 0] == pairs_arr[:, 1])
        ):
            raise ValueError(f"pairs must be a non-empty list of (i, j), i != j, in [0, {n})")
    names = [f"keep_trees[{i}]" for i in range(n)]
    packed, total = _packed_keeps(keep_trees, names, include_generators)
    results = [_overlap_counts(packed[i], packed[j], total) for i, j in pairs_arr]
    moda = np.array([r.moda for r in results])
    jac = np.array([r.jaccard for r in results])
    defined = ~np.isnan(jac)
    mean_jac = float(jac[defined].mean()) if defined.any() else math.nan
    return PairwiseOverlap(
        float(moda.mean()), mean_jac, pairs_arr, moda, jac, int((~defined).sum())
    )


# ----------------------------------------------------------------------------- cohesion, coupling


class JaccardCohesion(NamedTuple):
    """MwT modularization-time cohesion (METHODS §10.4).

    Attributes:
        mean: mean of the defined per-class values (NaN if no class is defined).
        per_class: `[N]` float64, mean Jaccard over a class's sample pairs; NaN where no pair
            is defined (a single sample, or every pair's union empty).
        pair_counts: `[N]` int64, pairs with a non-empty union that were averaged.
        empty_union_pairs: `[N]` int64, pairs excluded because both AND-ed masks are empty.
    """

    mean: float
    per_class: np.ndarray
    pair_counts: np.ndarray
    empty_union_pairs: np.ndarray


def _pair_jaccard_sum(rows_fn, n: int, block_size: int, dtype) -> tuple[float, int, int]:
    """Σ J over pairs i < j of n binary rows, in `block_size` tiles: `(sum, defined, empty)`.

    `rows_fn(start, stop)` returns bool rows `[stop - start, K]`. Intersections come from a
    float matmul of 0/1 rows (exact while K < 2^24 in float32), unions from
    `|a| + |b| − inter`; extra memory is O(block_size · (K + block_size)).
    """
    sizes = np.concatenate(
        [rows_fn(s, min(n, s + block_size)).sum(axis=1) for s in range(0, n, block_size)]
        or [np.zeros(0, np.int64)]
    ).astype(np.float64)
    total, defined, empty = 0.0, 0, 0
    for r0 in range(0, n, block_size):
        r1 = min(n, r0 + block_size)
        rows = rows_fn(r0, r1).astype(dtype)
        for c0 in range(r0, n, block_size):
            c1 = min(n, c0 + block_size)
            cols = rows if c0 == r0 else rows_fn(c0, c1).astype(dtype)
            inter = (rows @ cols.T).astype(np.float64)
            union = sizes[r0:r1, None] + sizes[None, c0:c1] - inter
            pair = np.ones(inter.shape, bool)
            if c0 == r0:
                pair = np.triu(pair, k=1)
            ok = pair & (union > 0)
            empty += int(np.count_nonzero(pair & (union == 0)))
            defined += int(np.count_nonzero(ok))
            total += float(np.sum(inter[ok] / union[ok]))
    return total, defined, empty


def jaccard_cohesion(
    sample_masks: ArrayLike, labels: ArrayLike, U: ArrayLike, *, block_size: int = 1024
) -> JaccardCohesion:
    """Mean Jaccard index between the module-restricted masks of same-class samples.

    For each class c, every class-c sample mask is AND-ed with u_c and J(a, b) = |a∧b|/|a∨b| is
    averaged over all unordered pairs i < j (equal to MwT's cyclic-shift mean over i ≠ j); the
    result is the mean over classes. Pairs whose AND-ed masks are both empty have an undefined J
    (NaN in the reference): they are excluded and counted in `empty_union_pairs`. Intersections
    are blocked binary matmuls, never an n × n × K tensor; memory is bounded by `block_size`.

    Args:
        sample_masks: `[n, K]` bool, binary masks 1[m > 0] of the (training) samples.
        labels: `[n]` int class of each sample, in `[0, N)`.
        U: `[N, K]` bool class modules.
        block_size: rows per tile (tiles are `block_size × block_size` pairs).

    Returns:
        A `JaccardCohesion` (higher is better).

    Raises:
        TypeError: for non-boolean masks. ValueError: for mismatched shapes, bad labels, a class
        of `U` with no samples (an empty class) or a non-positive `block_size`.

    References:
        METHODS §10.4; `qibinhang/MwT, src/modularizer.py::eval_module_cohesion`.

    Example:
        >>> masks = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 1, 1]], bool)
        >>> U = np.array([[1, 1, 0], [0, 1, 1]], bool)
        >>> r = jaccard_cohesion(masks, np.array([0, 0, 1, 1]), U)
        >>> r.per_class.tolist(), r.mean
        ([0.5, 1.0], 0.75)
    """
    B = _bool_array(sample_masks, "sample_masks", 2)
    U = _class_set(U)
    if B.shape[1] != U.shape[1]:
        raise ValueError(
            f"sample_masks has K={B.shape[1]} kernels but U has K={U.shape[1]}; they must match"
        )
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size={block_size!r} must be a positive int")
    num_classes, K = U.shape
    labels = _labels(labels, B.shape[0], num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    if np.any(counts == 0):
        raise ValueError(
            f"classes {np.flatnonzero(counts == 0).tolist()} have no samples in labels; cohesion "
            "needs samples of every class of U (an empty class)"
        )
    dtype = np.float32 if K < 2**24 else np.float64
    per_class = np.full(num_classes, math.nan)
    defined = np.zeros(num_classes, np.int64)
    empty = np.zeros(num_classes, np.int64)
    for c in range(num_classes):
        idx, u = np.flatnonzero(labels == c), U[c]
        total, defined[c], empty[c] = _pair_jaccard_sum(
            lambda s, e, idx=idx, u=u: B[idx[s:e]] & u, len(idx), block_size, dtype
        )
        if defined[c]:
            per_class[c] = total / defined[c]
    ok = ~np.isnan(per_class)
    mean = float(per_class[ok].mean()) if ok.any() else math.nan
    return JaccardCohesion(mean, per_class, defined, empty)


class JaccardCoupling(NamedTuple):
    """MwT modularization-time coupling (METHODS §10.4).

    Attributes:
        mean: mean J(u_c, u_c′) over class pairs c ≠ c′ with a non-empty union (NaN if none).
        per_pair: `[N, N]` float64 symmetric Jaccard matrix; NaN on the diagonal and where both
            modules are empty.
        empty_union_pairs: unordered class pairs excluded because both modules are empty.
    """

    mean: float
    per_pair: np.ndarray
    empty_union_pairs: int


def jaccard_coupling(U: ArrayLike) -> JaccardCoupling:
    """Mean Jaccard index between the kernel sets of different class modules.

    The mean over ordered pairs c ≠ c′ equals the mean over unordered pairs c < c′.

    Args:
        U: `[N, K]` bool class modules, N ≥ 2.

    Returns:
        A `JaccardCoupling` (lower is better).

    Raises:
        TypeError: for a non-boolean `U`. ValueError: for fewer than 2 classes.

    References:
        METHODS §10.4; `qibinhang/MwT, src/modularizer.py::eval_module_coupling`.

    Example:
        >>> U = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], bool)
        >>> round(jaccard_coupling(U).mean, 4)
        0.2222
    """
    U = _class_set(U)
    num_classes = U.shape[0]
    if num_classes < 2:
        raise ValueError(f"U has {num_classes} class; coupling needs at least 2")
    Uf = U.astype(np.float64)
    inter = Uf @ Uf.T
    sizes = Uf.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        per_pair = np.where(union > 0, inter / np.where(union > 0, union, 1), math.nan)
    np.fill_diagonal(per_pair, math.nan)
    upper = per_pair[np.triu_indices(num_classes, k=1)]
    ok = ~np.isnan(upper)
    mean = float(upper[ok].mean()) if ok.any() else math.nan
    return JaccardCoupling(mean, per_pair, int((~ok).sum()))


class BatchJaccard(NamedTuple):
    """Per-batch Jaccard metrics (METHODS §10.5); every field a scalar `jax.Array`.

    Attributes:
        cohesion: mean J over same-class pairs i < j with a non-empty union; 0 if there are none.
        coupling: mean J over different-class pairs; 0 if there are none.
        kernel_rate: MwT's per-batch "KRR", the mean bit of the concatenated masks.
        same_pairs: int32, same-class pairs averaged (exclude the batch from a cohesion mean
            over batches when 0, METHODS §11.3).
        diff_pairs: int32, different-class pairs averaged.
        empty_union_pairs: int32, valid pairs excluded because both masks are empty.
    """

    cohesion: jax.Array
    coupling: jax.Array
    kernel_rate: jax.Array
    same_pairs: jax.Array
    diff_pairs: jax.Array
    empty_union_pairs: jax.Array


def batch_jaccard_metrics(
    batch_masks: ArrayLike | Sequence[ArrayLike],
    labels: ArrayLike,
    *,
    where: ArrayLike | None = None,
) -> BatchJaccard:
    """Cohesion, coupling and kernel rate of one batch's binary masks (traceable under `jit`).

    Concatenates the per-layer masks, then takes the Jaccard index of every pair i < j of valid
    samples (`inter = M Mᵀ`, B × B: cheap at eval batch sizes). Undefined means are 0 and their
    pair count is 0, so callers average over batches with a non-zero count (METHODS §11.3).

    Args:
        batch_masks: `[B, K]` bool, or a sequence of per-layer `[B, C_l]` bool masks (the
            order does not matter); binarize soft masks with `m > 0`.
        labels: `[B]` int labels.
        where: optional `[B]` bool validity mask (padded eval batches); invalid rows are ignored.

    Returns:
        A `BatchJaccard` of scalar arrays.

    Raises:
        TypeError: for non-boolean masks. ValueError: for mismatched shapes.

    References:
        METHODS §10.5; `qibinhang/MwT, src/standard_trainer.py::cal_modular_metrics`.

    Example:
        >>> masks = jnp.array([[1, 1, 0], [1, 0, 0], [0, 1, 1]], bool)
        >>> r = batch_jaccard_metrics(masks, jnp.array([0, 0, 1]))
        >>> float(r.cohesion), float(r.coupling), round(float(r.kernel_rate), 4)
        (0.5, 0.1666666716337204, 0.5556)
    """
    if isinstance(batch_masks, Sequence) and not hasattr(batch_masks, "shape"):
        layers = [jnp.asarray(m) for m in batch_masks]
        if not layers:
            raise ValueError("batch_masks is an empty list of layers")
    else:
        layers = [jnp.asarray(batch_masks)]
    for i, m in enumerate(layers):
        if m.dtype != jnp.bool_:
            raise TypeError(f"batch_masks[{i}] must be boolean; got dtype {m.dtype} (use `m > 0`)")
        if m.ndim != 2 or m.shape[0] != layers[0].shape[0]:
            raise ValueError(
                f"batch_masks[{i}] has shape {m.shape}; expected [B={layers[0].shape[0]}, C]"
            )
    masks = jnp.concatenate(layers, axis=1).astype(jnp.float32)
    batch = masks.shape[0]
    labels = jnp.asarray(labels)
    if labels.shape != (batch,):
        raise ValueError(f"labels has shape {labels.shape}; expected [{batch}]")
    valid = jnp.ones(batch, bool) if where is None else jnp.asarray(where, bool)
    if valid.shape != (batch,):
        raise ValueError(f"where has shape {valid.shape}; expected [{batch}]")
    inter = jnp.matmul(masks, masks.T, precision=jax.lax.Precision.HIGHEST)
    sizes = jnp.sum(masks, axis=1)
    union = sizes[:, None] + sizes[None, :] - inter
    pair = jnp.triu(jnp.ones((batch, batch), bool), k=1) & valid[:, None] & valid[None, :]
    nonempty = union > 0
    one, zero = jnp.float32(1), jnp.float32(0)
    jac = jnp.where(nonempty, inter / jnp.where(nonempty, union, one), zero)
    same = labels[:, None] == labels[None, :]
    same_ok, diff_ok = pair & nonempty & same, pair & nonempty & ~same
    n_same, n_diff = jnp.sum(same_ok, dtype=jnp.int32), jnp.sum(diff_ok, dtype=jnp.int32)

    def mean(selected, count):
        total = jnp.sum(jnp.where(selected, jac, zero))
        return jnp.where(count > 0, total / jnp.maximum(count, 1).astype(jnp.float32), zero)

    n_valid = jnp.sum(valid, dtype=jnp.int32)
    bits = jnp.sum(jnp.where(valid[:, None], masks, zero))
    slots = (jnp.maximum(n_valid, 1) * masks.shape[1]).astype(jnp.float32)
    kernel_rate = jnp.where(n_valid > 0, bits / slots, zero)
    return BatchJaccard(
        cohesion=mean(same_ok, n_same),
        coupling=mean(diff_ok, n_diff),
        kernel_rate=kernel_rate,
        same_pairs=n_same,
        diff_pairs=n_diff,
        empty_union_pairs=jnp.sum(pair & ~nonempty, dtype=jnp.int32),
    )


# ----------------------------------------------------------------------------- FLOPs and params


class ModuleSize(NamedTuple):
    """A module's size against its parent (METHODS §10.9). FLOPs are MACs of conv/dense layers.

    Attributes:
        flops: module MACs for one example, bias excluded.
        params: module parameter scalars.
        parent_flops: parent MACs.
        parent_params: parent parameter scalars.
        relative_flops: `flops / parent_flops`.
        relative_params: `params / parent_params`.
    """

    flops: int
    params: int
    parent_flops: int
    parent_params: int
    relative_flops: float
    relative_params: float


def _size(spec, name: str, include_generators: bool) -> tuple[int, int, tuple[int, ...]]:
    try:
        model, params, input_shape = spec
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (model, params, input_shape) triple") from None
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name}[0] must be a Flax model; got {type(model).__name__}")
    summary = models.summarize(model, tuple(input_shape))
    flops = summary["macs"] + (summary["generator_macs"] if include_generators else 0)
    expected = summary["params"] - (0 if include_generators else summary["generator_params"])
    given = models.count_params(params)
    if not include_generators:
        given -= models.count_generator_params(params)
    if given != expected:
        raise ValueError(
            f"{name} params have {given} scalars but {type(model).__name__} at input_shape "
            f"{tuple(input_shape)} has {expected}: pass variables['params'] of that model"
        )
    return flops, given, tuple(input_shape)


def module_flops_and_params(
    module: tuple[nn.Module, Params, Sequence[int]],
    parent: tuple[nn.Module, Params, Sequence[int]],
    *,
    include_generators: bool = False,
) -> ModuleSize:
    """Relative FLOPs (MACs) and parameters of a pruned module vs its parent model.

    A pruned module is a narrower instance of a model class applied to smaller parameters, so its
    MACs come from `models.summarize`/`count_macs` on the module's own shapes and its parameters
    from `count_params`. Each params tree is checked against its model's abstract parameter count.
    MwT mask generators are excluded from both MACs and parameters unless `include_generators`
    (modules drop them; METHODS §4.6).

    Args:
        module: `(model, params, input_shape)` of the pruned module.
        parent: `(model, params, input_shape)` of the standard (parent) model.
        include_generators: count generator MACs and parameters too.

    Returns:
        A `ModuleSize`.

    Raises:
        ValueError: for a malformed triple, params that do not belong to their model, different
        input shapes, or a parent with zero MACs. TypeError: if a model is not a Flax module.

    References:
        METHODS §10.9, §3.9.

    Example:
        >>> parent = models.get_model("mlp", depth=1)
        >>> module = models.get_model("mlp", depth=1, hidden=7)
        >>> def init(m):
        ...     x = jnp.zeros((1, 28, 28, 1))
        ...     return m.init({"params": jax.random.key(0)}, x)["params"]
        >>> s = module_flops_and_params((module, init(module), (28, 28, 1)),
        ...                             (parent, init(parent), (28, 28, 1)))
        >>> s.flops, s.parent_flops, round(s.relative_params, 4)
        (5558, 38906, 0.1431)
    """
    flops, params, shape = _size(module, "module", include_generators)
    parent_flops, parent_params, parent_shape = _size(parent, "parent", include_generators)
    if shape != parent_shape:
        raise ValueError(f"module input_shape {shape} differs from the parent's {parent_shape}")
    if parent_flops == 0 or parent_params == 0:
        raise ValueError("parent has no MACs or no parameters")
    return ModuleSize(
        flops, params, parent_flops, parent_params, flops / parent_flops, params / parent_params
    )


# ----------------------------------------------------------------------------- Pan & Rajan JI


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


# ----------------------------------------------------------------------------- accuracy


def accuracy_from_sums(correct: ArrayLike, count: ArrayLike) -> float:
    """Top-1 accuracy from the eval step's summed `correct` and `count` (METHODS §10.6).

    Args:
        correct: scalar int, correctly classified valid examples.
        count: scalar int, valid examples.

    Returns:
        `correct / count`.

    Raises:
        ValueError: if `count` is 0 or `correct` is outside `[0, count]`.

    Example:
        >>> accuracy_from_sums(np.int32(45), 50)
        0.9
    """
    correct, count = int(np.asarray(correct)), int(np.asarray(count))
    if count <= 0:
        raise ValueError(f"count={count} must be positive: no examples were evaluated")
    if not 0 <= correct <= count:
        raise ValueError(f"correct={correct} must lie in [0, count={count}]")
    return correct / count


def per_class_accuracy(
    per_class_correct: ArrayLike, per_class_count: ArrayLike, *, allow_empty: bool = False
) -> np.ndarray:
    """Accuracy of every class from the eval step's per-class sums.

    Args:
        per_class_correct: `[N]` int, correct examples of each class.
        per_class_count: `[N]` int, examples of each class.
        allow_empty: give classes with no examples NaN instead of raising (e.g. a sub-task test
            set that holds only the classes of T).

    Returns:
        `[N]` float64 accuracies.

    Raises:
        ValueError: for mismatched shapes, negative or inconsistent counts, or an empty class
        unless `allow_empty`.

    Example:
        >>> per_class_accuracy(np.array([9, 5]), np.array([10, 10])).tolist()
        [0.9, 0.5]
    """
    correct = np.asarray(per_class_correct)
    count = np.asarray(per_class_count)
    if correct.ndim != 1 or correct.shape != count.shape:
        raise ValueError(
            f"per_class_correct {correct.shape} and per_class_count {count.shape} must be "
            "[num_classes] vectors of the same shape"
        )
    if np.any(count < 0) or np.any(correct < 0) or np.any(correct > count):
        raise ValueError("per-class sums must satisfy 0 <= per_class_correct <= per_class_count")
    empty = count == 0
    if empty.any() and not allow_empty:
        raise ValueError(
            f"classes {np.flatnonzero(empty).tolist()} have no examples (empty classes); "
            "pass allow_empty=True to get NaN for them"
        )
    safe = np.where(empty, 1, count)
    return np.where(empty, math.nan, correct / safe)
