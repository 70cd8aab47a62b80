"""Tests for modjax.models sizes (METHODS §3.9) and pruned instances (channel and wiring overrides)."""

import jax
import jax.numpy as jnp
import pytest

from modjax import models
from tests.models._cases import KEY, W, _input, c

# ----------------------------------------------------------------------------- reference sizes

# METHODS §3.9 at width 1, 32×32×3: (masked layers, K, total conv kernels, generator params, MACs M)
REFERENCE = {
    "vgg16": (12, 4_160, 4_224, 1_728_576, 313.73),
    "vgg16_moda": (None, None, 4_224, None, 332.11),
    "simcnn": (12, 4_160, 4_224, 1_728_576, 313.73),
    "rescnn": (11, 4_224, 4_288, 1_867_904, 431.17),
    "resnet18": (19, 4_736, 4_800, 1_585_792, 555.42),
    "mobilenet": (26, 10_912, 10_944, 6_298_272, 46.35),
}
# Parameters of the standard models, by hand (BN counts γ and β; running stats are not params).
# Conv weights of config D: 9·(3·64 + 64·64 + 64·128 + 128·128 + 128·256 + 2·256·256 + 256·512
#   + 5·512·512) = 14,710,464, conv biases 4,224, BN 2·4,224 = 8,448.
# vgg16 (a):  14,710,464 + 4,224 + 8,448 + (512·512 + 512)·2 + 512·10 + 10 = 15,253,578.
# vgg16 (b):  14,723,136 + 512·4096 + 4096 + 4096·4096 + 4096 + 4096·10 + 10 = 33,646,666.
# simcnn:     14,710,464 + 4,224 + 530,442 (same FC as (a)) = 15,245,130.
# rescnn:     9·(3·64 + 64·128 + 2·128·128 + 128·256 + 256·512 + 6·512·512) = 16,000,704,
#             + 4,288 biases + 512·10 + 10 = 16,010,122.
# resnet18:   kuangliu/torchvision CIFAR ResNet18 = 11,173,962.
# mobilenet:  kuangliu MobileNet-v1 CIFAR = 3,217,226.
# lenet5:     (3·6·25 + 6) + (6·16·25 + 16) + (400·120 + 120) + (120·84 + 84) + (84·10 + 10) = 62,006.
PARAMS = {
    "vgg16": 15_253_578,
    "vgg16_moda": 33_646_666,
    "simcnn": 15_245_130,
    "rescnn": 16_010_122,
    "resnet18": 11_173_962,
    "mobilenet": 3_217_226,
    "lenet5": 62_006,
}


@pytest.mark.parametrize("name", list(REFERENCE))
def test_reference_sizes(name):
    layers_, kernels, conv_kernels, gen_params, macs_m = REFERENCE[name]
    std = models.summarize(models.get_model(name))
    assert std["params"] == PARAMS[name]
    assert round(std["macs"] / 1e6, 2) == macs_m
    assert std["conv_kernels"] == conv_kernels
    assert std["masked_layers"] == std["generator_params"] == std["generator_macs"] == 0
    if layers_ is None:
        return
    mwt = models.summarize(models.get_model(name, mask_generators=True))
    assert mwt["masked_layers"] == layers_
    assert mwt["masked_kernels"] == kernels
    assert mwt["conv_kernels"] == conv_kernels
    assert mwt["generator_params"] == gen_params
    assert mwt["macs"] == std["macs"]  # generators are not model MACs
    assert mwt["generator_macs"] == gen_params - kernels  # all but the b₂ biases
    extra_bn = 2 * kernels if name in ("simcnn", "rescnn") else 0  # §4.2: modular versions gain BN
    assert mwt["params"] == std["params"] + gen_params + extra_bn


def test_small_model_sizes_by_hand():
    lenet = models.get_model("lenet5")
    assert (
        models.count_params(jax.eval_shape(lenet.init, KEY, jnp.zeros((1, 32, 32, 3)))["params"])
        == PARAMS["lenet5"]
    )
    # conv_0 28²·25·3·6 + conv_1 10²·25·6·16 + 400·120 + 120·84 + 84·10
    assert models.count_macs(lenet, (32, 32, 3)) == 352_800 + 240_000 + 48_000 + 10_080 + 840
    assert models.count_conv_kernels(lenet) == 22
    mlp = models.get_model("mlp")  # MLP-4×49 on MNIST: 784·49 + 49 + 3·(49·49 + 49) + 49·10 + 10
    assert models.summarize(mlp, (28, 28, 1))["params"] == 46_315
    assert models.count_macs(mlp, (28, 28, 1)) == 784 * 49 + 3 * 49 * 49 + 49 * 10
    assert models.count_masked_kernels(models.get_model("lenet5", mask_generators=True)) == 16
    assert models.count_masked_kernels(lenet) == 0


