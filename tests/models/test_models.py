"""Tests for modjax.models: architectures, acts, masks, inits and reference sizes (METHODS §3, §4)."""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import models
from modjax.models import layers

W = 0.125  # small width for real forward passes
B = 2
N = 7  # num_classes, distinct from every channel count at width W
KEY = jax.random.key(0)
CNNS = ("lenet5", "simcnn", "rescnn", "vgg16", "vgg16_moda", "resnet18", "mobilenet")
CASES = [("mlp", False)] + [(name, mg) for name in CNNS for mg in (False, True)]
TANH1 = math.tanh(1.0)


def c(n: int) -> int:
    return max(1, round(n * W))


# ----------------------------------------------------------------------------- expected layers
# Written out from METHODS §3 (not from the model code): (name, shape without batch) at width W.


def _tracked(name: str) -> list[tuple[str, tuple[int, ...]]]:
    if name == "mlp":
        return [(f"dense_{i}", (c(49),)) for i in range(4)]
    if name == "lenet5":
        return [
            ("conv_0", (28, 28, c(6))),
            ("conv_1", (10, 10, c(16))),
            ("fc_0", (c(120),)),
            ("fc_1", (c(84),)),
        ]
    vgg_widths = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
    vgg_sizes = (32, 32, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 2)
    if name in ("simcnn", "vgg16", "vgg16_moda"):
        hidden = 4096 if name == "vgg16_moda" else 512
        convs = [(f"conv_{i}", (s, s, c(w))) for i, (w, s) in enumerate(zip(vgg_widths, vgg_sizes))]
        return convs + [("fc_0", (c(hidden),)), ("fc_1", (c(hidden),))]
    if name == "rescnn":
        widths = (64, 128, 128, 128, 256, 512, 512, 512, 512, 512, 512, 512)
        sizes = (32, 32, 16, 16, 16, 8, 4, 4, 4, 2, 1, 1)
        return [(f"conv_{i}", (s, s, c(w))) for i, (w, s) in enumerate(zip(widths, sizes))]
    if name == "resnet18":
        out = [("stem", (32, 32, c(64)))]
        for s, (w, size) in enumerate(((64, 32), (128, 16), (256, 8), (512, 4)), start=1):
            for b in range(2):
                out += [
                    (f"layer{s}.{b}.conv1", (size, size, c(w))),
                    (f"layer{s}.{b}", (size,) * 2 + (c(w),)),
                ]
        return out
    assert name == "mobilenet"
    out, size, ch = [("stem", (32, 32, c(32)))], 32, 32
    cfg = (64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024)
    for i, v in enumerate(cfg):
        width, stride = (v, 1) if isinstance(v, int) else v
        size //= stride
        out += [(f"block{i}.dw", (size, size, c(ch))), (f"block{i}.pw", (size, size, c(width)))]
        ch = width
    return out


def _masked(name: str) -> list[str]:
    """MwT-masked layers in forward order (METHODS §4.2)."""
    if name == "resnet18":
        out = []
        for s in range(1, 5):
            for b in range(2):
                out += [f"layer{s}.{b}.conv1", f"layer{s}.{b}.conv2"]
                out += [f"layer{s}.{b}.shortcut"] if s > 1 and b == 0 else []
        return out
    if name == "mobilenet":
        return [n for n, _ in _tracked(name) if n != "stem"]
    return [n for n, _ in _tracked(name) if n.startswith("conv_") and n != "conv_0"]


def _acts(name: str, mg: bool) -> list[tuple[str, tuple[int, ...]]]:
    """Full acts in forward order: each generator mask comes right before its layer's output."""
    tracked = _tracked(name)
    if not mg:
        return tracked
    masked = dict.fromkeys(_masked(name))
    out = []
    for act, shape in tracked:
        pending = [m for m in masked if m == act or m.startswith(act + ".")]
        for m in pending:
            out.append((f"{m}/mask", (dict(tracked).get(m, shape)[-1],)))
            del masked[m]
        out.append((act, shape))
    assert not masked
    return out


# ----------------------------------------------------------------------------- built models
# Eager CPU forwards pay one XLA compile per new op shape, so every variant is checked abstractly
# (jax.eval_shape) and a representative subset runs for real.

REAL = [
    ("mlp", False),
    ("lenet5", True),
    ("simcnn", False),
    ("rescnn", False),
    ("vgg16", True),
    ("resnet18", True),
    ("mobilenet", True),
]


def _model(name: str, mg: bool):
    return models.get_model(name, num_classes=N, width=W, mask_generators=mg)


def _input() -> jax.Array:
    return jax.random.normal(jax.random.key(1), (B, 32, 32, 3))


