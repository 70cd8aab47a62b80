"""Tests for NeMo's contrastive loss (modjax._contrastive, objectives.nemo_objective) against a
NumPy pairwise loop: values, gradients (central differences), edge cases and errors."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from modjax import objectives

FORMS = ("parity", "supcon")


def _ref_layer(m, y, tau, form, valid):
    """mean over anchors of −log((pos+1e-8)/(pos+neg+1e-8)), NeMo's loop written out; None if no
    anchor. parity: exponent masked (every j); supcon: true positives j ≠ i and negatives."""
    m, idx = np.asarray(m, np.float64), np.flatnonzero(valid)
    v = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    losses = []
    for i in idx:
        pos = neg = 0.0
        has_pos = False
        for j in idx:
            s, same = v[i] @ v[j], y[i] == y[j]
            if form == "parity":
                pos += np.exp(same * s / tau)
                neg += np.exp((1 - same) * s / tau)
            elif same and j != i:
                pos, has_pos = pos + np.exp(s / tau), True
            elif not same:
                neg += np.exp(s / tau)
        if form == "parity" or has_pos:
            losses.append(-np.log((pos + 1e-8) / (pos + neg + 1e-8)))
    return np.mean(losses) if losses else None


def _ref(masks, y, tau, form, first_ones=True, valid=None):
    valid = np.ones(len(y), bool) if valid is None else valid
    masks = [np.ones_like(masks[0]), *masks[1:]] if first_ones and len(masks) > 1 else masks
    per_layer = [_ref_layer(m, np.asarray(y), tau, form, valid) for m in masks]
    return 0.0 if per_layer[0] is None else float(np.mean(per_layer))


def _inputs(seed, b=8, widths=(3, 4), num_classes=3):
    rng = np.random.default_rng(seed)
    masks = [np.maximum(rng.uniform(-0.2, 1, (b, w)), 0).astype(np.float32) for w in widths]
    return masks, rng.integers(0, num_classes, b).astype(np.int32)


def _value_and_grads(masks, labels, *settings):
    """[(value, gradient) of `contrastive` under each settings dict], in one compile."""

    def fn(ms, y):
        out = []
        for kw in settings:
            kw = {"temperature": 0.2, "first_layer_ones": True, **kw}
            loss = functools.partial(objectives.contrastive, labels=y, **kw)
            out.append(jax.value_and_grad(loss)(ms))
        return out

    return jax.jit(fn)([jnp.asarray(m) for m in masks], jnp.asarray(labels))


def _numeric_grad(masks, y, tau, form, first_ones, h=1e-4):
    grads = []
    for layer, m in enumerate(masks):
        g = np.zeros(m.shape)
        for idx in np.ndindex(m.shape):
            up, down = [x.astype(np.float64) for x in masks], [x.astype(np.float64) for x in masks]
            up[layer][idx] += h
            down[layer][idx] -= h
            g[idx] = (_ref(up, y, tau, form, first_ones) - _ref(down, y, tau, form, first_ones)) / (
                2 * h
            )
        grads.append(g)
    return grads


def test_value_and_gradient_match_the_numpy_pairwise_loop():
    # A singleton class (label 2 once) and a zero mask row are inside the random batch.
    masks, y = _inputs(0)
    y[:] = [0, 1, 0, 1, 1, 0, 2, 0]
    masks[1][3] = 0.0
    cases = [(form, first_ones) for form in FORMS for first_ones in (True, False)]
    results = _value_and_grads(masks, y, *[{"form": f, "first_layer_ones": o} for f, o in cases])
    for (form, first_ones), (value, grads) in zip(cases, results, strict=True):
        np.testing.assert_allclose(value, _ref(masks, y, 0.2, form, first_ones), rtol=1e-5)
        numeric = _numeric_grad(masks, y, 0.2, form, first_ones)
        for g, n in zip(grads, numeric, strict=True):
            assert g.shape == n.shape and np.all(np.isfinite(g))
        # The zero row is no differentiable point (its JAX gradient is finite, METHODS §2.2).
        numeric[1][3], grads[1] = 0.0, grads[1].at[3].set(0.0)
        for g, n in zip(grads, numeric, strict=True):
            np.testing.assert_allclose(g, n, rtol=2e-3, atol=2e-4)
        assert np.any(np.abs(grads[1]) > 1e-3)  # a real signal reaches the other layers
        if first_ones:  # the first layer is a constant: counted in the mean, no gradient
            assert np.all(np.asarray(grads[0]) == 0)


def test_parity_quirk_gives_a_nonzero_loss_to_a_perfectly_separated_batch():
    masks = [np.eye(2, dtype=np.float32)[[0, 0, 1]]]
    y = np.array([0, 0, 1], np.int32)
    (parity, _), (supcon, _), (single, grad) = _value_and_grads(
        masks, y, *[{"form": f, "first_layer_ones": False} for f in FORMS], {"form": "parity"}
    )
    # A single layer is never replaced by ones (the loss would be a constant).
    np.testing.assert_allclose(single, parity, rtol=1e-6)
    assert np.any(grad[0] != 0)
    # parity: rows 0, 1 have pos = 2e^5 + 1, neg = 3; row 2 pos = e^5 + 2, neg = 3.
    e5 = np.exp(5.0)
    expected = (2 * np.log((2 * e5 + 4) / (2 * e5 + 1)) + np.log((e5 + 5) / (e5 + 2))) / 3
    np.testing.assert_allclose(parity, expected, rtol=1e-5)
    # supcon: the singleton row 2 is no anchor; rows 0, 1 have pos = e^5, neg = e^0 = 1.
    np.testing.assert_allclose(supcon, np.log((e5 + 1) / e5), rtol=1e-5)


def test_single_class_and_all_singleton_batches():
    masks, _ = _inputs(1, b=5)
    acts = {f"conv_{i}/mask": jnp.asarray(m) for i, m in enumerate(masks)}
    objective = {f: objectives.nemo_objective(num_classes=5, form=f) for f in FORMS}

    def contrastive(a, y, form):
        terms = objective[form](jnp.zeros((5, 5)), a, y)[1]
        return terms["contrastive"], terms

    @jax.jit
    def value_and_grads(a, y):
        return {f: jax.value_and_grad(contrastive, has_aux=True)(a, y, f) for f in FORMS}

    for y in (np.full(5, 2, np.int32), np.arange(5, dtype=np.int32)):
        for form, ((_, terms), g) in value_and_grads(acts, jnp.asarray(y)).items():
            np.testing.assert_allclose(terms["contrastive"], _ref(masks, y, 0.2, form), rtol=1e-5)
            assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g))
            if form == "parity":  # always defined, with a gradient
                assert float(terms["contrastive_defined"]) == 1.0
                assert any(np.any(x != 0) for x in jax.tree.leaves(g))
            else:  # one class: neg = 0, so ℓ = 0 (defined); all singletons: no anchor
                assert float(terms["contrastive"]) == 0.0
                assert float(terms["contrastive_defined"]) == float(len(set(y.tolist())) == 1)
                chex.assert_trees_all_equal(g, jax.tree.map(jnp.zeros_like, acts))


def test_where_drops_rows_and_small_temperatures_stay_finite():
    masks, y = _inputs(2, b=10)
    valid = np.arange(10) < 7
    garbage = [np.where(valid[:, None], m, np.nan).astype(np.float32) for m in masks]
    where = jnp.asarray(valid)
    for form, (value, grads) in zip(
        FORMS, _value_and_grads(garbage, y, *[{"form": f, "where": where} for f in FORMS])
    ):
        np.testing.assert_allclose(value, _ref(masks, y, 0.2, form, valid=valid), rtol=1e-5)
        assert all(np.all(np.isfinite(g)) and np.all(g[~valid] == 0) for g in grads)
    # exp(1/τ) overflows float32 below τ ≈ 0.0113; the log-sum-exp form does not.
    tiny = _value_and_grads(masks, y, *[{"form": f, "temperature": 0.005} for f in FORMS])
    for form, (value, grads) in zip(FORMS, tiny):
        np.testing.assert_allclose(value, _ref(masks, y, 0.005, form), rtol=1e-4)
        assert all(np.all(np.isfinite(g)) for g in grads)


def test_nemo_objective_value_keys_and_errors():
    masks, y = _inputs(3)
    acts = {f"conv_{i}/mask": jnp.asarray(m) for i, m in enumerate(masks)}
    acts["conv_0"] = jnp.ones((8, 2, 2, 3))  # tracked activations are ignored
    logits = jnp.asarray(np.random.default_rng(3).normal(size=(8, 3)), jnp.float32)
    objective = jax.jit(objectives.nemo_objective(num_classes=3, contrastive_weight=1.3))
    loss, terms = objective(logits, acts, jnp.asarray(y))
    assert set(terms) == {
        "ce",
        "contrastive",
        "contrastive_defined",
        "cohesion",
        "cohesion_defined",
        "coupling",
        "coupling_defined",
        "kernel_rate",
        "mask_mean",
    }
    ce = np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(y)))
    con = _ref(masks, y, 0.2, "parity")
    np.testing.assert_allclose(terms["contrastive"], con, rtol=1e-5)
    np.testing.assert_allclose(loss, ce + 1.3 * con, rtol=1e-5)
    # MwT's cohesion is logged on the raw masks (the first layer is not replaced there).
    cohesion = jax.jit(objectives.cohesion, static_argnames="num_classes")
    raw = cohesion([acts["conv_0/mask"], acts["conv_1/mask"]], jnp.asarray(y), num_classes=3)
    np.testing.assert_allclose(terms["cohesion"], raw, rtol=1e-5)
    with pytest.raises(ValueError, match=r"form='simclr' must be one of \['parity', 'supcon'\]"):
        objectives.nemo_objective(num_classes=3, form="simclr")
    for tau in (0.0, -0.2, float("inf")):
        with pytest.raises(ValueError, match=rf"temperature={tau!r} must be a finite number > 0"):
            objectives.nemo_objective(num_classes=3, temperature=tau)
    with pytest.raises(ValueError, match=r"weight=-1.0 must be finite"):
        objectives.nemo_objective(num_classes=3, contrastive_weight=-1.0)
    with pytest.raises(ValueError, match=r"no mask-generator outputs"):
        jax.jit(objectives.nemo_objective(num_classes=3))(logits, {"conv_0": acts["conv_0"]}, y)
