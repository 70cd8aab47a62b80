"""Tests for modjax.models architectures: shapes, act order, tracked layers, mask generators, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import models
from modjax.models import layers
from tests.models._cases import (
    CASES,
    KEY,
    REAL,
    TANH1,
    B,
    N,
    W,
    _abstract,
    _acts,
    _build,
    _input,
    _masked,
    _model,
    _tracked,
    c,
)


@pytest.mark.parametrize("name,mg", CASES)
def test_shapes_and_act_order(name, mg):
    model = _model(name, mg)
    variables, outs = _abstract(model, _input())
    has_bn = name in ("vgg16", "vgg16_moda", "resnet18", "mobilenet", "resnet20") or (
        mg and name not in ("mlp", "resnet20_nobn", "vit_tiny")
    )
    assert sorted(variables) == sorted(["params"] + ["batch_stats"] * has_bn)
    for logits, acts, updates in outs:  # eval, train
        assert logits.shape == (B, N)
        assert acts == [(k, (B, *s)) for k, s in _acts(name, mg)]
        expected_updates = {"batch_stats": variables["batch_stats"]} if has_bn else {}
        assert jax.tree.structure(updates) == jax.tree.structure(expected_updates)
    if mg or name in ("mlp", "vit_tiny"):  # the plain variants have the same tracked layers
        assert list(models.tracked_layers(model)) == [k for k, _ in _tracked(name)]
        assert list(models.masked_layers(model)) == (_masked(name) if mg else [])


@pytest.mark.parametrize("name,mg", REAL)
def test_real_forward(name, mg):
    built = _build(name, mg)
    for logits, acts in (built.eval_out, built.train_out):
        assert logits.shape == (B, N) and bool(np.all(np.isfinite(logits)))
        assert [(k, a.shape) for k, a in acts.items()] == [(k, (B, *s)) for k, s in _acts(name, mg)]
        for k, a in acts.items():
            if not k.endswith("/mask"):
                assert np.all(np.asarray(a) >= 0), f"{k} is not a post-ReLU activation"


@pytest.mark.parametrize(
    "name,count", [("lenet5", 4), ("vgg16_moda", 15), ("resnet18", 17), ("mobilenet", 27)]
)
def test_tracked_layer_counts(name, count):
    assert len(models.tracked_layers(name)) == count


def test_mask_points_include_resnet_pre_add_and_block_points():
    points = models.mask_points("resnet18", width=W)
    assert len(points) == 1 + 8 * 3 + 3
    assert list(points)[:8] == [
        "stem",
        "layer1.0.conv1",
        "layer1.0.conv2",
        "layer1.0",
        "layer1.1.conv1",
        "layer1.1.conv2",
        "layer1.1",
        "layer2.0.conv1",
    ]
    assert list(points)[8:10] == ["layer2.0.conv2", "layer2.0.shortcut"]
    assert points["layer2.0.shortcut"] == c(128) and points["layer4.1"] == c(512)
    assert list(models.mask_points("simcnn")) == [k for k, _ in _tracked("simcnn")]
    assert models.mask_points("mlp", depth=2, hidden=10) == {"dense_0": 10, "dense_1": 10}


@pytest.mark.parametrize("name", [name for name, mg in REAL if mg])
def test_generator_masks_at_init(name):
    acts = _build(name, True).eval_out[1]
    masks = [a for k, a in acts.items() if k.endswith("/mask")]
    assert len(masks) == len(_masked(name))
    for m in masks:
        assert m.ndim == 2 and m.shape[0] == B
        m = np.asarray(m)
        assert np.all(m >= 0) and np.all(m < 1)
    # b₂ = 1 puts the masks near tanh(1) ≈ 0.76 at init; W₂h spreads them around it.
    assert abs(float(np.mean([m.mean() for m in masks])) - TANH1) < 0.2


def test_mask_generator_is_exactly_tanh1_on_zero_input():
    gen = models.MaskGenerator(features=5)
    x = jnp.zeros((3, 4, 4, 6))
    params = gen.init(KEY, x)["params"]
    assert params["fc1"].keys() == {"kernel"} and params["fc1"]["kernel"].shape == (6, 5)
    np.testing.assert_array_equal(params["fc2"]["bias"], np.ones(5, np.float32))
    np.testing.assert_allclose(gen.apply({"params": params}, x), np.full((3, 5), TANH1), rtol=1e-6)
    # H_g = C_out if C_out < 128 else C_out // 2
    hidden = [layers.generator_hidden(ch) for ch in (1, 127, 128, 512, 1024)]
    assert hidden == [1, 127, 64, 256, 512]
    big = jax.eval_shape(models.MaskGenerator(features=256).init, KEY, x)["params"]
    assert big["fc1"]["kernel"].shape == (6, 128) and big["fc2"]["kernel"].shape == (128, 256)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"name": "nope"}, r"unknown model name='nope'; expected one of \['mlp', 'lenet5'"),
        ({"name": "mlp", "depth": 0}, "depth=0 must be an int >= 1"),
        ({"name": "simcnn", "width": 0}, "width=0 must be a positive number"),
        ({"name": "resnet18", "width": -0.5}, "width=-0.5 must be a positive number"),
        ({"name": "vgg16", "num_classes": 0}, "num_classes=0"),
        ({"name": "vgg16", "depth": 3}, r"unknown options \['depth'\] for model 'vgg16'"),
        ({"name": "vgg16", "variant": "moda"}, r"unknown options \['variant'\]"),
        ({"name": "rescnn", "dropout_rate": 1.0}, r"dropout_rate=1.0 must be in \[0, 1\)"),
    ],
)
def test_get_model_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.get_model(**kwargs)


def test_other_errors():
    with pytest.raises(ValueError, match=r"simcnn needs NHWC inputs of at least 32x32"):
        models.get_model("simcnn").init(KEY, jnp.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match="need a model name"):
        models.tracked_layers(models.get_model("mlp"), depth=2)
    with pytest.raises(ValueError, match="part='flops'"):
        models.count_macs(models.get_model("mlp"), (4,), part="flops")
    with pytest.raises(ValueError, match=r"input_shape=\(0, 3\)"):
        models.count_macs(models.get_model("mlp"), (0, 3))
    with pytest.raises(TypeError, match="mask_generators=1 must be a bool"):
        models.get_model("vgg16", mask_generators=1)
