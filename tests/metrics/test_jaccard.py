"""Tests for modjax.metrics Jaccard cohesion and coupling, per class and per batch, against naive loops."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import metrics
from tests.metrics._cases import U3

# ----------------------------------------------------------------------------- references


def _jaccard(a, b):
    union = np.count_nonzero(a | b)
    return None if union == 0 else np.count_nonzero(a & b) / union


def _naive_cohesion(masks, labels, U):
    """Loop over pairs i < j of each class; returns (per_class, defined, empty)."""
    per_class, defined, empty = [], [], []
    for c in range(U.shape[0]):
        rows = [m & U[c] for m, y in zip(masks, labels) if y == c]
        values = [_jaccard(a, b) for a, b in itertools.combinations(rows, 2)]
        ok = [v for v in values if v is not None]
        per_class.append(np.mean(ok) if ok else math.nan)
        defined.append(len(ok))
        empty.append(len(values) - len(ok))
    return np.array(per_class), np.array(defined), np.array(empty)


def _naive_batch(masks, labels, where):
    same, diff, empty = [], [], 0
    valid = np.flatnonzero(where)
    for i, j in itertools.combinations(valid, 2):
        v = _jaccard(masks[i], masks[j])
        if v is None:
            empty += 1
        else:
            (same if labels[i] == labels[j] else diff).append(v)
    rate = masks[valid].mean() if len(valid) else 0.0
    return (np.mean(same) if same else 0.0), (np.mean(diff) if diff else 0.0), rate, empty


# ----------------------------------------------------------------------------- cohesion, coupling


# Rows grouped by class for readability; the labels interleave them below.
_C0 = [[1, 1, 0, 1, 0, 0], [1, 0, 1, 0, 1, 0], [1, 1, 1, 1, 1, 1]]
_C1 = [[0, 0, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]]
_C2 = [[1, 0, 0, 0, 0, 1], [1, 0, 0, 0, 0, 0]]


def _hand_samples():
    order = [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2), (1, 2)]
    groups = (_C0, _C1, _C2)
    masks = np.array([groups[c][i] for c, i in order], bool)
    labels = np.array([c for c, _ in order], np.int32)
    return masks, labels


def test_jaccard_cohesion_hand():
    masks, labels = _hand_samples()
    r = metrics.jaccard_cohesion(masks, labels, U3)
    # Class 0 AND u0: {0,1}, {0,2}, {0,1,2} -> J = 1/3, 2/3, 2/3.
    # Class 1 AND u1: {2,3}, {}, {} -> J = 0, 0, and one empty union (excluded).
    # Class 2 AND u2: {0,5}, {0} -> J = 1/2.
    np.testing.assert_allclose(r.per_class, [5 / 9, 0.0, 1 / 2])
    np.testing.assert_array_equal(r.pair_counts, [3, 2, 1])
    np.testing.assert_array_equal(r.empty_union_pairs, [0, 1, 0])
    assert r.mean == pytest.approx(19 / 54)
    for block_size in (1, 2, 3):
        rb = metrics.jaccard_cohesion(masks, labels, U3, block_size=block_size)
        np.testing.assert_allclose(rb.per_class, r.per_class, rtol=1e-12)


def test_jaccard_cohesion_singleton_class_undefined():
    masks = np.array([[1, 0], [1, 1], [0, 1]], bool)
    r = metrics.jaccard_cohesion(masks, np.array([0, 0, 1]), np.ones((2, 2), bool))
    assert r.per_class[0] == pytest.approx(0.5) and math.isnan(r.per_class[1])
    assert r.mean == pytest.approx(0.5)
    np.testing.assert_array_equal(r.pair_counts, [1, 0])


@pytest.mark.parametrize("seed", [0, 1])
def test_jaccard_cohesion_blocked_equals_naive(seed):
    rng = np.random.default_rng(seed)
    n, num_classes, k = 41, 3, 13
    masks = rng.random((n, k)) < 0.25
    masks[:4] = False  # guarantees empty unions
    labels = rng.integers(0, num_classes, n)
    labels[:num_classes] = np.arange(num_classes)
    U = rng.random((num_classes, k)) < 0.5
    U[1, :] = False
    U[1, :2] = True  # a small module: many empty AND-ed masks
    per_class, defined, empty = _naive_cohesion(masks, labels, U)
    assert empty.sum() > 0
    for block_size in (1, 4, 7, 16, 1024):
        r = metrics.jaccard_cohesion(masks, labels, U, block_size=block_size)
        np.testing.assert_allclose(r.per_class, per_class, rtol=1e-12, equal_nan=True)
        np.testing.assert_array_equal(r.pair_counts, defined)
        np.testing.assert_array_equal(r.empty_union_pairs, empty)
        assert r.mean == pytest.approx(np.nanmean(per_class), rel=1e-12)


def test_jaccard_cohesion_errors():
    masks, labels = _hand_samples()
    with pytest.raises(ValueError, match="K=5 kernels but U has K=6"):
        metrics.jaccard_cohesion(masks[:, :5], labels, U3)
    with pytest.raises(TypeError, match="sample_masks must be a boolean array"):
        metrics.jaccard_cohesion(masks.astype(np.float32), labels, U3)
    with pytest.raises(TypeError, match="U must be a boolean array"):
        metrics.jaccard_cohesion(masks, labels, U3.astype(np.int32))
    with pytest.raises(ValueError, match=r"classes \[2\] have no samples"):
        metrics.jaccard_cohesion(masks[labels != 2], labels[labels != 2], U3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        metrics.jaccard_cohesion(masks, np.where(labels == 2, 3, labels), U3)
    with pytest.raises(ValueError, match=r"labels must be \[8\] integers"):
        metrics.jaccard_cohesion(masks, labels[:-1], U3)
    with pytest.raises(ValueError, match="block_size=0"):
        metrics.jaccard_cohesion(masks, labels, U3, block_size=0)


def test_jaccard_coupling_hand():
    r = metrics.jaccard_coupling(U3)
    # J(0,1) = 1/4, J(0,2) = 1/4, J(1,2) = 0.
    assert r.mean == pytest.approx(1 / 6)
    np.testing.assert_allclose(r.per_pair[0, 1:], [1 / 4, 1 / 4])
    np.testing.assert_allclose(r.per_pair, r.per_pair.T, equal_nan=True)
    assert np.isnan(np.diag(r.per_pair)).all() and r.empty_union_pairs == 0
    U = np.array([[0, 0], [0, 0], [1, 1]], bool)
    r = metrics.jaccard_coupling(U)
    assert r.empty_union_pairs == 1 and r.mean == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        metrics.jaccard_coupling(U3[:1])


# ----------------------------------------------------------------------------- per-batch metrics


def test_batch_jaccard_metrics_hand():
    layer_a = jnp.array([[1, 1], [1, 0], [0, 0], [0, 1]], bool)
    layer_b = jnp.array([[0, 0], [1, 0], [0, 0], [0, 1]], bool)
    labels = jnp.array([0, 0, 1, 1])
    fn = jax.jit(metrics.batch_jaccard_metrics)
    r = fn([layer_a, layer_b], labels)
    # Rows {0,1}, {0,2}, {}, {1,3}. Same: (0,1) 1/3, (2,3) 0. Diff: (0,3) 1/3, others 0.
    assert float(r.cohesion) == pytest.approx(1 / 6)
    assert float(r.coupling) == pytest.approx(1 / 12)
    assert float(r.kernel_rate) == pytest.approx(6 / 16)
    assert (int(r.same_pairs), int(r.diff_pairs), int(r.empty_union_pairs)) == (2, 4, 0)
    # Padding out the last row: same (0,1) only; diff (0,2), (1,2) = 0.
    r = fn([layer_a, layer_b], labels, where=jnp.array([True, True, True, False]))
    assert float(r.cohesion) == pytest.approx(1 / 3) and float(r.coupling) == 0.0
    assert float(r.kernel_rate) == pytest.approx(4 / 12)
    # Two empty rows of one class: their pair is excluded and counted.
    masks = jnp.concatenate([layer_a, layer_b], axis=1).at[3].set(False)
    r = fn(masks, labels)
    assert float(r.cohesion) == pytest.approx(1 / 3)
    assert (int(r.same_pairs), int(r.empty_union_pairs)) == (1, 1)


def test_batch_jaccard_metrics_naive_and_empty_pair_sets():
    rng = np.random.default_rng(3)
    masks = rng.random((17, 9)) < 0.3
    masks[:3] = False
    labels = rng.integers(0, 4, 17)
    where = rng.random(17) < 0.8
    r = jax.jit(metrics.batch_jaccard_metrics)(masks, labels, where=where)
    cohesion, coupling, rate, empty = _naive_batch(masks, labels, where)
    np.testing.assert_allclose(
        [r.cohesion, r.coupling, r.kernel_rate], [cohesion, coupling, rate], rtol=1e-6
    )
    assert int(r.empty_union_pairs) == empty
    # Single-class batch: no different-class pairs -> coupling 0 with count 0 (METHODS §11.3).
    r = metrics.batch_jaccard_metrics(masks[3:6], np.zeros(3, np.int32))
    assert int(r.diff_pairs) == 0 and float(r.coupling) == 0.0
    # All labels distinct: no same-class pairs.
    r = metrics.batch_jaccard_metrics(masks[3:6], np.arange(3))
    assert int(r.same_pairs) == 0 and float(r.cohesion) == 0.0


def test_batch_jaccard_metrics_errors():
    masks = np.ones((4, 3), bool)
    with pytest.raises(TypeError, match="boolean"):
        metrics.batch_jaccard_metrics(masks.astype(np.float32), np.zeros(4, np.int32))
    with pytest.raises(ValueError, match=r"batch_masks\[1\] has shape \(3, 3\)"):
        metrics.batch_jaccard_metrics([masks, masks[:3]], np.zeros(4, np.int32))
    with pytest.raises(ValueError, match=r"labels has shape \(3,\)"):
        metrics.batch_jaccard_metrics(masks, np.zeros(3, np.int32))
