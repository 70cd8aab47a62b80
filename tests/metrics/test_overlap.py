"""Tests for modjax.metrics overlap (MODA and Jaccard) and mean pairwise overlap."""

import math

import jax
import numpy as np
import pytest

from modjax import metrics
from tests.metrics._cases import U3

# ----------------------------------------------------------------------------- overlap


KEEP_A = {"w": np.array([[1, 1, 0], [0, 0, 0]], bool), "b": np.array([1, 0, 0], bool)}
KEEP_B = {"w": np.array([[0, 1, 1], [0, 0, 0]], bool), "b": np.array([1, 1, 0], bool)}


def test_overlap_hand():
    o = metrics.overlap(KEEP_A, KEEP_B)
    # ∩ = w[0, 1], b[0] -> 2; ∪ = w[0, 0:3], b[0:2] -> 5; the full model has 9 scalars.
    assert (o.intersection, o.union, o.total) == (2, 5, 9)
    assert o.moda == pytest.approx(2 / 9)
    assert o.jaccard == pytest.approx(2 / 5)


def test_moda_overlap_is_not_jaccard():
    # Identical modules: Jaccard 1, but MODA's overlap is the module's size (3 of 9).
    o = metrics.overlap(KEEP_A, KEEP_A)
    assert o.jaccard == 1.0
    assert o.moda == pytest.approx(3 / 9)
    # MODA ≤ Jaccard, with equality only when the union is the whole model.
    full = jax.tree.map(lambda a: np.ones_like(a), KEEP_A)
    o = metrics.overlap(KEEP_A, full)
    assert o.moda == o.jaccard == pytest.approx(3 / 9)
    # Two empty modules: MODA 0, Jaccard undefined.
    empty = jax.tree.map(np.zeros_like, KEEP_A)
    o = metrics.overlap(empty, empty)
    assert o.moda == 0.0 and math.isnan(o.jaccard)


def test_overlap_errors():
    with pytest.raises(ValueError, match=r"keep_b\['w'\] has shape"):
        metrics.overlap(KEEP_A, {**KEEP_B, "w": KEEP_B["w"][:1]})
    with pytest.raises(TypeError, match="must be boolean"):
        metrics.overlap(KEEP_A, {**KEEP_B, "b": KEEP_B["b"].astype(np.int8)})
    with pytest.raises(ValueError, match="tree structure"):
        metrics.overlap(KEEP_A, {"w": KEEP_B["w"]})


def _module_trees(rows):
    return [{"w": np.array(r, bool)} for r in rows]


def test_mean_pairwise_overlap_hand():
    r = metrics.mean_pairwise_overlap(_module_trees(U3.tolist()))
    assert r.pairs.tolist() == [[0, 1], [0, 2], [1, 2]]
    # (0,1): ∩ 1, ∪ 4; (0,2): ∩ 1, ∪ 4; (1,2): ∩ 0, ∪ 4; 6 scalars.
    np.testing.assert_allclose(r.per_pair_moda, [1 / 6, 1 / 6, 0])
    np.testing.assert_allclose(r.per_pair_jaccard, [1 / 4, 1 / 4, 0])
    assert r.moda == pytest.approx(1 / 9)
    assert r.jaccard == pytest.approx(1 / 6)
    assert r.empty_union_pairs == 0
    r = metrics.mean_pairwise_overlap(_module_trees(U3.tolist()), pairs=[(2, 0)])
    assert r.moda == pytest.approx(1 / 6) and r.jaccard == pytest.approx(1 / 4)


def test_mean_pairwise_overlap_empty_union_excluded():
    r = metrics.mean_pairwise_overlap(_module_trees([[0, 0], [0, 0], [1, 0]]))
    # (0,1) has an empty union; (0,2) and (1,2) have J = 0.
    assert r.empty_union_pairs == 1
    assert r.jaccard == 0.0 and r.moda == 0.0


def test_mean_pairwise_overlap_sampling():
    rng = np.random.default_rng(0)
    trees = _module_trees(rng.random((30, 20)) < 0.4)  # 435 pairs > 357
    r = metrics.mean_pairwise_overlap(trees)
    assert r.pairs.shape == (357, 2)
    assert len({tuple(p) for p in r.pairs.tolist()}) == 357
    assert np.all(r.pairs[:, 0] < r.pairs[:, 1])
    np.testing.assert_array_equal(r.pairs, metrics.mean_pairwise_overlap(trees).pairs)
    assert not np.array_equal(r.pairs, metrics.mean_pairwise_overlap(trees, seed=1).pairs)
    assert metrics.mean_pairwise_overlap(trees, max_pairs=None).pairs.shape == (435, 2)
    assert metrics.mean_pairwise_overlap(trees[:10]).pairs.shape == (45, 2)
    # Each sampled value matches the single-pair function.
    i, j = r.pairs[5]
    assert r.per_pair_jaccard[5] == metrics.overlap(trees[i], trees[j]).jaccard


def test_mean_pairwise_overlap_errors():
    with pytest.raises(ValueError, match="at least 2"):
        metrics.mean_pairwise_overlap([KEEP_A])
    with pytest.raises(ValueError, match="pairs must be"):
        metrics.mean_pairwise_overlap([KEEP_A, KEEP_B], pairs=[(0, 0)])
    with pytest.raises(ValueError, match="max_pairs"):
        metrics.mean_pairwise_overlap([KEEP_A, KEEP_B], max_pairs=0)
