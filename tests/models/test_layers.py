"""Tests for modjax.models layers: train vs eval, initializers and PyTorch parity."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import models
from modjax.models import layers
from tests.models._cases import KEY, _build, c

# ----------------------------------------------------------------------------- train vs eval


def test_dropout_only_in_train_mode():
    built = _build("simcnn", False)  # no BN: only dropout differs
    model, v, x = built.model, built.variables, built.x

    def train(key):
        return model.apply(v, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])[0][0]

    np.testing.assert_array_equal(train(KEY), built.train_out[0])
    assert not np.allclose(train(jax.random.key(5)), built.train_out[0])
    assert not np.allclose(built.train_out[0], built.eval_out[0])
    np.testing.assert_array_equal(model.apply(v, x, train=False)[0], built.eval_out[0])
    assert built.updates == {}


def test_batchnorm_train_statistics_and_eval_running_stats():
    built = _build("vgg16", True)  # conv_0: unmasked Conv + BN
    params = built.variables["params"]["conv_0"]["conv"]
    y = jax.lax.conv_general_dilated(
        built.x,
        params["kernel"],
        (1, 1),
        ((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    y = np.asarray(y) + np.asarray(params["bias"])
    new = built.updates["batch_stats"]["conv_0"]["bn"]
    np.testing.assert_allclose(new["mean"], 0.1 * np.mean(y, axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
    # Eval uses the running stats (mean 0, var 1 at init): conv_0 act = ReLU(y / sqrt(1 + eps)).
    np.testing.assert_allclose(
        built.eval_out[1]["conv_0"], np.maximum(y / np.sqrt(1 + 1e-5), 0.0), rtol=1e-5, atol=1e-5
    )
    assert not np.allclose(built.train_out[0], built.eval_out[0])


# ----------------------------------------------------------------------------- initializers


def _std_ratio(w, expected_std):
    return float(np.std(np.asarray(w))) / expected_std


def test_conv_init_is_untruncated_kaiming_fan_out():
    for name, mg, unit in (
        ("vgg16", True, ("conv_12",)),
        ("simcnn", False, ("conv_12",)),
        ("resnet18", True, ("layer4_1", "conv2")),
    ):
        params = _build(name, mg).variables["params"]
        kernel = functools.reduce(lambda tree, key: tree[key], unit, params)["conv"]["kernel"]
        assert kernel.shape == (3, 3, c(512), c(512))
        std = math.sqrt(2.0 / (9 * c(512)))
        assert abs(_std_ratio(kernel, std) - 1) < 0.03
        # Untruncated: ≈ 4.6% of a normal lies beyond 2σ (Flax's truncated init has none).
        assert np.mean(np.abs(np.asarray(kernel)) > 2 * std) > 0.03
    vgg = _build("vgg16", True).variables["params"]
    np.testing.assert_array_equal(vgg["conv_3"]["conv"]["bias"], 0.0)
    np.testing.assert_array_equal(vgg["conv_3"]["bn"]["scale"], 1.0)
    np.testing.assert_array_equal(vgg["conv_3"]["bn"]["bias"], 0.0)
    dw = _build("mobilenet", True).variables["params"]["block9"]["dw"]["conv"]["kernel"]
    assert dw.shape == (3, 3, 1, c(512))  # depthwise; fan_out = 9·C as in PyTorch
    assert abs(_std_ratio(dw, math.sqrt(2.0 / (9 * c(512)))) - 1) < 0.15


def test_dense_and_generator_inits():
    vgg = _build("vgg16", True).variables["params"]
    assert abs(_std_ratio(vgg["fc_1"]["kernel"], 0.01) - 1) < 0.05  # N(0, 0.01²)
    np.testing.assert_array_equal(vgg["fc_1"]["bias"], 0.0)
    gen = vgg["conv_12"]["generator"]
    assert gen["fc1"].keys() == {"kernel"} and gen["fc1"]["kernel"].shape == (c(512), c(512))
    assert abs(_std_ratio(gen["fc1"]["kernel"], math.sqrt(2.0 / c(512))) - 1) < 0.05
    np.testing.assert_array_equal(gen["fc2"]["bias"], 1.0)
    assert "generator" not in vgg["conv_0"]
    # PyTorch default: weight and bias ~ U(±1/sqrt(fan_in)).
    sim = _build("simcnn", False).variables["params"]["fc_0"]
    bound = 1.0 / math.sqrt(c(512))
    assert np.max(np.abs(sim["kernel"])) <= bound
    assert abs(_std_ratio(sim["kernel"], bound / math.sqrt(3)) - 1) < 0.05
    assert np.max(np.abs(sim["bias"])) <= bound and np.std(sim["bias"]) > 0
    res = _build("rescnn", False).variables["params"]["conv_2"]["conv"]  # standard: torch default
    bound = 1.0 / math.sqrt(9 * c(128))
    assert np.max(np.abs(res["kernel"])) <= bound
    assert abs(_std_ratio(res["kernel"], bound / math.sqrt(3)) - 1) < 0.05
    assert np.max(np.abs(res["bias"])) <= bound and np.std(res["bias"]) > 0
    mlp = _build("mlp", False).variables["params"]["dense_0"]  # Keras: Glorot-uniform, zero bias
    assert np.max(np.abs(mlp["kernel"])) <= math.sqrt(6.0 / (3072 + c(49)))
    np.testing.assert_array_equal(mlp["bias"], 0.0)


# ----------------------------------------------------------------------------- PyTorch parity


def test_stride2_conv_pads_symmetrically():
    unit = layers.ConvUnit(1, strides=2, use_bias=False, use_bn=False)
    x = jnp.ones((1, 4, 4, 1))
    v = unit.init(KEY, x, train=False)
    v = jax.tree.map(jnp.ones_like, v)
    y, mask = unit.apply(v, x, train=False)
    assert mask is None
    # PyTorch padding=1: the first window covers 2×2 real pixels (Flax "SAME" would give 9).
    np.testing.assert_array_equal(y[0, :, :, 0], [[4.0, 6.0], [6.0, 9.0]])


def test_flatten_is_channel_major():
    x = jnp.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # [B, H, W, C]
    flat = layers.flatten_nchw(x)
    h, w, ch = 1, 2, 3
    assert flat[1, ch * 3 * 4 + h * 4 + w] == x[1, h, w, ch]


def test_vgg_moda_at_224_px_flattens_7x7():
    model = models.get_model("vgg16_moda", num_classes=100)
    shapes = jax.eval_shape(model.init, KEY, jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
    assert shapes["params"]["fc_0"]["kernel"].shape == (512 * 7 * 7, 4096)
    assert shapes["params"]["head"]["kernel"].shape == (4096, 100)


def test_gather_or_zero():
    x = jnp.arange(6.0).reshape(1, 2, 3)
    np.testing.assert_array_equal(layers.gather_or_zero(x, (2, -1, 0)), [[[2, 0, 0], [5, 0, 3]]])
    assert layers.gather_or_zero(x, (0, 1, 2)) is x
    assert layers.gather_or_zero(x, None) is x
    with pytest.raises(ValueError, match=r"\(3,\) is out of range for 3 channels"):
        layers.gather_or_zero(x, (3,))
