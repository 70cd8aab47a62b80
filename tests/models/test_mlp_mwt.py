"""MwT on the MLP: neuron-level generators on every hidden dense layer (METHODS §4.1 on Linear).

Checks the generator formula and the masked forward against NumPy, the parameter layout
(generators under `dense_i/generator`, so dropping them leaves the plain MLP), training with the
MwT objective, and kept units / composition of extracted MLP modules.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import models, objectives, train
from modjax import modular as mz
from modjax.modular import compose as cp
from modjax.modular import portable
from modjax.modular.prune import masked_equivalent, prune

SHAPE = (8, 8, 1)
N = 4
KW = {"num_classes": N, "depth": 3, "hidden": 6, "mask_generators": True}
KEY = jax.random.key(0)


def _relu(a):
    return np.maximum(a, 0.0)


def _np_generator(g, z):
    """h = ReLU(W₁ z), m = ReLU(tanh(W₂ h + b₂)) (METHODS §4.1 with z = x)."""
    h = _relu(z @ np.asarray(g["fc1"]["kernel"], np.float64))
    return _relu(np.tanh(h @ np.asarray(g["fc2"]["kernel"]) + np.asarray(g["fc2"]["bias"])))


def _random_params(params, seed=0):
    """Random N(0, 1/fan_in) kernels and N(0, 0.5²) biases: some masks and units are exact 0."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        if path[-1].key == "kernel":
            a = rng.normal(0.0, 1.0 / np.sqrt(leaf.shape[0]), leaf.shape)
        else:
            a = rng.normal(0.0, 0.5, leaf.shape)
        return jnp.asarray(a, jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, params)


def _mlp(seed=0):
    model = models.get_model("mlp", **KW)
    params = model.init(KEY, jnp.zeros((1, *SHAPE)))["params"]
    return model, {"params": _random_params(params, seed)}


def _x(num=5, seed=1):
    return jax.random.normal(jax.random.key(seed), (num, *SHAPE), jnp.float32)


# ----------------------------------------------------------------------------- the generator


def test_dense_generator_matches_numpy_and_starts_near_tanh1():
    gen = models.MaskGenerator(features=5)
    z = np.asarray(jax.random.normal(jax.random.key(2), (7, 11)), np.float32)
    params = gen.init(KEY, z)["params"]
    assert params["fc1"]["kernel"].shape == (11, 5)  # reads [B, C_in]: z = x, no spatial mean
    np.testing.assert_array_equal(params["fc2"]["bias"], np.ones(5, np.float32))  # b₂ = 1
    np.testing.assert_allclose(gen.apply({"params": params}, np.zeros((3, 11))), np.tanh(1.0))
    params = _random_params(params)
    got = np.asarray(gen.apply({"params": params}, z))
    assert got.shape == (7, 5)
    np.testing.assert_allclose(got, _np_generator(params, z), rtol=1e-5, atol=1e-6)
    assert (got == 0).any() and (got > 0).any()  # both sides of the outer ReLU exercised
    with pytest.raises(ValueError, match=r"conv input \[B, H, W, C\] or a dense input"):
        gen.init(KEY, jnp.zeros((2, 3, 11)))


def test_mask_generators_on_mlp_build_every_hidden_layer():
    model = models.get_model("mlp", mask_generators=True)
    assert models.masked_layers(model, input_shape=(28, 28, 1)) == {
        f"dense_{i}": 49 for i in range(4)
    }
    acts = models.trace(model, (28, 28, 1)).acts
    assert list(acts) == [k for i in range(4) for k in (f"dense_{i}/mask", f"dense_{i}")]
    abstract = models.trace(model, (28, 28, 1)).variables["params"]
    assert set(abstract["dense_0"]) == {"kernel", "bias", "generator"}
    assert abstract["dense_0"]["generator"]["fc1"]["kernel"].shape == (784, 49)  # H_g = 49
    assert "generator" not in abstract["head"]  # the head is not masked
    plain = models.trace(models.get_model("mlp"), (28, 28, 1)).variables
    stripped = mz.drop_generators(models.trace(model, (28, 28, 1)).variables)
    assert jax.tree.map(lambda s: s.shape, stripped) == jax.tree.map(lambda s: s.shape, plain)


# ----------------------------------------------------------------------------- the forward


