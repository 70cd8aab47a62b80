"""Tests for modjax.objectives and the O(B·D) pair statistics (METHODS §11.5)."""

import functools

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from modjax import objectives
from modjax._pairs import _naive_pair_statistics, normalize, pair_statistics

F32 = {"rtol": 1e-5, "atol": 1e-6}
F64 = {"rtol": 1e-10, "atol": 1e-10}


def _assert_sums_close(stats, s_same, s_diff, n_same, n_diff, tol):
    """s⁺ and s⁻ against the exact sums: atol is per pair, since a sum of P cosines (each in
    [-1, 1]) carries ~P rounding errors in any float32 evaluation, naive or fast."""
    np.testing.assert_allclose(
        stats.same_sum, s_same, rtol=tol["rtol"], atol=tol["atol"] * max(1, n_same)
    )
    np.testing.assert_allclose(
        stats.diff_sum, s_diff, rtol=tol["rtol"], atol=tol["atol"] * max(1, n_diff)
    )


# ----------------------------------------------------------------------------- references


def _loop_pair_stats(v, labels, where=None):
    """The obvious definition: a NumPy double loop over pairs i < j, in float64."""
    v = np.asarray(v, np.float64)
    u = v / np.maximum(np.sqrt((v * v).sum(-1, keepdims=True)), 1e-12)
    valid = np.ones(len(v), bool) if where is None else np.asarray(where)
    s_same = s_diff = 0.0
    n_same = n_diff = 0
    for i in range(len(v)):
        for j in range(i + 1, len(v)):
            if not (valid[i] and valid[j]):
                continue
            if labels[i] == labels[j]:
                s_same, n_same = s_same + u[i] @ u[j], n_same + 1
            else:
                s_diff, n_diff = s_diff + u[i] @ u[j], n_diff + 1
    return s_same, s_diff, n_same, n_diff


@functools.partial(jax.jit, static_argnames=("num_classes", "reduce"))
def _naive_terms(layers, labels, num_classes, where=None, reduce=False):
    """(1 − mean_l same, mean_l diff) from the B×B reference, with the 0-if-undefined rule."""
    vs = [objectives.reduce_activation(a) if reduce else a for a in layers]
    stats = [_naive_pair_statistics(v, labels, num_classes=num_classes, where=where) for v in vs]
    same = jnp.mean(jnp.stack([s.same_mean for s in stats]))
    diff = jnp.mean(jnp.stack([s.diff_mean for s in stats]))
    return jnp.where(stats[0].same_count > 0, 1 - same, 0), diff


def _make_case(seed, b, d, num_classes, *, labels=None, zero_rows=(), tiny_rows=(), nonneg=False):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(b, d))
    if nonneg:
        v = np.abs(v)
    for i in zero_rows:
        v[i] = 0.0
    for i in tiny_rows:
        v[i] *= 1e-14 / np.linalg.norm(v[i])  # norm below the 1e-12 floor: 0 < q_i < 1
    if labels is None:
        labels = rng.integers(0, num_classes, size=b)
    return v, np.asarray(labels, np.int32)


def _assert_grads_close(fast_grad, naive_grad, v, tol):
    """Gradients `[..., 2, B, D]` w.r.t. V, compared at the scale of each row.

    The means depend on row i only through u_i = v_i / max(‖v_i‖, 1e-12), so the exact gradient
    w.r.t. v_i is O(1 / max(‖v_i‖, 1e-12)) and so is its float rounding (for an all-zero row behind
    a ReLU, the Jacobian is exactly I / 1e-12). Rows with ‖v_i‖ < 1 are therefore multiplied by
    max(‖v_i‖, 1e-12) before the comparison at the stated tolerance; other rows are compared as is.
    """
    v = np.asarray(v, np.float64)
    scale = np.clip(np.sqrt((v * v).sum(-1, keepdims=True)), 1e-12, 1.0)
    scale = np.expand_dims(scale, -3)
    np.testing.assert_allclose(np.asarray(fast_grad) * scale, np.asarray(naive_grad) * scale, **tol)