class Built(NamedTuple):
    model: object
    variables: dict
    x: jax.Array
    eval_out: tuple
    train_out: tuple
    updates: dict


@functools.cache
def _build(name: str, mg: bool) -> Built:
    assert (name, mg) in REAL
    model, x = _model(name, mg), _input()
    variables = model.init({"params": KEY, "dropout": KEY}, x, train=False)
    eval_out = model.apply(variables, x, train=False)
    train_out, updates = model.apply(
        variables, x, train=True, rngs={"dropout": KEY}, mutable=["batch_stats"]
    )
    return Built(model, variables, x, eval_out, train_out, updates)


def _abstract(model, x):
    """Abstract init (whose forward is the eval pass) and train apply.

    Returns the variables and, for eval and train, `(logits, acts in forward order, updates)`.
    """
    order = {}

    def forward(x):
        (logits, acts), variables = model.init_with_output(
            {"params": KEY, "dropout": KEY}, x, train=False
        )
        order[False] = [(k, a.shape) for k, a in acts.items()]  # before dict key sorting
        (train_logits, acts), updates = model.apply(
            variables, x, train=True, rngs={"dropout": KEY}, mutable=["batch_stats"]
        )
        order[True] = [(k, a.shape) for k, a in acts.items()]
        eval_updates = (
            {"batch_stats": variables["batch_stats"]} if "batch_stats" in variables else {}
        )
        return variables, [(logits, eval_updates), (train_logits, updates)]

    variables, outs = jax.eval_shape(forward, x)
    return variables, [(logits, order[t], upd) for t, (logits, upd) in zip((False, True), outs)]


@pytest.mark.parametrize("name,mg", CASES)
def test_shapes_and_act_order(name, mg):
    model = _model(name, mg)
    variables, outs = _abstract(model, _input())
    has_bn = name in ("vgg16", "vgg16_moda", "resnet18", "mobilenet") or mg
    assert sorted(variables) == sorted(["params"] + ["batch_stats"] * has_bn)
    for logits, acts, updates in outs:  # eval, train
        assert logits.shape == (B, N)
        assert acts == [(k, (B, *s)) for k, s in _acts(name, mg)]
        expected_updates = {"batch_stats": variables["batch_stats"]} if has_bn else {}
        assert jax.tree.structure(updates) == jax.tree.structure(expected_updates)
    if mg or name == "mlp":  # the plain variants have the same tracked layers
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
        ("lenet5", True, "fc_0"),
        ("simcnn", False, "conv_5"),
        ("rescnn", False, "conv_3"),
        ("vgg16", True, "conv_0"),
        ("vgg16", True, "fc_1"),
        ("resnet18", True, "layer2.0"),
        ("resnet18", True, "layer3.1.conv1"),
        ("mobilenet", True, "block3.dw"),
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


def test_resnet_pre_add_mask_points():
    built = _build("resnet18", True)
    # Identity shortcut: switching conv2 off leaves ReLU(0 + x) = x (x is post-ReLU); the keep-mask
    # multiplies the generator-masked BN output.
    _, acts = built.model.apply(
        built.variables, built.x, masks={"layer1.0.conv2": np.zeros(c(64), np.float32)}
    )
    np.testing.assert_array_equal(acts["layer1.0"], acts["stem"])
    # Downsample block: both branches off gives an all-zero output.
    zeros = np.zeros(c(128), np.float32)
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


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"name": "nope"}, r"unknown model name='nope'; expected one of \['mlp', 'lenet5'"),
        ({"name": "mlp", "mask_generators": True}, "mlp has no conv layers"),
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
    with pytest.raises(ValueError, match=r"channels\['conv_1'\]=0 must be an int >= 1"):
        models.get_model("vgg16", channels={"conv_1": 0})
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
    with pytest.raises(ValueError, match=r"dw_inputs\['block0.dw'\]=\(\) must be a non-empty"):
        models.get_model("mobilenet", dw_inputs={"block0.dw": ()})
    mob = models.mask_points("mobilenet", width=W, dw_inputs={"block1.dw": (7, -1, 0)})
    assert (mob["block0.pw"], mob["block1.dw"], mob["block1.pw"]) == (c(64), 3, c(128))


def test_gather_or_zero():
    x = jnp.arange(6.0).reshape(1, 2, 3)
    np.testing.assert_array_equal(layers.gather_or_zero(x, (2, -1, 0)), [[[2, 0, 0], [5, 0, 3]]])
    assert layers.gather_or_zero(x, (0, 1, 2)) is x
    assert layers.gather_or_zero(x, None) is x
    with pytest.raises(ValueError, match=r"\(3,\) is out of range for 3 channels"):
        layers.gather_or_zero(x, (3,))
