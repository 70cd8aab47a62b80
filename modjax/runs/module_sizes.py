"""Size and overlap of the modules of one parent (METHODS §10.2, §10.3, §10.5, §10.9).

    trees = keep_trees(modules, variables, input_shape=restored.input_shape)
    table = size_table(modules, variables, input_shape=restored.input_shape, flops=True)
    table["rows"][c]["weight_retention"], table["overlap"], table["coupling"]
    table["rows"][c]["relative_macs"], table["rows"][c]["relative_flops"]

A module's *keep tree* (`modjax.metrics`) marks which scalars of the parent's `params` its
pruned form keeps. It is computed with MODA's id-model method: the parent's parameters are
replaced by their own 1-based positions, the module is pruned (`modular.prune.prune`), and the
ids that survive are the kept scalars. This follows every slicing rule of the pruned form
(residual wiring, MobileNet's depthwise rule, MODA's output rows) without restating them.
"""

import logging
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from modjax import metrics, models
from modjax.modular import prune
from modjax.modular.masked import without_generators

logger = logging.getLogger(__name__)


def keep_trees(
    modules: Sequence[Any], variables: dict[str, Any], *, input_shape: Sequence[int]
) -> list[Any]:
    """Keep trees (bool, the structure of `variables["params"]`) of MwT/MODA modules.

    Args:
        modules: `modjax.modular.Module`s of one parent (its `parent` names model and kwargs).
        variables: the parent's `{"params", "batch_stats"}`.
        input_shape: one example's shape as the parent reads it (e.g. `RestoredRun.input_shape`).

    Returns:
        One keep tree per module, in order. MODA modules keep their classes' output rows only
        (`classes=module.classes`); MwT modules keep the whole classifier.
    """
    return [tree for tree, _ in _pruned(modules, variables, input_shape)]


def _pruned(
    modules: Sequence[Any], variables: dict[str, Any], input_shape: Sequence[int]
) -> list[tuple[Any, Any]]:
    """(keep tree, pruned model) of each module, by pruning the id-model."""
    leaves, treedef = jax.tree.flatten(variables["params"])
    offsets = np.cumsum([0] + [np.size(x) for x in leaves])
    ids = [
        np.arange(o, o + np.size(x), dtype=np.int32).reshape(np.shape(x)) + 1
        for o, x in zip(offsets, leaves)
    ]
    id_variables = {**variables, "params": jax.tree.unflatten(treedef, ids)}
    out = []
    for m in modules:
        model, pruned = prune.prune(
            m.parent["model"],
            dict(m.parent["model_kwargs"]),
            id_variables,
            m.keep,
            classes=m.classes if m.method == "moda" else None,
            method=m.method,
            input_shape=tuple(input_shape),
        )
        kept = np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(pruned["params"])])
        kept = np.unique(kept[kept > 0])
        out.append((jax.tree.unflatten(treedef, [np.isin(x, kept) for x in ids]), model))
    return out


def _flops_or_none(model, shape: tuple[int, ...]) -> float | None:
    try:
        return metrics.compiled_flops(model, models.trace(model, shape).variables, shape)
    except ValueError as err:  # a loop in the forward, or a backend without cost analysis
        logger.warning("no compiled FLOPs for %s: %s", type(model).__name__, err)
        return None


def size_table(
    modules: Sequence[Any],
    variables: dict[str, Any],
    *,
    input_shape: Sequence[int],
    flops: bool = False,
) -> dict[str, Any]:
    """Per-module sizes and the pairwise overlap of the modules of one parent.

    Args:
        modules: two or more `modjax.modular.Module`s of one parent, one class each.
        variables: the parent's `{"params", "batch_stats"}`.
        input_shape: one example's shape as the parent reads it.
        flops: also compile the parent and every pruned module for XLA's FLOPs
            (`metrics.compiled_flops`, one compile each).

    Returns:
        `{"rows": [{"class", "unit_retention", "weight_retention", "fallbacks", "macs",
        "relative_macs"}], "parent_macs", "unit_retention", "weight_retention" (means over the
        modules), "overlap" (MODA: shared parameters / model size), "jaccard" (shared / union),
        "pairs" (class pairs), "coupling" (mean Jaccard of the kept-unit sets)}`; with `flops`,
        rows also have `"flops"`, `"relative_flops"` and the table `"parent_flops"` (None where
        XLA cannot count the forward; a warning is logged). Unit retention is the kept fraction
        of the masked units (KRR for MwT); weight retention the kept fraction of the parameters
        (MwT generators excluded). MACs and FLOPs are of one example's forward pass, the
        parent's without MwT generators (the standard model the modules are cut from).
    """
    if len(modules) < 2:
        raise ValueError(f"size_table needs at least 2 modules; got {len(modules)}")
    shape = tuple(input_shape)
    pruned = _pruned(modules, variables, shape)
    trees = [tree for tree, _ in pruned]
    name, kwargs = modules[0].parent["model"], modules[0].parent["model_kwargs"]
    parent = models.get_model(name, **without_generators(name, kwargs))
    parent_macs = models.count_macs(parent, shape)
    parent_flops = _flops_or_none(parent, shape) if flops else None
    units = [np.concatenate([np.asarray(k, bool) for k in m.keep.values()]) for m in modules]
    rows = []
    for m, u, (tree, model) in zip(modules, units, pruned):
        macs = models.count_macs(model, shape)
        row = {
            "class": int(m.classes[0]),
            "unit_retention": float(u.mean()),
            "weight_retention": float(metrics.weight_retention(tree, variables["params"])),
            "fallbacks": len(m.fallbacks),
            "macs": macs,
            "relative_macs": macs / parent_macs,
        }
        if flops:
            module_flops = _flops_or_none(model, shape)
            row["flops"] = module_flops
            row["relative_flops"] = (
                None if module_flops is None or not parent_flops else module_flops / parent_flops
            )
        rows.append(row)
    overlap = metrics.mean_pairwise_overlap(trees)
    sizes = {"parent_macs": parent_macs}
    if flops:
        sizes["parent_flops"] = parent_flops
    return {
        "rows": rows,
        **sizes,
        "unit_retention": float(np.mean([r["unit_retention"] for r in rows])),
        "weight_retention": float(np.mean([r["weight_retention"] for r in rows])),
        "overlap": float(overlap.moda),
        "jaccard": float(overlap.jaccard),
        "pairs": len(overlap.pairs),
        "coupling": float(metrics.jaccard_coupling(np.stack(units)).mean),
    }


__all__ = ["keep_trees", "size_table"]
