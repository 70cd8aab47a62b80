"""Modules that travel: kept-unit parameters, the parent's identity, fused groups from units.

A module directory carries no parent checkpoint. Instead it holds, for every parameter and batch
statistic its pruned form reads, the parent's values of the module's *kept output units* with all
their inputs (`leaf[..., idx]`; the output axis is the last axis of every conv/dense/BN leaf):

    units = kept_units("mlp", kw, variables, keep, classes=[3], method="moda", input_shape=s)
    model, pv = rebuild([units], "mlp", kw, module.keep, classes=[3], method="moda",
                        input_shape=s)                     # == prune(...) on the parent
    vbp = {parent_key(parent): assemble([u3, u5], "mlp", kw, input_shape=s)}
    compose([m3, m5], vbp)                                  # == compose with the parent's weights

Storing whole input columns (rather than the pruned `kernel[R_in, R_out]` block) is what lets
modules of one parent fuse exactly (METHODS §4.6 u_T, §5.5): the union's block
`kernel[∪R_in, ∪R_out]` is covered column by column by the modules that keep each output unit.
`assemble` rebuilds a parent-shaped pytree that is exact on every covered column (zero elsewhere)
and `check_covered` proves that `prune` of the union reads covered entries only.

A parent is named by its weights (`modules.identity.parent_hash`), so a module cut at step s of a
run never silently meets another parent.
"""

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import traverse_util

from modjax import models
from modjax.modular.masked import GENERATOR
from modjax.modular.prune import _plan, prune  # the plan's ops are in forward order

UNIT_COLLECTIONS = ("params", "batch_stats")


class Units(NamedTuple):
    """One module's kept-unit values of its parent.

    Attributes:
        index: `{"collection/path/leaf": int [k]}` kept output indices of each leaf.
        values: `{"collection/path/leaf": leaf[..., index]}` the parent's values there.
    """

    index: dict[str, np.ndarray]
    values: dict[str, np.ndarray]


def _flat(variables: Mapping[str, Any], *, abstract: bool = False) -> dict[str, Any]:
    out = {}
    for col in UNIT_COLLECTIONS:
        if col in variables:
            tree = dict(variables[col]) if abstract else jax.device_get(dict(variables[col]))
            for path, leaf in traverse_util.flatten_dict(tree).items():
                out["/".join((col, *path))] = leaf if abstract else np.asarray(leaf)
    return dict(sorted(out.items()))


def _abstract(model_name: str, model_kwargs: Mapping[str, Any], input_shape) -> dict[str, Any]:
    found = models.trace(models.get_model(model_name, **dict(model_kwargs)), tuple(input_shape))
    return found.variables


def _forward_order(model_name, model_kwargs, keep, classes, method, input_shape):
    """`leaf name -> position of its layer` in the forward order of `prune`'s plan."""

    plan = _plan(
        model_name, model_kwargs, keep, classes=classes, method=method, input_shape=input_shape
    )[0]
    paths = [tuple(op[0]) for op in plan.ops]

    def position(name: str) -> int:
        parts = tuple(name.split("/")[1:])
        return next((i for i, p in enumerate(paths) if parts[: len(p)] == p), len(paths))

    return position


