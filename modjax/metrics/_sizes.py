"""Module size against its parent: conv/dense MACs and parameter counts (METHODS §10.9)."""

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax  # noqa: F401  (namespace of the doctests)
import jax.numpy as jnp  # noqa: F401  (namespace of the doctests)

from modjax import models
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
    """

    macs: int
    params: int
    parent_macs: int
    parent_params: int
    relative_macs: float
    relative_params: float


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


def module_macs_and_params(
    module: tuple[nn.Module, Params, Sequence[int]],
    parent: tuple[nn.Module, Params, Sequence[int]],
    *,
    include_generators: bool = False,
) -> ModuleSize:
    """Relative MACs and parameters of a pruned module vs its parent model.

    A pruned module is a narrower instance of a model class applied to smaller parameters, so its
    MACs come from `models.summarize`/`count_macs` on the module's own shapes and its parameters
    from `count_params`. Each params tree is checked against its model's abstract parameter count.
    MwT mask generators are excluded from both MACs and parameters unless `include_generators`
    (modules drop them; METHODS §4.6).

    Args:
        module: `(model, params, input_shape)` of the pruned module.
        parent: `(model, params, input_shape)` of the standard (parent) model.
        include_generators: count generator MACs and parameters too.

    Returns:
        A `ModuleSize`.

    Raises:
        ValueError: for a malformed triple, params that do not belong to their model, different
        input shapes, or a parent with zero MACs. TypeError: if a model is not a Flax module.

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
    return ModuleSize(
        macs, params, parent_macs, parent_params, macs / parent_macs, params / parent_params
    )
