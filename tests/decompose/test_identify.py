"""The vectorized CI/TI/CM equals the literal per-sample reference on small random MLPs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.panrajan_ref import dense as ref
from modjax import models
from modjax.decompose.dense import channel as channel_lib
from modjax.decompose.dense.decompose import make_decompose, variant
from modjax.decompose.dense.identify import first_flags, identify
from modjax.decompose.dense.parent import to_layers


def _parent(depth, seed, *, inputs=8, hidden=6, classes=4, scale=1.0):
    model = models.get_model("mlp", depth=depth, hidden=hidden, num_classes=classes)
    params = model.init(jax.random.key(seed), jnp.ones((1, inputs)))["params"]
    params = jax.tree.map(
        lambda x: x * scale + 0.05 * jax.random.normal(jax.random.key(seed + 1), x.shape), params
    )
    return params


def _samples(seed, num, inputs=8):
    return np.asarray(jax.random.normal(jax.random.key(100 + seed), (num, inputs)), np.float32)


def _np_layers(params):
    layers = to_layers(params)
    return [np.asarray(w, np.float64) for w, _ in layers], [
        np.asarray(b, np.float64) for _, b in layers
    ]


@pytest.mark.parametrize("depth, parity", [(1, False), (2, True), (3, False), (3, True)])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"ti_out_threshold": 1e-4},
        {"ti_out_threshold": 0.3, "negatives_first": True},
        {"ti_out_threshold": 0.5, "ci_out_threshold": 0.05},
        {"ti_out_threshold": 0.5, "ci_out_threshold": 0.2, "guard_fraction": 0.6},
    ],
)
def test_identify_matches_reference(depth, parity, kwargs):
    params = _parent(depth, seed=depth, scale=2.0)
    pos, neg = _samples(depth, 15), _samples(depth + 7, 6)
    ws, bs = _np_layers(params)
    guard = kwargs.pop("guard_fraction", 45 / 490)
    want_D, want_d = (
        ref.identify(ws, bs, pos, neg, parity=parity, **kwargs)
        if guard == 45 / 490
        else _ref_with_guard(ws, bs, pos, neg, parity, guard, **kwargs)
    )
    masks = jax.jit(
        lambda p, x, y: identify(to_layers(p), x, y, parity=parity, guard_fraction=guard, **kwargs)
    )(params, pos, neg)
    for l, (km, bm) in enumerate(zip(masks.kernels, masks.biases)):
        np.testing.assert_array_equal(np.asarray(km) & (ws[l] != 0), want_D[l] != 0, f"kernel {l}")
        np.testing.assert_array_equal(np.asarray(bm) & (bs[l] != 0), want_d[l] != 0, f"bias {l}")


def _ref_with_guard(
    ws,
    bs,
    pos,
    neg,
    parity,
    guard,
    *,
    ti_out_threshold,
    ci_out_threshold=None,
    negatives_first=False,
):
    s = ref.Slicer(ws, bs, parity=parity, ci_out_threshold=ci_out_threshold, guard=guard)
    firsts = []
    for x in pos:
        firsts.append(s.first)
        s.ci(x)
    for x in neg:
        s.ti(x, ti_out_threshold)
    assert sum(firsts) > 1, "the guard should fire in this case"
    return s.D, s.d


def test_first_flags_resets():
    zero = jnp.array([[True, True, False], [False, True, False], [True, True, False]])
    # nnz 2 per column, guard 3: after sample 0 only column 2 lives (nnz 2 < 3: reset); sample
    # 1 (first) revives columns 0 and 2 (nnz 4), so sample 2 is not a first pass
    assert first_flags(zero, jnp.array([2, 2, 2]), guard=3.0).tolist() == [True, True, False]
    assert first_flags(zero, jnp.array([2, 2, 2]), guard=1.0).tolist() == [True, False, False]


@pytest.mark.parametrize("parity", [False, True])
@pytest.mark.parametrize(
    "depth, ti, cm",
    [
        (1, "sne", "rie"),
        (2, "sne", "rie"),
        (2, "sne", "c"),
        (1, "i", "none"),
        (2, "pn", "none"),
        (2, "hp", "c"),
    ],
)
def test_decompose_matches_reference(depth, parity, cm, ti):
    params = _parent(depth, seed=10 + depth, scale=2.0)
    classes, num_p, per_class = 4, 9, 3
    pos = np.stack([_samples(20 + c, num_p) for c in range(classes)])
    neg = np.stack([_samples(40 + c, per_class * (classes - 1)) for c in range(classes)])
    out = make_decompose(ti=ti, cm=cm, parity=parity)(params, pos, neg)
    v = variant(ti)
    ws, bs = _np_layers(params)
    for c in range(classes):
        D, d = ref.identify(
            ws,
            bs,
            pos[c],
            neg[c],
            ti_out_threshold=v.ti_out_threshold,
            ci_out_threshold=v.ci_out_threshold,
            negatives_first=v.negatives_first,
            parity=parity,
        )
        if cm == "rie":
            D, d = ref.remove_irrelevant(D, d, c, parity=parity)
        if cm != "none":
            D, d = ref.channel(D, d, c, parity=parity)
        got = to_layers(jax.tree.map(lambda x, c=c: x[c], out))
        for l, (w, b) in enumerate(got):
            np.testing.assert_allclose(
                np.asarray(w), D[l], rtol=1e-5, atol=1e-6, err_msg=f"c{c} W{l}"
            )
            np.testing.assert_allclose(
                np.asarray(b), d[l], rtol=1e-5, atol=1e-6, err_msg=f"c{c} b{l}"
            )


@pytest.mark.parametrize("parity", [False, True])
def test_rie_merges_several_nodes(parity):
    # hand-made module: last-hidden nodes 0 and 2 feed only negatives (tiny positive edge)
    prev = np.arange(12.0).reshape(3, 4)
    out = np.array(
        [[0.0, 0.2, 0.4, 0.0], [0.5, 0.5, -0.3, 0.1], [0.0, 0.0, 0.6, 0.2], [0.3, 0.0, 0.0, 0.0]]
    )
    bias = np.array([0.1, 0.2, 0.3, 0.4])
    layers = [(jnp.asarray(prev), jnp.zeros(4)), (jnp.asarray(out), jnp.asarray(bias))]
    for c in range(4):
        got = channel_lib.remove_irrelevant(layers, jnp.asarray(c), parity=parity)
        want, _ = ref.remove_irrelevant([prev, out], [np.zeros(4), bias], c, parity=parity)
        for (w, _), wd in zip(got, want):
            np.testing.assert_allclose(np.asarray(w), wd, atol=1e-6, err_msg=f"class {c}")


@pytest.mark.parametrize("parity", [False, True])
def test_padding_positives_are_skipped(parity):
    params = _parent(2, seed=5, scale=2.0)
    pos, neg = _samples(5, 12), _samples(6, 6)
    valid = np.arange(12) < 7
    padded = np.where(valid[:, None], pos, 0.0).astype(np.float32)
    ws, bs = _np_layers(params)
    kw = {"ti_out_threshold": 0.5, "ci_out_threshold": 0.2}
    want_D, want_d = _ref_with_guard(ws, bs, pos[:7], neg, parity, 0.6, **kw)
    masks = jax.jit(
        lambda p, x, y, v: identify(
            to_layers(p), x, y, parity=parity, guard_fraction=0.6, valid=v, **kw
        )
    )(params, padded, neg, valid)
    for l, (km, bm) in enumerate(zip(masks.kernels, masks.biases)):
        np.testing.assert_array_equal(np.asarray(km) & (ws[l] != 0), want_D[l] != 0)
        np.testing.assert_array_equal(np.asarray(bm) & (bs[l] != 0), want_d[l] != 0)
