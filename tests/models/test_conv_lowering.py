"""The zoo's convolution dispatcher: its CPU lowerings (im2col, direct) equal XLA's convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import models, objectives, train
from modjax.models import conv

NHWC = ("NHWC", "HWIO", "NHWC")

CASES = [  # (input H, W), kernel, padding, strides: 5 → 7 channels (im2col or XLA)
    ((1, 1), 3, ((1, 1), (1, 1)), (1, 1)),
    ((2, 2), 3, ((1, 1), (1, 1)), (1, 1)),
    ((1, 2), 3, ((1, 1), (1, 1)), (1, 1)),
    ((2, 2), 1, ((0, 0), (0, 0)), (1, 1)),
    ((2, 2), 3, "SAME", (1, 1)),
    ((2, 2), 2, ((0, 0), (0, 0)), (1, 1)),
    ((4, 4), 3, ((1, 1), (1, 1)), (1, 1)),
    ((4, 4), 3, ((0, 0), (0, 0)), (1, 1)),
    ((4, 4), 3, ((1, 1), (1, 1)), (2, 2)),
    ((2, 2), 3, ((1, 1), (1, 1)), (2, 2)),
]


DIRECT_CASES = [  # (input H, W), kernel, padding, (C_in, C_out): the direct lowering
    ((8, 8), 5, ((0, 0), (0, 0)), (3, 2)),  # LeNet5 w0.25's first conv
    ((7, 7), 5, ((0, 0), (0, 0)), (2, 4)),  # and its second
    ((7, 6), 3, "SAME", (1, 4)),
    ((6, 6), 3, ((0, 1), (2, 0)), (4, 4)),
    ((5, 5), 1, ((0, 0), (0, 0)), (2, 3)),
    ((6, 6), 2, ((1, 1), (1, 1)), (1, 1)),
    ((6, 5), 3, ((2, 0), (3, 1)), (2, 3)),  # padding > k - 1: the input gradient crops
    ((7, 6), 3, ((1, 1), (0, 2)), (3, 16)),  # > 4 outputs: summed in NHWC (SimCNN/VGG16 w0.25)
    ((8, 8), 5, "SAME", (2, 8)),  # NHWC forward, channels-first input gradient (8 -> 2)
]


def _conv(fn, x, w, padding, strides):
    dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
    return fn(x, w, strides, padding, dimension_numbers=dn)


def _check_equal_xla(hw, k, padding, strides, channels):
    kx, kw, kg = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(kx, (3, *hw, channels[0]))
    w = jax.random.normal(kw, (k, k, *channels))
    ref = _conv(jax.lax.conv_general_dilated, x, w, padding, strides)
    out = _conv(conv.conv_general_dilated, x, w, padding, strides)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    probe = jax.random.normal(kg, ref.shape)

    def grads(fn):
        return jax.grad(lambda x, w: jnp.sum(_conv(fn, x, w, padding, strides) * probe), (0, 1))(
            x, w
        )

    (gx_ref, gw_ref), (gx, gw) = (
        grads(jax.lax.conv_general_dilated),
        grads(conv.conv_general_dilated),
    )
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("hw,k,padding,strides", CASES)
def test_forward_and_gradients_equal_xla(hw, k, padding, strides):
    _check_equal_xla(hw, k, padding, strides, (5, 7))


@pytest.mark.parametrize("hw,k,padding,channels", DIRECT_CASES)
def test_direct_forward_and_gradients_equal_xla(hw, k, padding, channels, optimized_compiles):
    x_shape, w_shape = (3, *hw, channels[0]), (k, k, *channels)
    kw = {"strides": (1, 1), "dilated": False, "groups": 1, "backend": "cpu"}
    assert conv.conv_lowering(x_shape, w_shape, **kw) == "direct"
    _check_equal_xla(hw, k, padding, (1, 1), channels)


def test_lowering_choice():
    kw = {"dilated": False, "groups": 1}
    pick = conv.conv_lowering
    assert pick((8, 2, 2, 64), (3, 3, 64, 64), strides=(1, 1), backend="cpu", **kw) == "im2col"
    assert pick((8, 1, 1, 64), (3, 3, 64, 64), strides=(1, 1), backend="cpu", **kw) == "im2col"
    assert pick((8, 4, 4, 64), (3, 3, 64, 64), strides=(1, 1), backend="cpu", **kw) == "xla"
    assert pick((8, 32, 32, 3), (5, 5, 3, 2), strides=(1, 1), backend="cpu", **kw) == "direct"
    assert pick((8, 14, 14, 2), (5, 5, 2, 4), strides=(1, 1), backend="cpu", **kw) == "direct"
    assert pick((8, 32, 32, 3), (3, 3, 3, 16), strides=(1, 1), backend="cpu", **kw) == "direct"
    assert pick((8, 32, 32, 3), (3, 3, 3, 32), strides=(1, 1), backend="cpu", **kw) == "xla"
    assert pick((8, 32, 32, 5), (3, 3, 5, 2), strides=(1, 1), backend="cpu", **kw) == "xla"
    assert pick((8, 32, 32, 8), (3, 3, 8, 8), strides=(1, 1), backend="cpu", **kw) == "xla"
    assert pick((8, 32, 32, 3), (3, 3, 3, 16), strides=(2, 2), backend="cpu", **kw) == "xla"
    assert pick((8, 2, 2, 64), (3, 3, 64, 64), strides=(2, 2), backend="cpu", **kw) == "xla"
    assert (
        pick((8, 2, 2, 64), (3, 3, 1, 64), strides=(1, 1), backend="cpu", dilated=False, groups=64)
        == "xla"
    )
    for backend in ("gpu", "cuda", "rocm", "tpu"):  # nothing changes off the CPU
        assert pick((8, 2, 2, 64), (3, 3, 64, 64), strides=(1, 1), backend=backend, **kw) == "xla"
        assert pick((8, 32, 32, 3), (5, 5, 3, 2), strides=(1, 1), backend=backend, **kw) == "xla"
    # direct needs XLA's optimizations (the suite turns most off; see conv_lowering)
    off = {"xla_optimized": False, "backend": "cpu", **kw}
    assert pick((8, 32, 32, 3), (5, 5, 3, 2), strides=(1, 1), **off) == "xla"
    assert pick((8, 2, 2, 64), (3, 3, 64, 64), strides=(1, 1), **off) == "im2col"


def _one_step(name, monkeypatch, *, plain: bool, dtype=jnp.float32, width=None):
    if plain:
        monkeypatch.setattr(conv, "IM2COL_MAX_PIXELS", 0)
        monkeypatch.setattr(conv, "DIRECT_MAX_IN_CHANNELS", 0)
    if width is None:
        width = 0.25 if name == "lenet5" else 0.0625  # LeNet5's narrowest: 6 * w >= 0.5
    model = models.get_model(name, num_classes=10, width=width)
    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=1, num_epochs=1)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=(32, 32, 3))
    if dtype == jnp.float64:
        state = jax.tree.map(lambda a: a.astype(dtype) if a.dtype == jnp.float32 else a, state)
    step = train.make_train_step(
        model=model,
        tx=tx,
        objective=objectives.standard,
        preprocess=lambda x, rng: x.astype(dtype),
        donate=False,
    )
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.random((4, 32, 32, 3)).astype(np.float32),
        "label": rng.integers(0, 10, 4).astype(np.int32),
    }
    new, metrics = step(state, batch)
    return new.params, metrics


@pytest.mark.parametrize(
    "name,width", [("lenet5", 0.25), ("lenet5", 1.0), ("simcnn", None), ("vgg16", None)]
)
def test_one_train_step_equals_plain_path(name, width, monkeypatch, request):
    # LeNet5 (direct lowering for both convs at w0.25; at w1.0 its first conv, 3 -> 6, in NHWC)
    # compiles with optimizations on, as users run it: the direct lowering is off under the
    # suite's disable_most_optimizations (conv_lowering). SimCNN/VGG16 compare im2col (2x2
    # maps) with XLA under the suite's settings (3x faster to compile); test_compile_options
    # judges VGG16 against float64.
    if name == "lenet5":
        request.getfixturevalue("optimized_compiles")
    fast, m_fast = _one_step(name, monkeypatch, plain=False, width=width)
    with monkeypatch.context() as mp:
        plain, m_plain = _one_step(name, mp, plain=True, width=width)
    assert float(m_fast["loss"]) == pytest.approx(float(m_plain["loss"]), rel=1e-5)
    diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), fast, plain)
    assert max(jax.tree.leaves(diff)) < 1e-4, diff
