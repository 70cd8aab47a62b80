"""Tests for modjax._pairs: the O(B·D) pair statistics against naive references (METHODS §11.5)."""

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