def test_mlp_mwt_sizes_by_hand():
    # MLP-4×49 with a neuron-level generator on every hidden layer, H_g = 49 (< 128):
    # dense_0: 784·49 (W₁) + 49·49 (W₂) + 49 (b₂); dense_1..3: 49·49 + 49·49 + 49 each.
    gen = (784 * 49 + 49 * 49 + 49) + 3 * (49 * 49 + 49 * 49 + 49)
    assert gen == 55_419
    mwt = models.summarize(models.get_model("mlp", mask_generators=True), (28, 28, 1))
    assert mwt == {
        "params": 46_315 + gen,
        "generator_params": gen,
        "macs": 784 * 49 + 3 * 49 * 49 + 49 * 10,  # the backbone's, unchanged
        "generator_macs": gen - 4 * 49,  # all but the b₂ biases
        "conv_kernels": 0,
        "masked_layers": 4,
        "masked_kernels": 4 * 49,
    }


# ----------------------------------------------------------------------------- pruned instances


def test_channel_overrides():
    vgg = models.get_model("vgg16", width=W, channels={"conv_3": 5, "fc_1": 3})
    points = models.mask_points(vgg)
    assert (points["conv_3"], points["fc_1"], points["conv_2"]) == (5, 3, c(128))
    assert hash(vgg) == hash(models.get_model("vgg16", width=W, channels={"fc_1": 3, "conv_3": 5}))
    assert models.mask_points("mlp", channels={"dense_2": 4})["dense_2"] == 4
    stem = models.mask_points("mobilenet", width=W, channels={"stem": 2, "block0.pw": 3})
    assert (stem["stem"], stem["block0.dw"], stem["block0.pw"], stem["block1.dw"]) == (2, 2, 3, 3)
    with pytest.raises(ValueError, match=r"channels has keys \['conv_99'\] that name no layer"):
        models.mask_points("vgg16", width=W, channels={"conv_99": 3})
    with pytest.raises(ValueError, match="no layer of mobilenet with a settable width"):
        models.mask_points("mobilenet", width=W, channels={"block0.dw": 2})
    with pytest.raises(ValueError, match=r"channels\['conv_1'\]=-1 must be an int >= 0"):
        models.get_model("vgg16", channels={"conv_1": -1})
    with pytest.raises(ValueError, match=r"unknown options \['residual'\] for model 'vgg16'"):
        models.get_model("vgg16", residual={})


def test_residual_and_depthwise_wiring():
    wiring = {
        "layer1.0": ((0, -1, 1, 2), (0, 1, -1, 5)),
        "layer1.1": (tuple(range(8)), (0, 1, 2, 3) + (-1,) * 4),
    }
    res = models.get_model("resnet18", width=W, channels={"layer1.0.conv2": 3}, residual=wiring)
    points = models.mask_points(res)
    assert (points["layer1.0.conv2"], points["layer1.0"], points["layer1.1.conv1"]) == (3, 4, c(64))
    v = jax.eval_shape(res.init, KEY, _input())
    assert "shortcut" not in v["params"]["layer1_1"]  # the shortcut type follows unpruned widths
    with pytest.raises(ValueError, match=r"'layer1.0' joins 3 and 8 channels: a pruned instance"):
        models.mask_points("resnet18", width=W, channels={"layer1.0.conv2": 3})
    with pytest.raises(ValueError, match=r"residual\['conv_3'\] has branch_src of length 2"):
        models.get_model("rescnn", residual={"conv_3": ((0, 1), (0,))})
    with pytest.raises(ValueError, match=r"index wiring has keys \['conv_4'\]"):
        models.mask_points("rescnn", width=W, residual={"conv_4": ((0,), (0,))})
    with pytest.raises(ValueError, match=r"dw_inputs\['block0.dw'\]=\(-2,\) must be a sequence"):
        models.get_model("mobilenet", dw_inputs={"block0.dw": (-2,)})
    mob = models.mask_points("mobilenet", width=W, dw_inputs={"block1.dw": (7, -1, 0)})
    assert (mob["block0.pw"], mob["block1.dw"], mob["block1.pw"]) == (c(64), 3, c(128))
