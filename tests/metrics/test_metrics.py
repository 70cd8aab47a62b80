"""Tests for modjax.metrics: hand-computed cases, naive references and input errors."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import metrics, models

# 3 classes × 6 kernels, used throughout.
U3 = np.array(
    [
        [1, 1, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [1, 0, 0, 0, 0, 1],
    ],
    bool,
)


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


# ----------------------------------------------------------------------------- kernel retention


def test_kernel_retention_hand():
    krr = metrics.kernel_retention(U3)
    np.testing.assert_allclose(krr.per_class, [3 / 6, 2 / 6, 2 / 6])
    assert krr.mean == pytest.approx(7 / 18)


def test_task_kernel_retention_hand():
    assert metrics.task_kernel_retention(U3, [0, 1]) == pytest.approx(4 / 6)  # {0, 1, 2, 3}
    assert metrics.task_kernel_retention(U3, [2, 1]) == pytest.approx(4 / 6)  # {0, 2, 3, 5}
    assert metrics.task_kernel_retention(U3, [0, 1, 2]) == pytest.approx(5 / 6)
    assert metrics.task_kernel_retention(U3, [1]) == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="distinct"):
        metrics.task_kernel_retention(U3, [1, 1])
    with pytest.raises(ValueError, match=r"lie in \[0, 3\)"):
        metrics.task_kernel_retention(U3, [0, 3])


def test_composition_kernel_retention_hand_and_totals():
    assert metrics.RESCNN_TOTAL_KERNELS == models.count_conv_kernels(models.get_model("rescnn"))
    assert metrics.RESCNN_TOTAL_KERNELS_PARITY == 4228
    counts = [1000, 1144]
    assert metrics.composition_kernel_retention(counts, metrics.RESCNN_TOTAL_KERNELS) == 0.5
    parity = metrics.composition_kernel_retention(counts, metrics.RESCNN_TOTAL_KERNELS_PARITY)
    assert parity == pytest.approx(2144 / 4228)
    # Shared kernels count once per module, so the rate can exceed 1.
    assert metrics.composition_kernel_retention([4000, 4000], 4224) == pytest.approx(8000 / 4224)
    with pytest.raises(ValueError, match="must lie in"):
        metrics.composition_kernel_retention([5000], 4288)
    with pytest.raises(ValueError, match="total_kernels"):
        metrics.composition_kernel_retention([1], 0)


def test_kernel_retention_errors():
    with pytest.raises(TypeError, match="boolean"):
        metrics.kernel_retention(U3.astype(np.int32))
    with pytest.raises(ValueError, match="2 dimensions"):
        metrics.kernel_retention(U3[0])


# ----------------------------------------------------------------------------- weight retention


def _params_and_keep():
    """conv 1×1 2→3 (+BN), fc 3→2; the module keeps conv outputs {0, 2} and both classes."""
    params = {
        "conv": {"kernel": np.zeros((1, 1, 2, 3)), "bias": np.zeros(3)},
        "bn": {"scale": np.zeros(3), "bias": np.zeros(3)},
        "fc": {"kernel": np.zeros((3, 2)), "bias": np.zeros(2)},
        "conv_g": {"generator": {"fc1": {"kernel": np.zeros((2, 3))}}},
    }
    out = np.array([1, 0, 1], bool)
    keep = {
        "conv": {"kernel": np.broadcast_to(out, (1, 1, 2, 3)).copy(), "bias": out},
        "bn": {"scale": out, "bias": out},
        "fc": {"kernel": np.repeat(out[:, None], 2, axis=1), "bias": np.ones(2, bool)},
        "conv_g": {"generator": {"fc1": {"kernel": np.zeros((2, 3), bool)}}},
    }
    return params, keep


def test_weight_retention_hand():
    params, keep = _params_and_keep()
    # kept: conv kernel 4/6, conv bias 2/3, bn 4/6, fc kernel 4/6, fc bias 2/2 -> 16/23.
    assert metrics.weight_retention(keep, params) == pytest.approx(16 / 23)
    # The generator's 6 scalars (all dropped) join the denominator only on request.
    assert metrics.weight_retention(keep, params, include_generators=True) == pytest.approx(16 / 29)
    # Linear only: fc kernel 4/6 + fc bias 2/2 = 6/8 (conv, BN and the generator are ignored).
    assert metrics.linear_weight_retention(keep, params) == pytest.approx(6 / 8)
    assert metrics.linear_weight_retention(keep, params, include_generators=True) == pytest.approx(
        6 / 14
    )


def test_weight_retention_full_model_is_one():
    model = models.get_model("mlp", depth=2)
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    keep = jax.tree.map(lambda p: np.ones(p.shape, bool), params)
    assert metrics.weight_retention(keep, params) == 1.0
    assert metrics.linear_weight_retention(keep, params) == 1.0


def test_weight_retention_errors():
    params, keep = _params_and_keep()
    bad = {**keep, "fc": {**keep["fc"], "bias": np.ones(3, bool)}}
    with pytest.raises(ValueError, match=r"keep_tree\['fc'\]\['bias'\] has shape \(3,\)"):
        metrics.weight_retention(bad, params)
    bad = {**keep, "fc": {**keep["fc"], "bias": np.ones(2, np.float32)}}
    with pytest.raises(TypeError, match="must be boolean"):
        metrics.weight_retention(bad, params)
    bad = {k: v for k, v in keep.items() if k != "bn"}
    with pytest.raises(ValueError, match="tree structure"):
        metrics.weight_retention(bad, params)
    conv_only = {"conv": params["conv"]}
    with pytest.raises(ValueError, match="no Linear"):
        metrics.linear_weight_retention({"conv": keep["conv"]}, conv_only)


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


# ---------------------------------------------------------------------------- MACs and params


def _mlp(hidden):
    model = models.get_model("mlp", depth=1, hidden=hidden)
    params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
    return model, params, (28, 28, 1)


def test_module_macs_and_params_hand():
    module, parent = _mlp(7), _mlp(49)
    s = metrics.module_macs_and_params(module, parent)
    # MACs: 784·h + h·10; params: 784·h + h + h·10 + 10.
    assert (s.macs, s.parent_macs) == (784 * 7 + 70, 784 * 49 + 490)
    assert (s.params, s.parent_params) == (5575, 38965)
    assert s.relative_macs == pytest.approx(5558 / 38906)
    assert s.relative_params == pytest.approx(5575 / 38965)


def test_module_macs_and_params_errors():
    module, parent = _mlp(7), _mlp(49)
    with pytest.raises(ValueError, match="module params have 38965 scalars"):
        metrics.module_macs_and_params((module[0], parent[1], module[2]), parent)
    with pytest.raises(ValueError, match="differs from the parent"):
        small = models.get_model("mlp", depth=1, hidden=7)
        p = small.init(jax.random.key(0), jnp.zeros((1, 14, 14, 1)))["params"]
        metrics.module_macs_and_params((small, p, (14, 14, 1)), parent)
    with pytest.raises(ValueError, match="triple"):
        metrics.module_macs_and_params(module[:2], parent)


# ----------------------------------------------------------------------------- Pan & Rajan JI


def test_value_vs_edge_jaccard_hand():
    a = {"d0": np.array([[0.0, 0.5], [0.0, 0.0]])}
    b = {"d0": np.array([[0.0, 0.0], [0.0, 0.5]])}
    # Value-based: sets {0, .5} and {0, .5}: |∩| = 2; lengths 4 + 4 -> 2 / 6.
    assert metrics.value_jaccard(a, b) == pytest.approx(1 / 3)
    # Position-based: non-zero edges (0,1) vs (1,1) are disjoint.
    assert metrics.edge_jaccard(a, b) == 0.0
    c = {"d0": np.array([[0.0, 0.7], [0.0, 0.5]])}
    assert metrics.edge_jaccard(a, c) == pytest.approx(1 / 2)
    # value: {0, .5} ∩ {0, .5, .7} = 2; 4 + 4 - 2 = 6.
    assert metrics.value_jaccard(a, c) == pytest.approx(2 / 6)
    assert math.isnan(metrics.edge_jaccard({"d0": np.zeros(2)}, {"d0": np.zeros(2)}))


def test_jaccard_weights_errors():
    with pytest.raises(ValueError, match="weights_a has no weights"):
        metrics.value_jaccard([], [np.ones(2)])
    with pytest.raises(ValueError, match="shape"):
        metrics.edge_jaccard([np.ones(2)], [np.ones(3)])


# ----------------------------------------------------------------------------- accuracy


def test_accuracy_helpers():
    assert metrics.accuracy_from_sums(jnp.int32(45), jnp.int32(50)) == 0.9
    np.testing.assert_allclose(
        metrics.per_class_accuracy(np.array([9, 5, 0]), np.array([10, 10, 4])), [0.9, 0.5, 0.0]
    )
    acc = metrics.per_class_accuracy(np.array([3, 0]), np.array([4, 0]), allow_empty=True)
    assert acc[0] == 0.75 and math.isnan(acc[1])


def test_accuracy_errors():
    with pytest.raises(ValueError, match="count=0 must be positive"):
        metrics.accuracy_from_sums(0, 0)
    with pytest.raises(ValueError, match="correct=5 must lie"):
        metrics.accuracy_from_sums(5, 4)
    with pytest.raises(ValueError, match=r"classes \[1\] have no examples"):
        metrics.per_class_accuracy(np.array([3, 0]), np.array([4, 0]))
    with pytest.raises(ValueError, match="same shape"):
        metrics.per_class_accuracy(np.array([3, 0]), np.array([4, 0, 1]))
    with pytest.raises(ValueError, match="per_class_correct <= per_class_count"):
        metrics.per_class_accuracy(np.array([5]), np.array([4]))
