"""Tests for modjax.objectives: MwT and MODA terms, combine(), masking, sharding and errors."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from modjax import objectives
from modjax._pairs import _naive_pair_statistics

F32 = {"rtol": 1e-5, "atol": 1e-6}


@functools.partial(jax.jit, static_argnames=("num_classes", "reduce"))
def _naive_terms(layers, labels, num_classes, where=None, reduce=False):
    """(1 − mean_l same, mean_l diff) from the B×B reference, with the 0-if-undefined rule."""
    vs = [objectives.reduce_activation(a) if reduce else a for a in layers]
    stats = [_naive_pair_statistics(v, labels, num_classes=num_classes, where=where) for v in vs]
    same = jnp.mean(jnp.stack([s.same_mean for s in stats]))
    diff = jnp.mean(jnp.stack([s.diff_mean for s in stats]))
    return jnp.where(stats[0].same_count > 0, 1 - same, 0), diff


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
    with pytest.raises(ValueError, match=r"labels must lie in \[0, num_classes=4\); got 12 out-of"):
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