def kept_units(
    model_name: str,
    model_kwargs: Mapping[str, Any],
    variables: Mapping[str, Any],
    keep: Mapping[str, Any],
    *,
    classes: Sequence[int] | None,
    method: str,
    input_shape: Sequence[int],
) -> Units:
    """The parent's values of every output unit that `prune(..., keep, classes)` reads.

    Args:
        model_name, model_kwargs, keep, classes, method, input_shape: as `prune.prune`.
        variables: the parent's `{"params", "batch_stats"}`.

    Returns:
        `Units` in the pruned form's leaf order (forward layer order).

    Raises:
        ValueError: whatever `prune` rejects.
    """

    abstract = _abstract(model_name, model_kwargs, input_shape)
    full = {k: v.shape[-1] for k, v in _flat(abstract, abstract=True).items() if v.shape}

    def read(k: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """`{leaf: kept output indices}` of the pruned form: each op's `out_idx` (every leaf of
        a layer has its output channels last), so zero-width layers read as empty sets."""
        plan = _plan(
            model_name, model_kwargs, k, classes=classes, method=method, input_shape=input_shape
        )[0]
        out = {}
        for path, _, _, out_idx in plan.ops:
            prefix = "/".join(path) + "/"
            for name in full:
                rest = name.split("/", 1)[1]
                if rest.startswith(prefix) and f"/{GENERATOR}/" not in f"/{rest}":
                    out[name] = np.asarray(out_idx)
        return out

    sets = {n: set(a.tolist()) for n, a in read(keep).items()}
    # Relax one layer at a time: an output set cut down by another layer's mask (a residual add,
    # a MobileNet depthwise input) is kept whole, so a union with other modules stays covered.
    for point, k in keep.items():
        for n, a in read({**keep, point: np.ones(np.shape(k), bool)}).items():
            if len(a) < full[n]:
                sets[n].update(a.tolist())
    parent = _flat(variables)
    index, values = {}, {}
    order = _forward_order(model_name, model_kwargs, keep, classes, method, input_shape)
    for name in sorted(sets, key=lambda n: (order(n), n)):
        s = sets[name]
        idx = np.asarray(sorted(s), np.int64)
        index[name] = idx
        values[name] = np.take(parent[name], idx, axis=-1)
    return Units(index, values)


def assemble(
    units: Sequence[Units],
    model_name: str,
    model_kwargs: Mapping[str, Any],
    *,
    input_shape: Sequence[int],
    names: Sequence[str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A parent-shaped pytree exact on every unit some module holds, and its coverage.

    Args:
        units: the `Units` of modules of one parent.
        model_name, model_kwargs, input_shape: the parent's.
        names: one label per entry of `units` for error messages (e.g. module directories).

    Returns:
        `(variables, covered)`: `{"params", "batch_stats"}` (zeros where no module holds a
        value; MwT generator leaves zero) and the same tree of float32 1/0 coverage.

    Raises:
        ValueError: a leaf or index that does not fit the parent, or two modules holding
            different values of one unit (they cannot share this parent), naming both.
    """
    names = list(names) if names is not None else [f"units[{i}]" for i in range(len(units))]
    abstract = _abstract(model_name, model_kwargs, input_shape)
    full = {k: np.zeros(v.shape, v.dtype) for k, v in _flat(abstract, abstract=True).items()}
    seen = {k: np.full(v.shape[-1] if v.ndim else 1, -1, np.int64) for k, v in full.items()}
    for i, (label, u) in enumerate(zip(names, units)):
        for key, idx in u.index.items():
            if key not in full:
                raise ValueError(f"{label}: unit leaf {key!r} is not a leaf of parent {model_name}")
            value, target = u.values[key], full[key]
            if value.shape != (*target.shape[:-1], len(idx)) or (
                len(idx) and (idx.min() < 0 or idx.max() >= target.shape[-1])
            ):
                raise ValueError(
                    f"{label}: unit leaf {key!r} has shape {value.shape} and indices up to "
                    f"{idx.max() if len(idx) else None}; parent leaf shape is {target.shape}"
                )
            prior = seen[key][idx]
            clash = (prior >= 0) & ~np.all(
                np.take(target, idx, axis=-1) == value, axis=tuple(range(value.ndim - 1))
            )
            if clash.any():
                other = names[int(prior[np.argmax(clash)])]
                raise ValueError(
                    f"{label} and {other} hold different values of {key!r} unit "
                    f"{int(idx[np.argmax(clash)])}: they were cut from different parents"
                )
            target[..., idx] = value
            seen[key][idx] = i
    variables, covered = {}, {}
    for key, value in full.items():
        col, *path = key.split("/")
        variables.setdefault(col, {})[tuple(path)] = value
        cov = (seen[key] >= 0).astype(np.float32)
        cov = np.broadcast_to(cov if value.ndim else cov[0], value.shape).copy()
        covered.setdefault(col, {})[tuple(path)] = cov
    unflat = traverse_util.unflatten_dict
    return (
        {c: unflat(t) for c, t in variables.items()},
        {c: unflat(t) for c, t in covered.items()},
    )


def check_covered(
    covered: Mapping[str, Any],
    model_name: str,
    model_kwargs: Mapping[str, Any],
    keep: Mapping[str, Any],
    *,
    classes: Sequence[int] | None,
    method: str,
    input_shape: Sequence[int],
    what: str,
) -> None:
    """Raises `ValueError` unless `prune(..., keep, classes)` reads only covered entries."""
    _, read = prune(
        model_name,
        model_kwargs,
        covered,
        keep,
        classes=classes,
        method=method,
        input_shape=input_shape,
    )
    for key, cov in _flat(read).items():
        if not np.all(cov == 1):
            raise ValueError(
                f"{what}: the pruned network needs {int(np.sum(cov != 1))} values of {key!r} "
                "that no given module holds; compose these modules one by one, or cut them "
                "again from the parent"
            )


def rebuild(
    units: Sequence[Units],
    model_name: str,
    model_kwargs: Mapping[str, Any],
    keep: Mapping[str, Any],
    *,
    classes: Sequence[int] | None,
    method: str,
    input_shape: Sequence[int],
    names: Sequence[str] | None = None,
):
    """The pruned form `prune(...)` of `keep` from saved units alone: `(model, variables)`.

    Raises:
        ValueError: as `assemble`, or units that do not cover the pruned network.
    """
    variables, covered = assemble(
        units, model_name, model_kwargs, input_shape=input_shape, names=names
    )
    kw = {"classes": classes, "method": method, "input_shape": input_shape}
    check_covered(covered, model_name, model_kwargs, keep, **kw, what=", ".join(names or []))
    return prune(model_name, model_kwargs, variables, keep, **kw)


__all__ = [
    "UNIT_COLLECTIONS",
    "Units",
    "assemble",
    "check_covered",
    "kept_units",
    "rebuild",
]
