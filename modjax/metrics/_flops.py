"""Model FLOPs as the compiler counts them: XLA's cost analysis of the compiled forward pass."""

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

_WHILE = re.compile(r"\swhile\(")


def compiled_flops(model: nn.Module, variables: Any, input_shape: Sequence[int]) -> float:
    """XLA's FLOP count of `model`'s inference forward pass on one example.

    Compiles `model.apply(variables, x, train=False)[0]` (the logits; no softmax) for `x` of
    shape `(1, *input_shape)` float32 with `jax.jit(...).lower(...).compile()` on the default
    backend and returns `cost_analysis()["flops"]`. Nothing is executed and only the shapes and
    dtypes of `variables` matter: abstract variables (`models.trace(model, shape).variables`)
    give the same count. Every `nn.Conv` is compiled as XLA's convolution, in place of the
    zoo's CPU-only lowerings (`models.conv.conv_lowering`: an im2col matmul for maps of ≤ 4
    pixels, a `while` loop for convs of ≤ 4 → ≤ 16 channels), so the count is the same on
    every backend and with or without XLA's optimizations, and it is the program GPU and TPU
    run. Results are cached per (model, variable shapes, input shape, backend).

    Relation to `models.count_macs` (the fvcore convention kept for paper parity), measured
    on XLA:CPU, jaxlib 0.10.2 (`tests/metrics/test_flops.py`):

        FLOPs = 2·(MACs − P) + E

    - A multiply-add is 2 FLOPs, in dense layers (dots) and convolutions alike (a dot with a
      single output, e.g. a one-class MODA head, becomes a product and a sum: 2K − 1).
    - P: the multiply-adds of SAME-padded convolutions whose input tap falls on the padding.
      XLA's convolution cost skips them; `count_macs` counts every tap. P = 0 for VALID convs
      (LeNet5) and dense layers; 8–9% of the MACs for ResNet-20, 13% for ResNet18, 20–21% for
      VGG16 and SimCNN at 32 px (3×3 convs down to 4×4 and 2×2 maps, where 30% and 56% of the
      taps are padding).
    - E: elementwise work, 1 FLOP per element and op: bias adds, ReLU, residual adds, up to 3
      per element for BatchNorm in eval mode (subtract the mean, scale, shift), 3 per output
      of a 2×2 max pool, 1 per input of a mean pool. XLA fusion may recompute a cheap
      elementwise chain in each of its consumers (a ResNet block's input feeds conv1 and the
      residual add), and each copy counts. Measured per conv/dense output element: 1.9 for
      the MLP (exactly bias + ReLU, bias alone on the logits), 2.7 for LeNet5 (exactly bias +
      ReLU + pooling), 5.4 for VGG16, 9.1 for ResNet-20; that is 0.3–11% of the FLOPs, the
      larger shares at small widths (elementwise work grows with the width, MACs with its
      square).
    - Dead code is dropped: in a pruned module, a conv whose only consumer kept no channel
      (a zero-width layer) costs XLA nothing, while `count_macs` still counts it.

    Net effect, FLOPs / (2·MACs): 1.003 for an MLP, 1.023 for LeNet5, 0.84 for VGG16 at width
    1/16 (0.79 at full width), 1.000 for ResNet-20 at width 1/4 (padding and BN cancel; 0.93
    at full width), 1.043 for a pruned ResNet-20 w1/4 module. So XLA's FLOPs are within
    −21%/+5% of 2·MACs for the zoo nets at 28–32 px.

    XLA's cost analysis counts a `while` loop's body once, whatever its trip count, so a
    forward that still contains one after the conv replacement above is refused. GPU and TPU
    counts (cuDNN/cuBLAS custom calls, other fusion) have not been measured here.

    Args:
        model: a Flax model whose `apply(variables, x, train=False)` returns `(logits, ...)`,
            e.g. a `modjax.models.get_model` model or a pruned module (`modular.prune`).
        variables: its `{"params", "batch_stats"}` (arrays or `jax.ShapeDtypeStruct`s).
        input_shape: one example's shape without the batch axis, e.g. `(32, 32, 3)`.

    Returns:
        The FLOPs of one example's forward pass, as XLA reports them (a float).

    Raises:
        ValueError: for a bad `input_shape`; if the backend gives no cost analysis; if the
            compiled forward contains a `while` loop (see above).
        TypeError: if `model` is not a Flax module.

    Example:
        >>> from modjax import models
        >>> model = models.get_model("mlp", depth=1)  # 784 -> 49 -> 10
        >>> v = models.trace(model, (28, 28, 1)).variables
        >>> models.count_macs(model, (28, 28, 1))
        38906
        >>> compiled_flops(model, v, (28, 28, 1))  # 2·38906 + 49 (bias) + 49 (ReLU) + 10 (bias)
        77920.0
    """
    shape = tuple(input_shape)
    if not shape or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise ValueError(
            f"input_shape={input_shape!r} must be the positive shape of one example, without the "
            "batch axis, e.g. (32, 32, 3)"
        )
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a Flax module; got {type(model).__name__}")
    leaves, treedef = jax.tree.flatten(variables)
    specs = tuple((tuple(jnp.shape(a)), jnp.dtype(a.dtype)) for a in leaves)
    backend = jax.default_backend()
    optimized = not jax.config.read("jax_disable_most_optimizations")
    try:
        hash((model, treedef, specs))
    except TypeError:  # an unhashable model attribute: compile without the cache
        return _flops(model, treedef, specs, shape)
    return _cached_flops(model, treedef, specs, shape, backend, optimized)


@functools.lru_cache(maxsize=64)
def _cached_flops(model, treedef, specs, shape, backend, optimized) -> float:
    # `backend` and `optimized` only key the cache: both change the compiled program.
    del backend, optimized
    return _flops(model, treedef, specs, shape)


def _flops(model: nn.Module, treedef: Any, specs: tuple, shape: tuple[int, ...]) -> float:
    abstract = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in specs])

    def forward(variables, x):
        with nn.intercept_methods(_xla_convolutions):
            return model.apply(variables, x, train=False)[0]

    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    compiled = jax.jit(forward).lower(abstract, x).compile()
    cost = compiled.cost_analysis()
    # Older JAX returned a list (one dict per program), newer versions return the dict.
    if isinstance(cost, Sequence) and not isinstance(cost, Mapping):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        raise ValueError(
            f"XLA on backend {jax.default_backend()!r} reports no FLOPs for "
            f"{type(model).__name__}: cost_analysis() gave {cost!r}"
        )
    loops = len(_WHILE.findall(compiled.as_text() or ""))
    if loops:
        raise ValueError(
            f"the compiled forward of {type(model).__name__} at input_shape {shape} has {loops} "
            "while loop(s), whose bodies XLA's cost analysis counts once: its FLOPs would be "
            "undercounted"
        )
    return float(cost["flops"])


def _xla_convolutions(next_fun, args, kwargs, context):
    """Runs every `nn.Conv` with XLA's convolution instead of the zoo's CPU lowerings."""
    conv = context.module
    if (
        context.method_name != "__call__"
        or not isinstance(conv, nn.Conv)
        or conv.conv_general_dilated is jax.lax.conv_general_dilated
    ):
        return next_fun(*args, **kwargs)
    plain = conv.clone(parent=None, conv_general_dilated=jax.lax.conv_general_dilated)
    return plain.apply(dict(conv.variables), *args, **kwargs)
