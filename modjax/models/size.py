"""Model sizes from abstract forward passes: parameters, MACs, conv kernels (METHODS §3.9, §10.9)."""

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from modjax.models.attention import DotProductAttention
from modjax.models.layers import MASK_SUFFIX, MaskGenerator
from modjax.typing import Params

_PARTS = ("backbone", "generators", "all")


class Trace(NamedTuple):
    variables: Any  # abstract {"params": ..., "batch_stats": ...}
    acts: dict[str, tuple[int, ...]]  # forward order
    points: dict[str, int]  # forward order
    # Every nn.Conv / nn.Dense: module path -> (output shape, kernel shape, inside a generator?)
    layers: dict[tuple[str, ...], tuple[tuple[int, ...], tuple[int, ...], bool]]
    # Every self-attention core (ViT): module path -> output shape [1, T, heads, head_dim]
    attention: dict[tuple[str, ...], tuple[int, ...]]


def _in_generator(module: nn.Module) -> bool:
    parent = module
    while isinstance(parent, nn.Module):
        if isinstance(parent, MaskGenerator):
            return True
        parent = parent.parent
    return False


def _example(input_shape: Sequence[int]) -> jax.ShapeDtypeStruct:
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(
            f"input_shape={input_shape!r} must be the positive shape of one example, without the "
            "batch axis, e.g. (32, 32, 3)"
        )
    return jax.ShapeDtypeStruct((1, *shape), jnp.float32)


def trace(model: nn.Module, input_shape: Sequence[int]) -> Trace:
    """Abstract init + eval forward of `model` on one example (no FLOPs are spent).

    Acts and mask points keep their forward order (read inside the trace, before JAX's
    key-sorted dict flattening). Results are cached per (model, input shape): the trace depends
    on shapes only, and module extraction, pruning and composition ask for it on every call.
    The dicts returned are copies; the abstract `variables` are shared, read them only.

    Args:
        model: a modjax model.
        input_shape: one example's shape, e.g. `(32, 32, 3)`.

    Returns:
        A `Trace` of the abstract variables, `acts` `{name: shape}`, mask `points`
        `{name: channels}` and every conv/dense `layers` entry.
    """
    shape = tuple(_example(input_shape).shape[1:])
    try:
        found = _cached_trace(model, shape)
    except TypeError:  # an unhashable model attribute: trace without the cache
        found = _trace(model, shape)
    return found._replace(
        acts=dict(found.acts),
        points=dict(found.points),
        layers=dict(found.layers),
        attention=dict(found.attention),
    )


@functools.lru_cache(maxsize=64)
def _cached_trace(model: nn.Module, shape: tuple[int, ...]) -> Trace:
    return _trace(model, shape)


def _trace(model: nn.Module, shape: tuple[int, ...]) -> Trace:
    x = _example(shape)
    order: dict[str, Any] = {}
    generator_paths: set[tuple[str, ...]] = set()

    def capture(module: nn.Module, method_name: str) -> bool:
        if method_name == "__call__" and isinstance(module, DotProductAttention):
            return True
        if method_name != "__call__" or not isinstance(module, nn.Conv | nn.Dense):
            return False
        if _in_generator(module):
            generator_paths.add(tuple(module.scope.path))
        return True

    def forward(x):
        key = jax.random.key(0)
        # One init pass also runs the eval forward (train=False) and fills "intermediates".
        (_, acts), variables = model.init_with_output(
            {"params": key, "dropout": key},
            x,
            train=False,
            capture_intermediates=capture,
            mutable=True,
        )
        order["acts"] = {name: tuple(a.shape) for name, a in acts.items()}
        return variables

    variables = dict(jax.eval_shape(forward, x))
    intermediates = dict(variables.pop("intermediates", {}))
    points = intermediates.pop("mask_points", {})
    points = {n: p.shape[1] for n, p in sorted(points.items(), key=lambda item: item[1].shape[0])}
    params = traverse_util.flatten_dict(variables["params"])
    found, attention = {}, {}
    for path, outs in traverse_util.flatten_dict(intermediates).items():
        if "mask_points" in path:  # a wrapped model's (e.g. a task head's backbone) own points
            continue
        module = path[:-1]
        if (*module, "kernel") not in params:  # a parameterless attention core
            attention[module] = tuple(outs[0].shape)
            continue
        kernel = tuple(params[(*module, "kernel")].shape)
        found[module] = (tuple(outs[0].shape), kernel, module in generator_paths)
    return Trace(variables, order["acts"], points, found, attention)