# (name, b, d, num_classes, kwargs)
# Shapes repeat on purpose (labels are traced), so the 13 cases need 6 compiles per dtype.
CASES = [
    ("random", 10, 6, 3, {}),
    ("random_nonneg", 32, 16, 10, {"nonneg": True}),
    ("d1", 9, 1, 3, {}),
    ("n_gt_b", 6, 4, 10, {}),
    ("b1", 1, 3, 2, {"labels": [1]}),
    ("b2_same", 2, 3, 2, {"labels": [1, 1]}),
    ("b2_diff", 2, 3, 2, {"labels": [0, 1]}),
    ("single_class", 10, 6, 3, {"labels": [2] * 10}),
    ("all_distinct", 6, 4, 10, {"labels": [4, 0, 7, 2, 5, 9]}),
    ("singletons_and_absent", 6, 4, 10, {"labels": [0, 0, 3, 5, 5, 1]}),
    ("zero_rows", 10, 6, 3, {"zero_rows": (0, 4, 5), "nonneg": True}),
    ("tiny_rows", 10, 6, 3, {"tiny_rows": (1, 7)}),
    ("all_zero", 6, 4, 10, {"zero_rows": range(6)}),
]


def _fast_and_naive_unjitted(v, labels, num_classes):
    out = []
    for fn in (pair_statistics, _naive_pair_statistics):
        stats = lambda v, fn=fn: fn(v, labels, num_classes=num_classes)
        means = lambda v, stats=stats: (jnp.stack(stats(v)[:2]), stats(v))
        grad, stat = jax.jacrev(means, has_aux=True)(v)
        out.append((stat, grad))
    return out


# `(stats, d[same_mean, diff_mean]/dV)` of the fast and the naive form in one compile; the
# vmapped version checks many seeded batches of one shape per compile.
_fast_and_naive = jax.jit(_fast_and_naive_unjitted, static_argnames="num_classes")
_fast_and_naive_many = jax.jit(
    jax.vmap(_fast_and_naive_unjitted, in_axes=(0, 0, None)), static_argnames="num_classes"
)


# ----------------------------------------------------------------------------- pair statistics


@pytest.mark.parametrize("name,b,d,num_classes,kwargs", CASES, ids=[c[0] for c in CASES])
def test_pair_statistics_match_naive_float32(name, b, d, num_classes, kwargs):
    v, labels = _make_case(0, b, d, num_classes, **kwargs)
    v32 = jnp.asarray(v, jnp.float32)
    (fast, fast_grad), (naive, naive_grad) = _fast_and_naive(v32, labels, num_classes)
    s_same, s_diff, n_same, n_diff = _loop_pair_stats(np.asarray(v32), labels)
    assert (int(fast.same_count), int(fast.diff_count)) == (n_same, n_diff)
    assert (int(naive.same_count), int(naive.diff_count)) == (n_same, n_diff)
    _assert_sums_close(fast, s_same, s_diff, n_same, n_diff, F32)
    np.testing.assert_allclose(fast.same_mean, naive.same_mean, **F32)
    np.testing.assert_allclose(fast.diff_mean, naive.diff_mean, **F32)
    assert fast.same_mean.dtype == jnp.float32
    assert np.all(np.isfinite(fast_grad))
    _assert_grads_close(fast_grad, naive_grad, v32, F32)


@pytest.mark.parametrize("name,b,d,num_classes,kwargs", CASES, ids=[c[0] for c in CASES])
def test_pair_statistics_match_naive_float64(name, b, d, num_classes, kwargs):
    v, labels = _make_case(1, b, d, num_classes, **kwargs)
    with jax.enable_x64(True):
        v64 = jnp.asarray(v, jnp.float64)
        (fast, fast_grad), (naive, naive_grad) = _fast_and_naive(v64, labels, num_classes)
        assert fast.same_sum.dtype == jnp.float64
    s_same, s_diff, n_same, n_diff = _loop_pair_stats(v, labels)
    assert (int(fast.same_count), int(fast.diff_count)) == (n_same, n_diff)
    _assert_sums_close(fast, s_same, s_diff, n_same, n_diff, F64)
    np.testing.assert_allclose(fast.same_mean, naive.same_mean, **F64)
    np.testing.assert_allclose(fast.diff_mean, naive.diff_mean, **F64)
    _assert_grads_close(fast_grad, naive_grad, v, F64)


# (b, d, num_classes): the seeds vary labels, values, signs and zero rows within each shape.
GRID = [(1, 3, 2), (2, 1, 1), (3, 2, 7), (8, 5, 3), (13, 1, 2), (16, 8, 30), (24, 6, 4)]


