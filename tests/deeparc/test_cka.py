"""Minibatch CKA with the unbiased HSIC estimator and full-batch linear CKA (METHODS §8.2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax.deeparc import cka


def _feats(seed, n=12, dims=(5, 7, 3)):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, d)).astype(np.float32) for d in dims]


def _naive_h(feats):
    """A literal loop over layer pairs: Grams, U-centring written out, Frobenius products."""
    grams = []
    for x in feats:
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        k = x @ x.T
        n = len(k)
        np.fill_diagonal(k, 0.0)
        mu = k.sum(0) / (n - 2)
        mu = mu - mu.sum() / (2 * (n - 1))
        k = k - mu[:, None] - mu[None, :]
        np.fill_diagonal(k, 0.0)
        grams.append(k)
    h = np.zeros((len(grams), len(grams)))
    for a in range(len(grams)):
        for b in range(len(grams)):
            h[a, b] = np.sum(grams[a] * grams[b])
    return h


@pytest.mark.parametrize("n", [4, 9, 32])
def test_u_centring_equals_closed_form_unbiased_hsic(n):
    x, y, _ = _feats(n, n=n)
    k, l = x @ x.T, y @ y.T
    via_centring = jnp.sum(cka.unbiased_center(k) * cka.unbiased_center(l)) / (n * (n - 3))
    np.testing.assert_allclose(via_centring, cka.unbiased_hsic(k, l), rtol=2e-4, atol=1e-5)


def test_accumulate_matches_naive_pair_loop_and_row_chunks():
    batches = [_feats(s) for s in range(3)]
    step = jax.jit(cka.accumulate_hsic, static_argnames="row_chunk")
    h = h_chunked = jnp.zeros((3, 3))
    for feats in batches:
        h = step(h, feats)
        h_chunked = step(h_chunked, feats, row_chunk=4)
    expected = sum(_naive_h(f) for f in batches)
    np.testing.assert_allclose(h, expected, rtol=1e-4)
    np.testing.assert_allclose(h_chunked, expected, rtol=1e-4)
    # The diagonal is n(n - 3) · HSIC₁(K, K) summed over minibatches.
    hsic = sum(cka.unbiased_hsic(f[1] @ f[1].T, f[1] @ f[1].T) for f in batches)
    np.testing.assert_allclose(h[1, 1], hsic * 12 * 9, rtol=1e-4)


def _cka(feats_per_batch):
    h = jnp.zeros((len(feats_per_batch[0]),) * 2)
    for feats in feats_per_batch:
        h = cka.accumulate_hsic(h, feats)
    return cka.cka_from_hsic(h)


def test_invariances_and_unit_self_similarity():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    batches = [
        [x, x @ q, 3.5 * x, y] for x, y in (_feats(s, n=16, dims=(6, 4))[:2] for s in range(4))
    ]
    s = _cka(batches)
    np.testing.assert_allclose(np.diag(s), 1.0, atol=1e-6)
    np.testing.assert_allclose(s[0, 1], 1.0, atol=1e-4)  # orthogonal transform
    np.testing.assert_allclose(s[0, 2], 1.0, atol=1e-4)  # isotropic scaling
    np.testing.assert_allclose(s, s.T, atol=1e-6)
    assert s[0, 3] < 0.9


def test_linear_cka_invariances_and_both_branches_agree():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 5)).astype(np.float32)
    wide = rng.normal(size=(20, 40)).astype(np.float32)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    assert float(cka.linear_cka(x, x)) == pytest.approx(1.0, abs=1e-5)
    assert float(cka.linear_cka(x, 2.0 * x @ q + 3.0)) == pytest.approx(1.0, abs=1e-4)
    # Feature-space (narrow) and Gram (wide) formulas: compare through a zero-padded copy.
    padded = np.concatenate([x, np.zeros((20, 30), np.float32)], axis=1)
    assert float(cka.linear_cka(x, wide)) == pytest.approx(float(cka.linear_cka(padded, wide)))
    xc, wc = x - x.mean(0), wide - wide.mean(0)
    k, l = xc @ xc.T, wc @ wc.T
    ref = np.sum(k * l) / np.linalg.norm(k) / np.linalg.norm(l)
    assert float(cka.linear_cka(x, wide)) == pytest.approx(ref, rel=1e-4)


def test_bad_inputs_name_the_value():
    with pytest.raises(ValueError, match="minibatch size n=3 is too small"):
        cka.accumulate_hsic(jnp.zeros((1, 1)), [np.ones((3, 2), np.float32)])
    with pytest.raises(ValueError, match="n=3"):
        cka.unbiased_center(np.ones((3, 3)))
    with pytest.raises(ValueError, match="H\\[1, 1\\]=0.0 <= 0"):
        cka.cka_from_hsic(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="layer 'b' \\(index 1\\)"):
        cka.cka_from_hsic(np.array([[1.0, 0.0], [0.0, -2.0]]), names=["a", "b"])
    with pytest.raises(ValueError, match="row_chunk=5 must be a positive divisor of n=12"):
        cka.accumulate_hsic(jnp.zeros((3, 3)), _feats(0), row_chunk=5)
    # A constant layer accumulates exactly zero HSIC.
    h = cka.accumulate_hsic(jnp.zeros((2, 2)), [np.ones((8, 3), np.float32), _feats(0, n=8)[0]])
    with pytest.raises(ValueError, match="index 0"):
        cka.cka_from_hsic(h)


def test_auto_row_chunk_bounds_memory():
    assert cka.auto_row_chunk(256, 54) == 256  # ResNet-110 blocks: G in one piece (14 MiB)
    assert cka.auto_row_chunk(256, 385) == 256  # every layer: 100 MiB, still one piece
    assert cka.auto_row_chunk(256, 2000) == 128
    assert cka.auto_row_chunk(12, 3, max_floats=100) == 2
    assert 3 * cka.auto_row_chunk(10, 3, max_floats=40) * 10 <= 40
