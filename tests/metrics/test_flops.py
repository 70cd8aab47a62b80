"""modjax.metrics.compiled_flops: XLA's FLOPs against count_macs and a naive padding reference."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from modjax import metrics, models
from modjax.modular.prune import prune

CIFAR = (32, 32, 3)
MNIST = (28, 28, 1)
# The relation of compiled_flops' docstring was measured on XLA:CPU; GPU counts (cuBLAS/cuDNN
# custom calls, epilogue fusion) may differ and are not asserted.
cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu", reason="measured on XLA:CPU only")


def _layer_calls(model, shape):
    """(module, input shape, output shape) of every nn.Conv / nn.Dense call, in forward order."""
    calls = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and isinstance(context.module, nn.Conv | nn.Dense):
            calls.append((context.module, tuple(args[0].shape), tuple(out.shape)))
        return out

    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    with nn.intercept_methods(record):
        jax.eval_shape(lambda x: model.init({"params": jax.random.key(0)}, x, train=False), x)
    return calls


def _inside_taps(n, k, s, lo, o):
    """(output position, tap) pairs of one spatial axis that read the input, not its padding."""
    return sum(1 for i in range(o) for t in range(k) if 0 <= i * s - lo + t < n)


def _reference(model, shape):
    """Naive loop: (MACs, P = MACs on padding that XLA skips, conv/dense output elements)."""
    macs = padded = elements = 0
    for module, x, out in _layer_calls(model, shape):
        kernel = module.variables["params"]["kernel"].shape
        elements += math.prod(out)
        if isinstance(module, nn.Dense):
            macs += x[-1] * out[-1]
            continue
        full = math.prod(out[1:-1]) * math.prod(kernel)
        macs += full
        strides = tuple(module.strides or (1,) * (len(x) - 2))
        pads = module.padding
        if isinstance(pads, str):
            pads = jax.lax.padtype_to_pads(x[1:-1], kernel[:-2], strides, pads)
        axes = zip(x[1:-1], kernel[:-2], strides, pads, out[1:-1])
        inside = math.prod(_inside_taps(n, k, s, lo, o) for n, k, s, (lo, _), o in axes)
        padded += full - inside * kernel[-2] * kernel[-1]
    assert macs == models.count_macs(model, shape)  # the reference agrees with the counter
    return macs, padded, elements


def _flops(model, shape):
    return metrics.compiled_flops(model, models.trace(model, shape).variables, shape)


@cpu_only
def test_mlp_flops_are_two_per_mac_plus_bias_and_relu():
    model = models.get_model("mlp", depth=2, hidden=30)  # 784 -> 30 -> 30 -> 10
    macs = models.count_macs(model, MNIST)
    assert macs == 784 * 30 + 30 * 30 + 30 * 10
    # Hidden units: bias add + ReLU; logits: bias add. Softmax is not part of the forward.
    assert _flops(model, MNIST) == 2 * macs + 2 * 60 + 10


def _lenet5_flops(width):
    """Hand count: VALID 5x5 convs (P = 0), bias + ReLU, 3 comparisons per 2x2 max-pool output."""
    model = models.get_model("lenet5", width=width)
    macs, padded, _ = _reference(model, MNIST)
    assert padded == 0
    c0, c1 = round(6 * width), round(16 * width)
    conv_out = 24 * 24 * c0 + 8 * 8 * c1
    dense_out = round(120 * width) + round(84 * width)
    pooled = 12 * 12 * c0 + 4 * 4 * c1
    return model, 2 * macs + 2 * (conv_out + dense_out) + 10 + 3 * pooled


@cpu_only
def test_lenet5_flops_are_two_per_mac_plus_bias_relu_and_pooling():
    model, expected = _lenet5_flops(1.0)
    assert _flops(model, MNIST) == expected


@cpu_only
def test_cpu_conv_lowerings_do_not_change_the_count(optimized_compiles):
    # With XLA's optimizations on, the zoo runs LeNet5 w1/4's convs (1 -> 2, 2 -> 4 channels) on
    # CPU as a while loop that XLA's cost analysis would count once; compiled_flops compiles
    # XLA's convolution instead, so the hand count holds in both modes.
    model, expected = _lenet5_flops(0.25)
    assert _flops(model, MNIST) == expected


def _pruned_resnet20():
    kw = {"width": 0.25}
    parent = models.get_model("resnet20", **kw)
    abstract = models.trace(parent, CIFAR).variables
    variables = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract)
    rng = np.random.default_rng(0)
    points = models.mask_points(parent, input_shape=CIFAR)
    keep = {n: rng.random(c) < 0.5 for n, c in points.items() if n.endswith(("conv1", "conv2"))}
    for k in keep.values():  # no zero-width layer: XLA would drop the conv that feeds it
        k[0] = True
    module, _ = prune("resnet20", kw, variables, keep, method="mwt", input_shape=CIFAR)
    return module


@cpu_only
@pytest.mark.parametrize(
    "build",
    [
        lambda: models.get_model("vgg16", width=1 / 16),
        lambda: models.get_model("resnet20", width=0.25),
        _pruned_resnet20,
    ],
    ids=["vgg16_w1/16", "resnet20_w1/4", "resnet20_w1/4_pruned_module"],
)
def test_conv_net_flops_are_two_per_unpadded_mac_plus_elementwise(build):
    model = build()
    macs, padded, elements = _reference(model, CIFAR)
    flops = _flops(model, CIFAR)
    elementwise = flops - 2 * (macs - padded)
    # SAME padding at 32..2 px: 7-21% of the MACs read zeros that XLA does not count.
    assert 0.05 * macs < padded < 0.25 * macs
    # Per conv/dense output element the zoo applies at most bias 1 + BN 3 + ReLU 1 + residual
    # add 1 + pooling 1 = 7 elementwise FLOPs, and XLA may recompute a fused chain in a second
    # consumer: 1 <= E / elements <= 14 (measured 5.4 for VGG16, 9.1 for ResNet-20 and its
    # pruned module).
    assert elements <= elementwise <= 14 * elements
    # The docstring's net effect (measured -21%/+5%): with 5% < P / MACs < 25% and E at most
    # 12% of the FLOPs (its measured share at width 1/4 is 4-11%), FLOPs / (2·MACs) lies in
    # (0.75, 1.08).
    assert 0.75 < flops / (2 * macs) < 1.08


class _Looped(nn.Module):
    @nn.compact
    def __call__(self, x, *, train=False):
        del train
        w = self.param("w", nn.initializers.ones, (x.shape[-1],))
        return jax.lax.fori_loop(0, 10, lambda i, y: jnp.tanh(y * w), x).reshape(1, -1), {}


def test_compiled_flops_refuses_a_loop():
    model = _Looped()
    v = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4)))
    with pytest.raises(ValueError, match="1 while loop"):
        metrics.compiled_flops(model, v, (4,))


def test_compiled_flops_errors():
    model = models.get_model("mlp", depth=1)
    v = models.trace(model, MNIST).variables
    with pytest.raises(ValueError, match="input_shape=\\(\\) must be the positive shape"):
        metrics.compiled_flops(model, v, ())
    with pytest.raises(TypeError, match="must be a Flax module"):
        metrics.compiled_flops(lambda v, x: x, v, MNIST)
