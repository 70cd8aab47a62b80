"""MwT on the CIFAR ResNet-v1 (METHODS §4.1, §4.2 as for ResNet18), with and without BatchNorm.

Masked: every block's conv1 (generator reads the block input), conv2 (reads ReLU(masked conv1))
and projection shortcut (reads the block input); the stem and identity shortcuts are not. The
mask multiplies the BN output, or the conv output where there is no BN (the `_nobn` models, the
shortcut). Checks the layers and sizes, the parameter layout (generators under the conv's scope),
the masked forward by hand, MwT training, and kept units / composition of extracted modules.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import models, objectives, train
from modjax import modular as mz
from modjax.modular import compose as cp
from modjax.modular import portable
from modjax.modular.prune import masked_equivalent, prune

SHAPE = (16, 16, 3)
N = 4
KW = {"num_classes": N, "depth": 14, "width": 0.25, "mask_generators": True}  # 4/8/16 channels
VARIANTS = {"bn": {}, "nobn": {"batch_norm": False}}
KEY = jax.random.key(0)


def _kw(variant: str) -> dict:
    return {**KW, **VARIANTS[variant]}


def _expected_masked(blocks: int = 2) -> list[str]:
    out = []
    for s in (1, 2, 3):
        for b in range(blocks):
            out += [f"layer{s}.{b}.conv1", f"layer{s}.{b}.conv2"]
            out += [f"layer{s}.{b}.shortcut"] if s > 1 and b == 0 else []
    return out


def _random_variables(variant: str, seed: int = 0) -> tuple[object, dict]:
    """Random He-scaled kernels, biases, BN statistics and generator output biases, so that some
    masks are exact zeros and conv2 (zero at init without BN) is not."""
    model = models.get_model("resnet_cifar", **_kw(variant))
    abstract = models.trace(model, SHAPE).variables
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        names = [getattr(k, "key", None) for k in path]
        shape = leaf.shape
        if names[-1] == "kernel":
            a = rng.normal(0.0, math.sqrt(2.0 / math.prod(shape[:-1])), shape)
        elif "generator" in names:  # fc2 bias: b₂ around 0 rather than 1, masks spread out
            a = rng.normal(0.0, 0.5, shape)
        elif names[-1] in ("bias", "mean"):
            a = rng.normal(0.0, 0.2, shape)
        else:  # BN scale, running var
            a = rng.uniform(0.5, 1.5, shape)
        return jnp.asarray(a, jnp.float32)

    return model, jax.tree_util.tree_map_with_path(fill, dict(abstract))


def _x(num: int = 6, seed: int = 1) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (num, *SHAPE), jnp.float32)


# ----------------------------------------------------------------------------- layers and sizes


@pytest.mark.parametrize("variant", VARIANTS)
def test_masked_layers_and_parameter_layout(variant):
    model = models.get_model("resnet_cifar", **_kw(variant))
    assert list(models.masked_layers(model, input_shape=SHAPE)) == _expected_masked()
    found = models.trace(model, SHAPE)
    assert [k for k in found.acts if k.endswith("/mask")] == [
        f"{n}/mask" for n in _expected_masked()
    ]
    params = found.variables["params"]
    assert "generator" not in params["stem"]  # the first conv is never masked
    assert set(params["layer2_0"]["shortcut"]) == {"conv", "generator"}  # no BN on the shortcut
    # Shortcut generator reads the block input (4 channels); conv2's reads conv1's output (8).
    assert params["layer2_0"]["shortcut"]["generator"]["fc1"]["kernel"].shape == (4, 8)
    assert params["layer2_0"]["conv2"]["generator"]["fc1"]["kernel"].shape == (8, 8)
    plain = models.get_model("resnet_cifar", **{**_kw(variant), "mask_generators": False})
    shapes = jax.tree.map(lambda s: s.shape, mz.drop_generators(found.variables))
    assert shapes == jax.tree.map(lambda s: s.shape, models.trace(plain, SHAPE).variables)


@pytest.mark.parametrize("name", ["resnet20", "resnet20_nobn"])
def test_resnet20_half_width_sizes(name):
    """K and generator parameters (C_in·H_g + H_g·C_out + C_out, H_g = C_out) at width 0.5."""
    model = models.get_model(name, width=0.5, mask_generators=True)
    sizes = models.summarize(model)
    points = models.masked_layers(model)
    assert len(points) == 20 == sizes["masked_layers"]  # 9 blocks × 2 + 2 shortcuts
    assert sizes["masked_kernels"] == 6 * 8 + 7 * 16 + 7 * 32 == 384
    c_in = {"layer2.0.conv1": 8, "layer2.0.shortcut": 8, "layer3.0.conv1": 16}
    c_in["layer3.0.shortcut"] = 16  # the other layers read C_out channels
    by_hand = sum(c_in.get(n, c) * c + c * c + c for n, c in points.items())
    assert sizes["generator_params"] == by_hand == 17_792
    plain = models.summarize(models.get_model(name, width=0.5))
    assert sizes["params"] - sizes["generator_params"] == plain["params"]
    assert sizes["macs"] == plain["macs"] and sizes["conv_kernels"] == plain["conv_kernels"] == 392


# ----------------------------------------------------------------------------- the forward


def _conv(x, conv, strides=1):
    y = jax.lax.conv_general_dilated(
        x,
        conv["kernel"],
        (strides, strides),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
    return y + conv["bias"]


def _generator(g, x):
    z = jnp.mean(x, axis=(1, 2))
    h = jax.nn.relu(z @ g["fc1"]["kernel"])
    return jax.nn.relu(jnp.tanh(h @ g["fc2"]["kernel"] + g["fc2"]["bias"]))


@pytest.mark.parametrize("variant", VARIANTS)
def test_masked_forward_by_hand_and_equal_to_the_plain_model_with_generator_masks(variant):
    model, variables = _random_variables(variant)
    x = _x()
    logits, acts = model.apply(variables, x)
    p, stats = variables["params"], variables.get("batch_stats", {})
    bn = variant == "bn"

    def unit(name, block, inputs, strides=1):
        y = _conv(inputs, p[block][name]["conv"], strides)
        if bn and name != "shortcut":  # eval BN (Keras eps 1e-3), then the mask
            s, b = stats[block][name]["bn"], p[block][name]["bn"]
            y = (y - s["mean"]) / jnp.sqrt(s["var"] + 1e-3) * b["scale"] + b["bias"]
        m = _generator(p[block][name]["generator"], inputs)
        return y * m[:, None, None, :], m

    # Projection block layer2.0: conv1 and the shortcut read the block input, conv2 reads h.
    block_in = acts["layer1.1"]
    pre1, m1 = unit("conv1", "layer2_0", block_in, 2)
    np.testing.assert_allclose(acts["layer2.0.conv1/mask"], m1, rtol=1e-5, atol=1e-6)
    h = jax.nn.relu(pre1)
    np.testing.assert_allclose(acts["layer2.0.conv1"], h, rtol=1e-4, atol=1e-4)
    o, m2 = unit("conv2", "layer2_0", h)
    s, m3 = unit("shortcut", "layer2_0", block_in, 2)
    np.testing.assert_allclose(acts["layer2.0.conv2/mask"], m2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(acts["layer2.0.shortcut/mask"], m3, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["layer2.0"], jax.nn.relu(o + s), rtol=1e-4, atol=1e-4)
    masks = {n.removesuffix("/mask"): a for n, a in acts.items() if n.endswith("/mask")}
    assert any(float(jnp.min(m)) == 0.0 for m in masks.values())  # some kernel switched off
    # The plain model with the generator masks as per-sample keep-masks gives the same forward.
    plain = models.get_model("resnet_cifar", **{**_kw(variant), "mask_generators": False})
    plain_logits, _ = plain.apply(mz.drop_generators(variables), x, masks=masks)
    np.testing.assert_allclose(plain_logits, logits, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("variant", VARIANTS)
def test_mwt_training_steps_update_every_generator_with_finite_losses(variant):
    model = models.get_model("resnet_cifar", **_kw(variant))
    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=3, num_epochs=1)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=SHAPE)
    labels = train._label_params(state.params)
    assert labels["layer2_0"]["shortcut"]["generator"]["fc1"]["kernel"] == "generator"
    assert labels["layer2_0"]["shortcut"]["conv"]["kernel"] == "model"
    before = jax.device_get(state.params)
    step = train.make_train_step(
        model=model,
        tx=tx,
        objective=objectives.mwt_objective(num_classes=N),
        preprocess=lambda images, rng: images.astype(jnp.float32) / 255.0,
    )
    rs = np.random.RandomState(0)
    for _ in range(3):
        batch = {
            "image": rs.randint(0, 256, (16, *SHAPE)).astype(np.uint8),
            "label": (np.arange(16) % N).astype(np.int32),
        }
        state, metrics = step(state, jax.device_put(batch))
        assert bool(metrics["finite"]) and np.isfinite(float(metrics["loss"]))
        assert 0.0 < float(metrics["kernel_rate"]) <= 1.0
    after = jax.device_get(state.params)
    for name in _expected_masked():
        block, conv = name.rsplit(".", 1)
        path = (block.replace(".", "_"), conv, "generator")
        for part in ("fc1", "fc2"):
            old, new = (t[path[0]][path[1]][path[2]][part]["kernel"] for t in (before, after))
            assert np.abs(new - old).max() > 0, (name, part)


# ----------------------------------------------------------------------------- modules


def _keep(seed: int = 0) -> dict[str, np.ndarray]:
    """Per-class keep-masks `{layer: bool [N, C]}` over the masked layers."""
    rs = np.random.RandomState(seed)
    points = models.masked_layers("resnet_cifar", input_shape=SHAPE, **_kw("bn"))
    keep = {}
    for name, c in points.items():
        k = rs.rand(N, c) < 0.5
        k[:, 0] = True
        keep[name] = k
    return keep


@pytest.mark.parametrize("variant", VARIANTS)
def test_kept_units_exclude_generators_and_rebuild_the_pruned_form(variant):
    _, variables = _random_variables(variant)
    kw = _kw(variant)
    keep = {n: k[1] for n, k in _keep().items()}
    opts = {"classes": None, "method": "mwt", "input_shape": SHAPE}
    units = portable.kept_units("resnet_cifar", kw, variables, keep, **opts)
    assert units.index and not any("generator" in k for k in units.index)
    assert "params/layer2_0/shortcut/conv/kernel" in units.index
    assert ("batch_stats/layer2_0/conv1/bn/mean" in units.index) == (variant == "bn")
    model, pv = portable.rebuild([units], "resnet_cifar", kw, keep, **opts)
    want_model, want = prune("resnet_cifar", kw, variables, keep, **opts)
    assert model == want_model and not model.mask_generators
    jax.tree.map(np.testing.assert_array_equal, pv, want)


@pytest.mark.parametrize("variant", VARIANTS)
def test_composition_of_modules_equals_the_masked_union(variant):
    _, variables = _random_variables(variant)
    kw = _kw(variant)
    parent = mz.describe_parent("resnet_cifar", dataset="synthetic", input_shape=SHAPE, **kw)
    modules = [mz.module_for_class(_keep(), c, parent=parent, method="mwt") for c in range(N)]
    composed = cp.compose([modules[3], modules[1]], {cp.parent_key(parent): variables})
    assert composed.classes == (1, 3)
    x = _x()
    union = mz.union([modules[1], modules[3]])
    model, masks = masked_equivalent("resnet_cifar", kw, union.keep, input_shape=SHAPE)
    want = model.apply(mz.drop_generators(variables), x, masks=masks)[0][:, [1, 3]]
    assert float(jnp.abs(want).max()) > 0.1
    np.testing.assert_allclose(composed.apply_fn(x), want, rtol=1e-5, atol=1e-5)