def test_masked_forward_matches_numpy_and_is_the_plain_mlp_times_the_masks():
    model, variables = _mlp()
    x = _x()
    logits, acts = model.apply(variables, x)
    p = variables["params"]
    h = np.asarray(x, np.float64).reshape(len(x), -1)
    for i in range(KW["depth"]):
        layer = p[f"dense_{i}"]
        m = _np_generator(layer["generator"], h)  # reads the layer input
        np.testing.assert_allclose(acts[f"dense_{i}/mask"], m, rtol=1e-5, atol=1e-6)
        h = _relu((h @ np.asarray(layer["kernel"]) + np.asarray(layer["bias"])) * m)
        np.testing.assert_allclose(acts[f"dense_{i}"], h, rtol=1e-5, atol=1e-5)
    want = h @ np.asarray(p["head"]["kernel"]) + np.asarray(p["head"]["bias"])
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
    masks = {f"dense_{i}": acts[f"dense_{i}/mask"] for i in range(KW["depth"])}
    assert any(float(jnp.min(m)) == 0.0 for m in masks.values())  # some neuron switched off
    # The plain MLP with the generator masks as per-sample keep-masks gives the same forward.
    plain = models.get_model("mlp", **{**KW, "mask_generators": False})
    plain_logits, _ = plain.apply(mz.drop_generators(variables), x, masks=masks)
    np.testing.assert_allclose(plain_logits, logits, rtol=1e-6, atol=1e-6)
    # An external keep-mask multiplies the generator-masked pre-activation.
    keep = np.ones(6, np.float32)
    keep[2] = 0.0
    _, off = model.apply(variables, x, masks={"dense_1": keep})
    assert np.all(np.asarray(off["dense_1"])[:, 2] == 0.0)
    np.testing.assert_array_equal(off["dense_1/mask"], acts["dense_1/mask"])


# ----------------------------------------------------------------------------- training


def test_mwt_training_steps_update_generators_with_finite_losses():
    model = models.get_model("mlp", **KW)
    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=3, num_epochs=1)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=SHAPE)
    labels = train._label_params(state.params)
    assert labels["dense_0"]["generator"]["fc1"]["kernel"] == "generator"
    assert labels["dense_0"]["kernel"] == "model"
    before = jax.device_get(state.params)
    step = train.make_train_step(
        model=model,
        tx=tx,
        objective=objectives.mwt_objective(num_classes=N),
        preprocess=lambda images, rng: images.astype(jnp.float32) / 255.0,
    )
    rs = np.random.RandomState(0)
    losses = []
    for _ in range(3):
        batch = {
            "image": rs.randint(0, 256, (16, *SHAPE)).astype(np.uint8),
            "label": (np.arange(16) % N).astype(np.int32),
        }
        state, metrics = step(state, jax.device_put(batch))
        losses.append(float(metrics["loss"]))
        assert bool(metrics["finite"])
        assert {"cohesion", "coupling", "kernel_rate", "mask_mean"} <= set(metrics)
        assert 0.0 < float(metrics["kernel_rate"]) <= 1.0
    assert np.all(np.isfinite(losses))
    after = jax.device_get(state.params)
    for i in range(KW["depth"]):
        for part in ("fc1", "fc2"):
            moved = np.abs(
                after[f"dense_{i}"]["generator"][part]["kernel"]
                - before[f"dense_{i}"]["generator"][part]["kernel"]
            ).max()
            assert moved > 0, (i, part)


# ----------------------------------------------------------------------------- modules


def _keep(seed=0):
    rs = np.random.RandomState(seed)
    keep = {}
    for i in range(KW["depth"]):
        k = rs.rand(N, 6) < 0.5
        k[:, 0] = True
        keep[f"dense_{i}"] = k
    return keep


def test_kept_units_exclude_generators_and_rebuild_the_pruned_form():
    _, variables = _mlp()
    keep = {n: k[1] for n, k in _keep().items()}
    kw = {"classes": None, "method": "mwt", "input_shape": SHAPE}
    units = portable.kept_units("mlp", KW, variables, keep, **kw)
    assert not any("generator" in k for k in units.index)
    assert set(units.index) == {
        f"params/{layer}/{leaf}"
        for layer in ("dense_0", "dense_1", "dense_2", "head")
        for leaf in ("kernel", "bias")
    }
    np.testing.assert_array_equal(
        units.index["params/dense_1/bias"], np.flatnonzero(keep["dense_1"])
    )
    model, pv = portable.rebuild([units], "mlp", KW, keep, **kw)
    want_model, want = prune("mlp", KW, variables, keep, method="mwt", input_shape=SHAPE)
    assert model == want_model and not model.mask_generators
    jax.tree.map(np.testing.assert_array_equal, pv, want)


def test_composition_of_mlp_mwt_modules_equals_the_masked_union():
    _, variables = _mlp()
    parent = mz.describe_parent("mlp", dataset="synthetic", input_shape=SHAPE, **KW)
    modules = [mz.module_for_class(_keep(), c, parent=parent, method="mwt") for c in range(N)]
    composed = cp.compose([modules[3], modules[1]], {cp.parent_key(parent): variables})
    assert composed.classes == (1, 3)
    assert composed.groups[0].network.model.num_classes == N  # MwT keeps the whole classifier
    x = _x()
    union = mz.union([modules[1], modules[3]])
    model, masks = masked_equivalent("mlp", KW, union.keep, method="mwt", input_shape=SHAPE)
    want = model.apply(mz.drop_generators(variables), x, masks=masks)[0][:, [1, 3]]
    np.testing.assert_allclose(composed.apply_fn(x), want, rtol=1e-5, atol=1e-5)
