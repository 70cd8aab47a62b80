"""Module size against its parent: conv/dense MACs, parameters and XLA FLOPs (METHODS §10.9)."""

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax  # noqa: F401  (namespace of the doctests)
import jax.numpy as jnp  # noqa: F401  (namespace of the doctests)

from modjax import models
from modjax.metrics._flops import compiled_flops
from modjax.typing import Params


class ModuleSize(NamedTuple):
    """A module's size against its parent (METHODS §10.9). MACs are MACs of conv/dense layers.

    Attributes:
        macs: module MACs for one example, bias excluded.
        params: module parameter scalars.
        parent_macs: parent MACs.
        parent_params: parent parameter scalars.
        relative_macs: `macs / parent_macs`.
        relative_params: `params / parent_params`.
        flops: XLA's FLOPs of the module's forward pass on one example (`compiled_flops`);
            None unless asked for.
        parent_flops: the parent's; None unless asked for.
        relative_flops: `flops / parent_flops`; None unless asked for.
    """

    macs: int
    params: int
    parent_macs: int
    parent_params: int
    relative_macs: float
    relative_params: float
    flops: float | None = None
    parent_flops: float | None = None
    relative_flops: float | None = None


def _size(spec, name: str, include_generators: bool) -> tuple[int, int, tuple[int, ...]]:
    try:
        model, params, input_shape = spec
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (model, params, input_shape) triple") from None
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name}[0] must be a Flax model; got {type(model).__name__}")
    summary = models.summarize(model, tuple(input_shape))
    macs = summary["macs"] + (summary["generator_macs"] if include_generators else 0)
    expected = summary["params"] - (0 if include_generators else summary["generator_params"])
    given = models.count_params(params)
    if not include_generators:
        given -= models.count_generator_params(params)
    if given != expected:
        raise ValueError(
            f"{name} params have {given} scalars but {type(model).__name__} at input_shape "
            f"{tuple(input_shape)} has {expected}: pass variables['params'] of that model"
        )
    return macs, given, tuple(input_shape)


def _flops(spec, name: str, include_generators: bool) -> float:
    model, _, input_shape = spec
    if not include_generators and getattr(model, "mask_generators", False):
        raise ValueError(
            f"{name} {type(model).__name__} has MwT mask generators, which its compiled forward "
            "runs: pass the standard model (modjax.modular.masked.without_generators) or "
            "include_generators=True"
        )
    shape = tuple(input_shape)
    return compiled_flops(model, models.trace(model, shape).variables, shape)


def module_macs_and_params(
    module: tuple[nn.Module, Params, Sequence[int]],
    parent: tuple[nn.Module, Params, Sequence[int]],
    *,
    include_generators: bool = False,
    flops: bool = False,
) -> ModuleSize:
    """Relative MACs and parameters of a pruned module vs its parent model.

    A pruned module is a narrower instance of a model class applied to smaller parameters, so its
    MACs come from `models.summarize`/`count_macs` on the module's own shapes and its parameters
    from `count_params`. Each params tree is checked against its model's abstract parameter count.
    MwT mask generators are excluded from both MACs and parameters unless `include_generators`
    (modules drop them; METHODS §4.6). With `flops`, XLA's FLOPs of both forward passes
    (`compiled_flops`: one compile each, cached; about 2·MACs less padded taps plus elementwise
    work, see there) come too.

    Args:
        module: `(model, params, input_shape)` of the pruned module.
        parent: `(model, params, input_shape)` of the standard (parent) model.
        include_generators: count generator MACs and parameters too.
        flops: also compile both models and report XLA's FLOPs.

    Returns:
        A `ModuleSize`.

    Raises:
        ValueError: for a malformed triple, params that do not belong to their model, different
        input shapes, or a parent with zero MACs; with `flops`, a model with MwT generators
        unless `include_generators`, and what `compiled_flops` raises. TypeError: if a model is
        not a Flax module.

    References:
        METHODS §10.9, §3.9.

    Example:
        >>> parent = models.get_model("mlp", depth=1)
        >>> module = models.get_model("mlp", depth=1, hidden=7)
        >>> def init(m):
        ...     x = jnp.zeros((1, 28, 28, 1))
        ...     return m.init({"params": jax.random.key(0)}, x)["params"]
        >>> s = module_macs_and_params((module, init(module), (28, 28, 1)),
        ...                             (parent, init(parent), (28, 28, 1)))
        >>> s.macs, s.parent_macs, round(s.relative_params, 4)
        (5558, 38906, 0.1431)
    """
    macs, params, shape = _size(module, "module", include_generators)
    parent_macs, parent_params, parent_shape = _size(parent, "parent", include_generators)
    if shape != parent_shape:
        raise ValueError(f"module input_shape {shape} differs from the parent's {parent_shape}")
    if parent_macs == 0 or parent_params == 0:
        raise ValueError("parent has no MACs or no parameters")
    size = ModuleSize(
        macs, params, parent_macs, parent_params, macs / parent_macs, params / parent_params
    )
    if not flops:
        return size
    module_flops = _flops(module, "module", include_generators)
    parent_flops = _flops(parent, "parent", include_generators)
    return size._replace(
        flops=module_flops, parent_flops=parent_flops, relative_flops=module_flops / parent_flops
    )
