"""Tests of modjax.compose: fused per-parent composition, relabelling, calibration, evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import models
from modjax import modular as mz
from modjax.modular import compose as cp
from modjax.modular.prune import masked_equivalent
from modjax.modules import Scorer, compose_scorers

SHAPE = (8, 8, 1)
N = 4


def _init(model, shape, seed=0):
    init = jax.jit(lambda k: model.init(k, jnp.zeros((1, *shape)), train=False))
    return init(jax.random.key(seed))


def _parent(dataset="synth_a", seed=0, num_classes=N):
    kw = {"depth": 2, "num_classes": num_classes}
    model = models.get_model("mlp", **kw)
    variables = _init(model, SHAPE, seed)
    parent = mz.describe_parent(
        "mlp", dataset=dataset, checkpoint=f"test:{seed}", input_shape=SHAPE, **kw
    )
    return model, variables, parent


def _modules(parent, seed=0, method="moda", points=None, p=0.5):
    """One module per class with random (non-empty) keep-masks."""
    rs = np.random.RandomState(seed)
    n = parent["model_kwargs"]["num_classes"]
    points = points or {"dense_0": 49, "dense_1": 49}
    keep = {}
    for name, c in points.items():
        k = rs.rand(n, c) < p
        k[:, 0] = True
        keep[name] = k
    return [mz.module_for_class(keep, c, parent=parent, method=method) for c in range(n)]


def _x(num=6, seed=1, shape=SHAPE):
    return jax.random.normal(jax.random.key(seed), (num, *shape), jnp.float32)


def _masked_logits(parent, variables, keep, x, method="moda"):
    model, masks = masked_equivalent(
        parent["model"],
        parent["model_kwargs"],
        keep,
        method=method,
        input_shape=parent["input_shape"],
    )
    return model.apply(variables, x, masks=masks, train=False)[0]


@pytest.mark.parametrize("classes", [(1, 3), (0, 2, 3)])
def test_moda_composition_equals_masked_parent_restricted_to_T(classes):
    _, variables, parent = _parent()
    modules = _modules(parent)
    chosen = [modules[c] for c in reversed(classes)]  # order of the modules does not matter
    composed = cp.compose(chosen, {cp.parent_key(parent): variables})
    assert composed.classes == classes
    x = _x()
    u = mz.union(chosen)
    want = _masked_logits(parent, variables, u.keep, x)[:, list(classes)]
    np.testing.assert_allclose(composed.apply_fn(x), want, rtol=1e-5, atol=1e-5)
    g = composed.groups[0]
    assert g.size["params"] < g.size["parent_params"]
    assert g.size["macs"] < g.size["parent_macs"]


def test_mwt_composition_keeps_the_classifier_and_takes_columns():
    shape = (16, 16, 3)
    kw = {"num_classes": 3, "width": 0.5, "mask_generators": True}
    model = models.get_model("lenet5", **kw)
    variables = _init(model, shape)
    parent = mz.describe_parent("lenet5", dataset="s", input_shape=shape, **kw)
    modules = _modules(parent, method="mwt", points={"conv_1": 8})
    composed = cp.compose([modules[2], modules[0]], {cp.parent_key(parent): variables})
    assert composed.classes == (0, 2) and composed.groups[0].network.columns == (0, 2)
    assert composed.groups[0].network.model.num_classes == 3  # whole N-way classifier kept
    x = _x(shape=shape)
    want = _masked_logits(parent, variables, mz.union([modules[0], modules[2]]).keep, x, "mwt")
    np.testing.assert_allclose(composed.apply_fn(x), want[:, [0, 2]], rtol=1e-5, atol=1e-5)


def test_one_parent_gives_one_pruned_network(monkeypatch):
    _, variables, parent = _parent()
    modules = _modules(parent)
    calls = []
    real = cp.prune
    monkeypatch.setattr(cp, "prune", lambda *a, **k: calls.append(1) or real(*a, **k))
    composed = cp.compose(modules[:3], {cp.parent_key(parent): variables})
    assert len(calls) == 1 and len(composed.groups) == 1
    calls.clear()
    baseline = cp.compose_one_by_one(modules[:3], {cp.parent_key(parent): variables})
    assert len(calls) == 3 and len(baseline.groups) == 3


def test_fused_and_one_by_one_relation():
    _, variables, parent = _parent()
    modules = _modules(parent)[:3]
    vbp = {cp.parent_key(parent): variables}
    x = _x()
    fused = cp.compose(modules, vbp).apply_fn(x)
    single = cp.compose_one_by_one(modules, vbp).apply_fn(x)
    # One-by-one column t = parent masked with u_t at column t (own-class logit, §4.7).
    for t, m in enumerate(modules):
        want = _masked_logits(parent, variables, m.keep, x)[:, t]
        np.testing.assert_allclose(single[:, t], want, rtol=1e-5, atol=1e-5)
    # They coincide when the modules share their keep-masks.
    same = [m._replace(keep=mz.union(modules).keep) for m in modules]
    np.testing.assert_allclose(
        cp.compose_one_by_one(same, vbp).apply_fn(x), fused, rtol=1e-5, atol=1e-5
    )
    # A single module: fused == one-by-one exactly.
    np.testing.assert_allclose(
        cp.compose([modules[1]], vbp).apply_fn(x),
        cp.compose_one_by_one([modules[1]], vbp).apply_fn(x),
        rtol=1e-6,
        atol=1e-6,
    )


def test_overlapping_ids_across_datasets_need_relabel():
    _, va, pa = _parent("synth_a", seed=0)
    _, vb, pb = _parent("synth_b", seed=3)
    ma, mb = _modules(pa), _modules(pb, seed=5)
    vbp = {cp.parent_key(pa): va, cp.parent_key(pb): vb}
    with pytest.raises(ValueError, match=r"class id 1 clashes.*synth_a.*synth_b.*relabel"):
        cp.compose([ma[1], ma[2], mb[1]], vbp)
    composed = cp.compose([ma[1], ma[2], mb[1]], vbp, relabel={("synth_b", 1): 11})
    assert composed.classes == (1, 2, 11)
    assert composed.sources == (("synth_a", 1), ("synth_a", 2), ("synth_b", 1))
    assert len(composed.groups) == 2
    x = _x()
    out = composed.apply_fn(x)
    np.testing.assert_allclose(
        out[:, :2], cp.compose([ma[1], ma[2]], vbp).apply_fn(x), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(
        out[:, 2:], cp.compose([mb[1]], vbp).apply_fn(x), rtol=1e-6, atol=1e-6
    )
    with pytest.raises(ValueError, match="name no composed"):
        cp.compose([ma[1], mb[1]], vbp, relabel={("synth_b", 3): 13})
    with pytest.raises(ValueError, match="no entry in variables_by_parent"):
        cp.compose([ma[1], mb[1]], {cp.parent_key(pa): va})


def test_calibration_maps_calibration_logits_into_unit_interval():
    _, variables, parent = _parent()
    composed = cp.compose(_modules(parent)[:3], {cp.parent_key(parent): variables})
    images = np.asarray(_x(num=20, seed=4))
    batches = [
        {"image": images[:8]},
        {"image": images[8:16]},
        {"image": np.concatenate([images[16:], images[:4]]), "mask": np.arange(8) < 4},
    ]
    cal = cp.fit_calibration(composed, batches)
    lo, hi = cal[composed.groups[0].key]
    raw = np.asarray(composed.apply_fn(jnp.asarray(images)))
    np.testing.assert_allclose(lo, raw.min(0), rtol=1e-6)
    np.testing.assert_allclose(hi, raw.max(0), rtol=1e-6)
    out = np.asarray(cp.calibrate(composed, cal).apply_fn(jnp.asarray(images)))
    assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6
    np.testing.assert_allclose(out.min(0), 0, atol=1e-6)
    np.testing.assert_allclose(out.max(0), 1, atol=1e-6)


def test_evaluate_composed_on_hand_built_data():
    def score_fn(variables, x):  # predicts output position = round(x[:, 0, 0, 0])
        del variables
        return jax.nn.one_hot(jnp.round(x[:, 0, 0, 0]).astype(jnp.int32), 3)

    scorer = Scorer("k", {"dataset": "d"}, "any", (7, 2, 5), score_fn, {}, {})
    fake = compose_scorers([scorer])

    pos = np.array([0, 1, 2, 2, 0, 1, 1])  # predicted positions
    labels = np.array([7, 2, 5, 7, 7, 9, 2])  # class 9 is not composed: dropped
    images = np.zeros((7, 2, 2, 1), np.float32)
    images[:, 0, 0, 0] = pos
    r = cp.evaluate_composed(
        fake, images, labels, batch_size=4, preprocess=lambda x, rng: x.astype(jnp.float32)
    )
    # kept: (7→0 ✓), (2→1 ✓), (5→2 ✓), (7 pred 2 ✗), (7→0 ✓), (2→1 ✓)
    assert r["count"] == 6 and r["correct"] == 5
    assert r["accuracy"] == pytest.approx(5 / 6)
    assert r["per_class_accuracy"] == {7: pytest.approx(2 / 3), 2: 1.0, 5: 1.0}
    assert r["per_class_count"] == {7: 3, 2: 2, 5: 1}