@pytest.mark.parametrize("b,d,num_classes", GRID)
def test_pair_statistics_match_naive_seeded(b, d, num_classes, num_seeds=40):
    rng = np.random.default_rng([b, d, num_classes])
    v = rng.normal(size=(num_seeds, b, d))
    v[: num_seeds // 2] = np.abs(v[: num_seeds // 2])  # mask-like / post-ReLU half
    row = rng.uniform(size=(num_seeds, b, 1))
    v *= row > 0.2  # ~20% all-zero rows
    norm = np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-30)
    v *= np.where(row > 0.9, 1e-14 / norm, 1.0)  # ~10% rows with norm 1e-14 < 1e-12
    v = v.astype(np.float32)
    labels = rng.integers(0, rng.integers(1, num_classes + 1, size=(num_seeds, 1)), (num_seeds, b))
    labels = labels.astype(np.int32)  # per seed, a random number of classes actually used
    (fast, fast_grad), (naive, naive_grad) = _fast_and_naive_many(v, labels, num_classes)
    for k in range(num_seeds):
        s_same, s_diff, n_same, n_diff = _loop_pair_stats(v[k], labels[k])
        assert (int(fast.same_count[k]), int(fast.diff_count[k])) == (n_same, n_diff)
        stats_k = jax.tree.map(lambda x, k=k: x[k], fast)
        _assert_sums_close(stats_k, s_same, s_diff, n_same, n_diff, F32)
    np.testing.assert_allclose(fast.same_mean, naive.same_mean, **F32)
    np.testing.assert_allclose(fast.diff_mean, naive.diff_mean, **F32)
    _assert_grads_close(fast_grad, naive_grad, v, F32)


@hypothesis.settings(max_examples=5, deadline=None, derandomize=True)
@hypothesis.given(
    b=st.integers(1, 40),
    d=st.integers(1, 12),
    num_classes=st.integers(1, 50),
    seed=st.integers(0, 2**16),
)
def test_pair_statistics_match_naive_random_shapes(b, d, num_classes, seed):
    v, labels = _make_case(seed, b, d, num_classes, zero_rows=range(0, b, 5), nonneg=seed % 2)
    v32 = jnp.asarray(v, jnp.float32)
    (fast, fast_grad), (naive, naive_grad) = _fast_and_naive(v32, labels, num_classes)
    s_same, s_diff, n_same, n_diff = _loop_pair_stats(np.asarray(v32), labels)
    assert (int(fast.same_count), int(fast.diff_count)) == (n_same, n_diff)
    _assert_sums_close(fast, s_same, s_diff, n_same, n_diff, F32)
    chex.assert_trees_all_close(fast, naive, **F32)
    _assert_grads_close(fast_grad, naive_grad, v32, F32)


def test_pair_statistics_where_equals_dropping_rows():
    v, labels = _make_case(3, 12, 5, 4, zero_rows=(2,))
    where = np.array([1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0], bool)
    v[~where] = np.nan  # padding may hold anything, labels included
    labels = np.where(where, labels, 7).astype(np.int32)
    stats_fn = jax.jit(
        jax.value_and_grad(lambda v, y, w: pair_statistics(v, y, num_classes=4, where=w).same_mean)
    )
    masked, masked_grad = stats_fn(jnp.asarray(v, jnp.float32), labels, where)
    kept, kept_grad = stats_fn(jnp.asarray(v[where], jnp.float32), labels[where], None)
    np.testing.assert_allclose(masked, kept, **F32)
    np.testing.assert_allclose(masked_grad[where], kept_grad, **F32)
    assert np.all(np.asarray(masked_grad)[~where] == 0)
    full = jax.jit(lambda v, y, w: pair_statistics(v, y, num_classes=4, where=w))(v, labels, where)
    s_same, s_diff, n_same, n_diff = _loop_pair_stats(np.nan_to_num(v), labels, where)
    assert (int(full.same_count), int(full.diff_count)) == (n_same, n_diff)
    _assert_sums_close(full, s_same, s_diff, n_same, n_diff, F32)


