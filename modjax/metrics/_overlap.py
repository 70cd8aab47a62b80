"""MODA overlap and true Jaccard of modules given as parameter keep trees (METHODS §10.3)."""

import itertools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from modjax.metrics._common import _packed_keeps

_POPCOUNT = np.array([i.bit_count() for i in range(256)], np.int64)


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
