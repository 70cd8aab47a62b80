"""Tests for external keep-masks on modjax.models: identity, switching channels off, jit, errors."""

import functools

import jax
import numpy as np
import pytest

from modjax import models
from tests.models._cases import KEY, REAL, B, N, W, _build, _model, c

# ----------------------------------------------------------------------------- external masks


@functools.cache
def _points(name: str, mg: bool) -> dict[str, int]:
    return models.mask_points(_model(name, mg))


def _ones_masks(name: str, mg: bool):
    points = _points(name, mg)
    return {
        n: np.ones((ch,), np.float32) if i % 2 else np.ones((B, ch), np.float32)
        for i, (n, ch) in enumerate(points.items())
    }


@pytest.mark.parametrize("name,mg", REAL)
def test_all_ones_masks_reproduce_the_model(name, mg):
    built = _build(name, mg)
    logits, acts = built.model.apply(
        built.variables, built.x, train=False, masks=_ones_masks(name, mg)
    )
    np.testing.assert_array_equal(logits, built.eval_out[0])
    for k, a in built.eval_out[1].items():
        np.testing.assert_array_equal(acts[k], a)


@pytest.mark.parametrize(
    "name,mg,layer",
    [
        ("mlp", False, "dense_2"),
        ("mlp", True, "dense_1"),
        ("lenet5", True, "fc_0"),
        ("simcnn", False, "conv_5"),
        ("rescnn", False, "conv_3"),
        ("vgg16", True, "conv_0"),
        ("vgg16", True, "fc_1"),
        ("resnet18", True, "layer2.0"),
        ("resnet18", True, "layer3.1.conv1"),
        ("mobilenet", True, "block3.dw"),
        ("resnet20", True, "layer2.1.conv1"),
        ("resnet20_nobn", True, "layer3.0"),
        ("vit_tiny", True, "block1.attn"),  # a head
        ("vit_tiny", True, "block0.mlp"),  # an MLP neuron
    ],
)
def test_zero_mask_switches_a_channel_off(name, mg, layer):
    built = _build(name, mg)
    channels = _points(name, mg)[layer]
    ref = np.asarray(built.eval_out[1][layer]).reshape(-1, channels)
    ch = int(np.argmax(ref.sum(axis=0)))  # the most active channel
    assert ref[:, ch].max() > 0
    keep = np.ones((channels,), np.float32)
    keep[ch] = 0.0
    _, acts = built.model.apply(built.variables, built.x, train=False, masks={layer: keep})
    got = np.asarray(acts[layer]).reshape(-1, channels)
    assert np.all(got[:, ch] == 0.0)
    others = np.arange(channels) != ch
    np.testing.assert_array_equal(got[:, others], ref[:, others])


@pytest.mark.parametrize(
    "name,widths", [("resnet18", (64, 128)), ("resnet20", (16, 32)), ("resnet20_nobn", (16, 32))]
)
def test_resnet_pre_add_mask_points(name, widths):
    built = _build(name, True)
    # Identity shortcut: switching conv2 off leaves ReLU(0 + x) = x (x is post-ReLU); the keep-mask
    # multiplies the generator-masked BN (or, without BN, conv) output.
    _, acts = built.model.apply(
        built.variables, built.x, masks={"layer1.0.conv2": np.zeros(c(widths[0]), np.float32)}
    )
    np.testing.assert_array_equal(acts["layer1.0"], acts["stem"])
    # Downsample block: both branches off gives an all-zero output.
    zeros = np.zeros(c(widths[1]), np.float32)
    _, acts = built.model.apply(
        built.variables,
        built.x,
        masks={"layer2.0.conv2": zeros, "layer2.0.shortcut": zeros},
    )
    assert np.all(np.asarray(acts["layer2.0"]) == 0.0)


def test_masks_work_under_jit():
    built = _build("lenet5", True)
    masks = _ones_masks("lenet5", True)
    apply = jax.jit(lambda v, x, m: built.model.apply(v, x, train=False, masks=m))
    logits, acts = apply(built.variables, built.x, masks)
    np.testing.assert_allclose(logits, built.eval_out[0], rtol=1e-5, atol=1e-6)
    assert sorted(acts) == sorted(built.eval_out[1])  # jit returns dicts with sorted keys


def test_bad_masks_raise():
    built = _build("vgg16", True)
    apply = functools.partial(built.model.apply, built.variables, built.x)
    with pytest.raises(ValueError, match=r"no mask point of vgg16.*valid names: \['conv_0'"):
        apply(masks={"conv_99": np.ones(3)})
    with pytest.raises(ValueError, match="no mask point"):
        apply(masks={"head": np.ones(N)})
    with pytest.raises(ValueError, match=rf"'conv_0' has {c(64)} channels"):
        apply(masks={"conv_0": np.ones(c(64) + 1)})
    with pytest.raises(ValueError, match=rf"masks\['fc_1'\] has shape \({B + 1}, {c(512)}\)"):
        apply(masks={"fc_1": np.ones((B + 1, c(512)))})
    with pytest.raises(ValueError, match="no mask point of resnet18"):
        models.get_model("resnet18", width=W).init(KEY, built.x, masks={"layer5.0": np.ones(1)})