def test_normalize_zero_row_has_finite_gradient():
    v = jnp.array([[0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(normalize(v), [[0.0, 0.0], [0.6, 0.8]], **F32)
    grad = jax.grad(lambda v: jnp.sum(normalize(v) * jnp.array([[1.0, 2.0], [1.0, 2.0]])))(v)
    # Below the floor the denominator is the constant 1e-12: du/dv = I / 1e-12 (PyTorch's value).
    np.testing.assert_allclose(grad[0], [1e12, 2e12], rtol=1e-6)
    assert np.all(np.isfinite(grad))


# ----------------------------------------------------------------------------- terms


def _mwt_inputs(seed, b=12, num_classes=4, widths=(3, 5)):
    rng = np.random.default_rng(seed)
    masks = {
        f"conv_{i}/mask": jnp.asarray(np.maximum(rng.uniform(-0.3, 1, (b, w)), 0), jnp.float32)
        for i, w in enumerate(widths)
    }
    acts = {
        f"conv_{i}": jnp.asarray(rng.uniform(0, 1, (b, 4, 4, w)), jnp.float32)
        for i, w in enumerate(widths)
    }
    acts = {**acts, **masks, "fc": jnp.asarray(np.maximum(rng.normal(size=(b, 6)), 0), jnp.float32)}
    logits = jnp.asarray(rng.normal(size=(b, num_classes)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, num_classes, b), jnp.int32)
    return logits, acts, labels


def test_terms_match_naive_values_and_gradients():
    num_classes = 4
    _, acts, labels = _mwt_inputs(0, num_classes=num_classes)
    masks = [v for k, v in acts.items() if k.endswith("/mask")]
    tracked = [v for k, v in acts.items() if not k.endswith("/mask")]

    def fast(masks, tracked):
        kw = {"labels": labels, "num_classes": num_classes}
        return jnp.stack(
            [
                objectives.cohesion(masks, **kw),
                objectives.coupling(masks, **kw),
                objectives.affinity(tracked, **kw),
                objectives.dispersion(tracked, **kw),
            ]
        )

    def naive(masks, tracked):
        return jnp.stack(
            [
                *_naive_terms(masks, labels, num_classes=num_classes),
                *_naive_terms(tracked, labels, num_classes=num_classes, reduce=True),
            ]
        )

    chex.assert_trees_all_close(
        jax.jit(fast)(masks, tracked), jax.jit(naive)(masks, tracked), **F32
    )
    chex.assert_trees_all_close(
        jax.jit(jax.jacrev(fast, (0, 1)))(masks, tracked),
        jax.jit(jax.jacrev(naive, (0, 1)))(masks, tracked),
        **F32,
    )


def test_mwt_objective_value_and_keys():
    logits, acts, labels = _mwt_inputs(1)
    loss, terms = jax.jit(objectives.mwt_objective(num_classes=4))(logits, acts, labels)
    assert set(terms) == {
        "ce",
        "cohesion",
        "cohesion_defined",
        "coupling",
        "coupling_defined",
        "kernel_rate",
        "mask_mean",
    }
    masks = [v for k, v in acts.items() if k.endswith("/mask")]
    coh, cou = _naive_terms(masks, labels, num_classes=4)
    ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    np.testing.assert_allclose(terms["ce"], ce, **F32)
    np.testing.assert_allclose(terms["cohesion"], coh, **F32)
    np.testing.assert_allclose(terms["coupling"], cou, **F32)
    np.testing.assert_allclose(loss, ce + 0.5 * coh + 1.5 * cou, **F32)
    rate = np.mean([np.mean(np.asarray(m) > 0) for m in masks])
    np.testing.assert_allclose(terms["kernel_rate"], rate, **F32)
    np.testing.assert_allclose(terms["mask_mean"], np.mean([np.mean(m) for m in masks]), **F32)
    assert float(terms["cohesion_defined"]) == float(terms["coupling_defined"]) == 1.0


def test_moda_objective_value_keys_and_conv_reduction():
    logits, acts, labels = _mwt_inputs(2)
    loss, terms = jax.jit(objectives.moda_objective(num_classes=4))(logits, acts, labels)
    assert set(terms) == {
        "ce",
        "affinity",
        "affinity_defined",
        "dispersion",
        "dispersion_defined",
        "compactness",
    }
    tracked = {k: v for k, v in acts.items() if not k.endswith("/mask")}
    # §5.1: a conv map [B, H, W, C] becomes mean_{h,w} |a|; dense [B, n] is used as is.
    reduced = [
        np.abs(np.asarray(a)).mean((1, 2)) if a.ndim == 4 else np.asarray(a)
        for a in tracked.values()
    ]
    for a, r in zip(tracked.values(), reduced, strict=True):
        np.testing.assert_allclose(jax.jit(objectives.reduce_activation)(a), r, **F32)
    aff, dis = _naive_terms([jnp.asarray(r) for r in reduced], labels, num_classes=4)
    comp = np.mean([np.abs(r).sum() / r.size for r in reduced])
    np.testing.assert_allclose(terms["affinity"], aff, **F32)
    np.testing.assert_allclose(terms["dispersion"], dis, **F32)
    np.testing.assert_allclose(terms["compactness"], comp, **F32)
    np.testing.assert_allclose(loss, terms["ce"] + aff + dis + 0.3 * comp, **F32)


def test_undefined_terms_are_zero_with_zero_gradient():
    """Convention (METHODS §11.3): an empty pair set makes a term 0 (no loss, zero gradient), and
    its `*_defined` flag is 0 so that logged epoch means exclude the batch."""
    logits, acts, _ = _mwt_inputs(3, b=5, num_classes=5)
    objective = jax.jit(objectives.mwt_objective(num_classes=5))
    # (d cohesion / d acts, d coupling / d acts) in one compile.
    term_grads = jax.jit(
        jax.jacrev(lambda a, y: [objective(logits, a, y)[1][k] for k in ("cohesion", "coupling")])
    )
    # All labels distinct: no same-class pair, so cohesion is 0 (not 1 - 0).
    distinct = jnp.array([3, 0, 4, 1, 2], jnp.int32)
    _, terms = objective(logits, acts, distinct)
    assert float(terms["cohesion"]) == 0.0 and float(terms["cohesion_defined"]) == 0.0
    assert float(terms["coupling_defined"]) == 1.0
    chex.assert_trees_all_equal(term_grads(acts, distinct)[0], jax.tree.map(jnp.zeros_like, acts))
    # A single-class batch: no different-class pair, so coupling is 0.
    single = jnp.full((5,), 2, jnp.int32)
    _, terms = objective(logits, acts, single)
    assert float(terms["coupling"]) == 0.0 and float(terms["coupling_defined"]) == 0.0
    assert float(terms["cohesion_defined"]) == 1.0
    chex.assert_trees_all_equal(term_grads(acts, single)[1], jax.tree.map(jnp.zeros_like, acts))
    # B = 1: neither is defined; all rows masked out: nothing is defined, everything finite.
    one = jax.tree.map(lambda x: x[:1], acts)
    _, terms = objective(logits[:1], one, single[:1])
    assert [float(terms[k]) for k in ("cohesion", "coupling")] == [0.0, 0.0]
    none = jnp.zeros((5,), bool)
    loss, terms = objective(logits, acts, single, where=none)
    assert float(loss) == 0.0 and all(float(v) == 0.0 for v in terms.values())
    grads = jax.jit(jax.grad(lambda lg, a: objective(lg, a, single, where=none)[0], (0, 1)))(
        logits, acts
    )
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads))


def _value_and_grads(objective, logits, acts, labels, where=None):
    fn = jax.value_and_grad(
        lambda lg, a: objective(lg, a, labels, where=where), (0, 1), has_aux=True
    )
    return jax.jit(fn)(logits, acts)


def _all_terms(num_classes):
    """Every MwT and MODA term in one objective (one compile per test instead of two)."""
    kw = {"num_classes": num_classes}
    return objectives.combine(
        ce=objectives.Term(objectives.ce_term(**kw), 1.0),
        cohesion=objectives.Term(objectives.cohesion_term(**kw), 0.5),
        coupling=objectives.Term(objectives.coupling_term(**kw), 1.5),
        kernel_rate=objectives.Term(objectives.kernel_rate_term(), 0.0),
        affinity=objectives.Term(objectives.affinity_term(**kw), 1.0),
        dispersion=objectives.Term(objectives.dispersion_term(**kw), 1.0),
        compactness=objectives.Term(objectives.compactness_term(), 0.3),
    )


def test_batch_permutation_changes_nothing():
    logits, acts, labels = _mwt_inputs(4)
    objective = _all_terms(num_classes=4)
    perm = np.random.default_rng(0).permutation(len(labels))
    (loss, terms), grads = _value_and_grads(objective, logits, acts, labels)
    take = lambda x: x[perm]
    (loss_p, terms_p), grads_p = _value_and_grads(
        objective, logits[perm], jax.tree.map(take, acts), labels[perm]
    )
    chex.assert_trees_all_close((loss_p, terms_p), (loss, terms), **F32)
    chex.assert_trees_all_close(grads_p, jax.tree.map(take, grads), **F32)


def test_where_equals_dropping_rows():
    logits, acts, labels = _mwt_inputs(5)
    where = np.ones(len(labels), bool)
    where[[0, 3, 4, 11]] = False
    # Padded rows may hold garbage: NaN values and out-of-range labels must not leak.
    bad = jnp.asarray(~where)
    logits_pad = jnp.where(bad[:, None], jnp.nan, logits)
    acts_pad = {
        k: jnp.where(bad.reshape((-1,) + (1,) * (v.ndim - 1)), jnp.nan, v) for k, v in acts.items()
    }
    labels_pad = jnp.where(bad, 99, labels)
    objective = _all_terms(num_classes=4)
    (loss, terms), grads = _value_and_grads(
        objective, logits_pad, acts_pad, labels_pad, jnp.asarray(where)
    )
    keep = lambda x: x[where]
    (loss_d, terms_d), grads_d = _value_and_grads(
        objective, keep(logits), jax.tree.map(keep, acts), keep(labels)
    )
    chex.assert_trees_all_close((loss, terms), (loss_d, terms_d), **F32)
    chex.assert_trees_all_close(jax.tree.map(keep, grads), grads_d, **F32)
    chex.assert_trees_all_equal(
        jax.tree.map(lambda g: g[~where], grads),
        jax.tree.map(lambda g: jnp.zeros_like(g[~where]), grads),
    )


def test_zero_weights_reduce_to_cross_entropy():
    logits, acts, labels = _mwt_inputs(6)
    mwt = objectives.mwt_objective(num_classes=4, cohesion_weight=0.0, coupling_weight=0.0)
    moda = objectives.moda_objective(
        num_classes=4, affinity_weight=0.0, dispersion_weight=0.0, compactness_weight=0.0
    )
    (ce_loss, _), ce_grads = _value_and_grads(objectives.standard, logits, acts, labels)
    for objective in (mwt, moda):
        (loss, terms), grads = _value_and_grads(objective, logits, acts, labels)
        assert float(loss) == float(ce_loss) == float(terms["ce"])
        assert float(terms["coupling" if objective is mwt else "dispersion"]) > 0  # still logged
        chex.assert_trees_all_equal(grads, ce_grads)


def test_standard_and_combine():
    logits, acts, labels = _mwt_inputs(7)
    loss, terms = jax.jit(objectives.standard)(logits, acts, labels)
    ce = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
    np.testing.assert_allclose(loss, ce, **F32)
    assert list(terms) == ["ce"]
    custom = objectives.combine(
        ce=objectives.Term(objectives.ce_term(), 1.0),
        compact=(objectives.compactness_term(layers=["fc"]), 2.0),
    )
    loss, terms = jax.jit(custom)(logits, acts, labels)
    np.testing.assert_allclose(loss, ce + 2.0 * np.mean(np.asarray(acts["fc"])), **F32)
    assert list(terms) == ["ce", "compact"]


def test_layer_selection_and_single_trace():
    logits, acts, labels = _mwt_inputs(8)
    full = jax.jit(objectives.cohesion, static_argnames="num_classes")(
        [acts["conv_1/mask"]], labels, num_classes=4
    )
    for names in (["conv_1"], ["conv_1/mask"]):
        objective = jax.jit(objectives.mwt_objective(num_classes=4, layers=names))
        _, terms = objective(logits, acts, labels)
        np.testing.assert_allclose(terms["cohesion"], full, **F32)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(labels):
        return objectives.mwt_objective(num_classes=4)(logits, acts, labels)

    for labels_k in (labels, jnp.zeros_like(labels), jnp.arange(12, dtype=jnp.int32) % 4):
        _, terms = step(labels_k)
        assert len(terms) == 7


def test_mixed_precision_computes_in_float32():
    logits, acts, labels = _mwt_inputs(9)
    half = jax.tree.map(lambda x: x.astype(jnp.bfloat16), acts)
    upcast = jax.tree.map(lambda x: x.astype(jnp.float32), half)
    objective = jax.jit(_all_terms(num_classes=4))
    loss, terms = objective(logits.astype(jnp.bfloat16), half, labels)
    loss32, terms32 = objective(logits.astype(jnp.bfloat16).astype(jnp.float32), upcast, labels)
    assert loss.dtype == jnp.float32 and all(v.dtype == jnp.float32 for v in terms.values())
    chex.assert_trees_all_close((loss, terms), (loss32, terms32), **F32)


def test_eight_device_mesh_equals_single_device():
    assert jax.device_count() == 8, "conftest sets 8 fake CPU devices"
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    batch = jax.sharding.NamedSharding(mesh, jax.P("data"))
    logits, acts, labels = _mwt_inputs(10, b=16, num_classes=5, widths=(3,))
    where = jnp.arange(16) < 13
    one = jax.devices()[0]
    objective = _all_terms(num_classes=5)  # global-batch semantics for every MwT and MODA term

    def loss_fn(lg, a, y, w):
        return objective(lg, a, y, where=w)

    fn = jax.jit(jax.value_and_grad(loss_fn, (0, 1), has_aux=True))
    single = fn(*jax.device_put((logits, acts, labels, where), one))
    sharded_in = jax.device_put((logits, acts, labels, where), batch)
    assert sharded_in[0].sharding.num_devices == 8
    sharded = fn(*sharded_in)
    assert sharded[1][0].sharding.num_devices == 8  # d loss / d logits stays batch-sharded
    chex.assert_trees_all_close(sharded, single, **F32)


def test_errors():
    logits, acts, labels = _mwt_inputs(11)
    with pytest.raises(ValueError, match=r"term 'cohesion': weight=-1.0 must be finite and >= 0"):
        objectives.mwt_objective(num_classes=4, cohesion_weight=-1.0)
    with pytest.raises(ValueError, match=r"term 'dispersion': weight=nan"):
        objectives.moda_objective(num_classes=4, dispersion_weight=float("nan"))
    with pytest.raises(ValueError, match=r"num_classes=0 must be >= 1"):
        objectives.mwt_objective(num_classes=0)
    with pytest.raises(TypeError, match=r"num_classes must be an int"):
        objectives.moda_objective(num_classes=4.0)
    with pytest.raises(TypeError, match=r"layers must be a sequence"):
        objectives.mwt_objective(num_classes=4, layers="conv_1")
    with pytest.raises(ValueError, match=r"combine needs at least one term"):
        objectives.combine()
    with pytest.raises(
        ValueError,
        match=r"\['conv_9/mask'\] not found in acts; available: "
        r"\['conv_0/mask', 'conv_1/mask'\]",
    ):
        objectives.mwt_objective(num_classes=4, layers=["conv_9"])(logits, acts, labels)
    no_masks = {k: v for k, v in acts.items() if not k.endswith("/mask")}
    with pytest.raises(ValueError, match=r"no mask-generator outputs.*mask_generators=True"):
        jax.jit(objectives.mwt_objective(num_classes=4))(logits, no_masks, labels)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, num_classes=4\); got values"):
        objectives.mwt_objective(num_classes=4)(logits, acts, np.full(12, 4, np.int32))
    with pytest.raises(ValueError, match=r"logits must be \[batch, num_classes=3\]"):
        objectives.moda_objective(num_classes=3)(logits, acts, labels)
    with pytest.raises(TypeError, match=r"labels must be integer class ids"):
        objectives.moda_objective(num_classes=4)(logits, acts, labels.astype(jnp.float32))
    with pytest.raises(ValueError, match=r"each mask must be \[batch, channels\]"):
        objectives.cohesion([acts["conv_0"]], labels, num_classes=4)
    with pytest.raises(ValueError, match=r"masks must hold at least one layer"):
        objectives.coupling([], labels, num_classes=4)
    clash = objectives.combine(
        a=(objectives.ce_term(), 1.0),
        cohesion_defined=(objectives.ce_term(), 1.0),
        b=(objectives.cohesion_term(num_classes=4), 1.0),
    )
    with pytest.raises(ValueError, match=r"term 'b' logs keys \['cohesion_defined'\]"):
        clash(logits, acts, labels)