def _macs(found: Trace, part: str) -> int:
    if part not in _PARTS:
        raise ValueError(f"part={part!r} must be one of {_PARTS}")
    total = 0
    for out, kernel, in_generator in found.layers.values():
        if part == "all" or in_generator == (part == "generators"):
            total += math.prod(out[1:-1]) * math.prod(kernel)
    if part != "generators":
        # Self-attention, output [1, T, H, d]: QKᵀ and AV each take T·T·H·d MACs (T keys).
        total += sum(2 * out[1] * math.prod(out[1:]) for out in found.attention.values())
    return total


def _conv_kernels(found: Trace) -> int:
    layers = found.layers.values()
    return sum(out[-1] for out, kernel, in_gen in layers if len(kernel) == 4 and not in_gen)


def count_params(params: Params) -> int:
    """Number of scalars in a parameter tree (arrays or `jax.ShapeDtypeStruct`s).

    Pass `variables["params"]`: `batch_stats` are not parameters.

    Example:
        >>> count_params({"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)})
        16
    """
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))


def count_generator_params(params: Params) -> int:
    """Number of MwT mask-generator parameters (leaves under a `generator` key) in `params`."""
    total = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if any(getattr(k, "key", None) == "generator" for k in path):
            total += math.prod(leaf.shape)
    return total


def count_macs(model: nn.Module, input_shape: Sequence[int], *, part: str = "backbone") -> int:
    """Multiply-accumulates of the conv and dense layers for one example, bias excluded.

    Each `nn.Conv`/`nn.Dense` contributes prod(output spatial dims) × prod(kernel shape), which
    counts depthwise convs correctly (and a dense layer on `[T, D]` tokens as T·D_in·D_out).
    This is the fvcore conv/matmul convention that reproduces CNNSplitter's logged FLOPs
    (METHODS §10.9); BN, LayerNorm, pooling, softmax and adds are not counted. A ViT's
    self-attention core (`models.attention.DotProductAttention`, output `[T, H, d]`) adds its
    two matmuls, QKᵀ and AV: 2·T²·H·d (fvcore counts them as matmuls too).

    Args:
        model: a modjax model (any width).
        input_shape: one example's shape without the batch axis, e.g. `(32, 32, 3)`.
        part: `"backbone"` (the model's MACs; excludes MwT mask generators), `"generators"` (the
            generators only) or `"all"`.

    Returns:
        The MAC count.

    Raises:
        ValueError: for an unknown `part` or a bad `input_shape`.

    Example:
        >>> from modjax import models
        >>> count_macs(models.get_model("mlp", depth=1), (28, 28, 1))
        38906
    """
    if part not in _PARTS:
        raise ValueError(f"part={part!r} must be one of {_PARTS}")
    return _macs(trace(model, input_shape), part)


def count_conv_kernels(model: nn.Module, input_shape: Sequence[int] = (32, 32, 3)) -> int:
    """Total conv kernels (output channels summed over every backbone conv) (METHODS §3.9)."""
    return _conv_kernels(trace(model, input_shape))


def count_masked_kernels(model: nn.Module, input_shape: Sequence[int] = (32, 32, 3)) -> int:
    """K: output channels summed over the MwT-masked convs (0 without mask generators)."""
    acts = trace(model, input_shape).acts
    return sum(shape[-1] for name, shape in acts.items() if name.endswith(MASK_SUFFIX))


def summarize(model: nn.Module, input_shape: Sequence[int] = (32, 32, 3)) -> dict[str, int]:
    """All reference sizes of METHODS §3.9 for one model.

    Returns:
        `{"params", "generator_params", "macs", "generator_macs", "conv_kernels",
        "masked_layers", "masked_kernels"}`; `params` includes the generators, `macs` excludes them.
    """
    found = trace(model, input_shape)
    masked = [shape[-1] for name, shape in found.acts.items() if name.endswith(MASK_SUFFIX)]
    params = found.variables["params"]
    return {
        "params": count_params(params),
        "generator_params": count_generator_params(params),
        "macs": _macs(found, "backbone"),
        "generator_macs": _macs(found, "generators"),
        "conv_kernels": _conv_kernels(found),
        "masked_layers": len(masked),
        "masked_kernels": sum(masked),
    }
