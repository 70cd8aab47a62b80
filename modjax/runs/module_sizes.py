"""Parameter-level size and overlap of the modules of one parent (METHODS §10.2, §10.3, §10.5).

    trees = keep_trees(modules, variables, input_shape=restored.input_shape)
    table = size_table(modules, variables, input_shape=restored.input_shape)
    table["rows"][c]["weight_retention"], table["overlap"], table["coupling"]

A module's *keep tree* (`modjax.metrics`) marks which scalars of the parent's `params` its
pruned form keeps. It is computed with MODA's id-model method: the parent's parameters are
replaced by their own 1-based positions, the module is pruned (`modular.prune.prune`), and the
ids that survive are the kept scalars. This follows every slicing rule of the pruned form
(residual wiring, MobileNet's depthwise rule, MODA's output rows) without restating them.
"""

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from modjax import metrics
from modjax.modular import prune


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
    leaves, treedef = jax.tree.flatten(variables["params"])
    offsets = np.cumsum([0] + [np.size(x) for x in leaves])
    ids = [
        np.arange(o, o + np.size(x), dtype=np.int32).reshape(np.shape(x)) + 1
        for o, x in zip(offsets, leaves)
    ]
    id_variables = {**variables, "params": jax.tree.unflatten(treedef, ids)}
    trees = []
    for m in modules:
        _, pruned = prune.prune(
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
        trees.append(jax.tree.unflatten(treedef, [np.isin(x, kept) for x in ids]))
    return trees


def size_table(
    modules: Sequence[Any], variables: dict[str, Any], *, input_shape: Sequence[int]
) -> dict[str, Any]:
    """Per-module sizes and the pairwise overlap of the modules of one parent.

    Args:
        modules: two or more `modjax.modular.Module`s of one parent, one class each.
        variables: the parent's `{"params", "batch_stats"}`.
        input_shape: one example's shape as the parent reads it.

    Returns:
        `{"rows": [{"class", "unit_retention", "weight_retention", "fallbacks"}], "unit_retention",
        "weight_retention" (means over the modules), "overlap" (MODA: shared parameters / model
        size), "jaccard" (shared / union), "pairs" (class pairs), "coupling" (mean Jaccard of
        the kept-unit sets)}`. Unit retention is the kept fraction of the masked units (KRR for
        MwT); weight retention the kept fraction of the parameters (MwT generators excluded).
    """
    if len(modules) < 2:
        raise ValueError(f"size_table needs at least 2 modules; got {len(modules)}")
    trees = keep_trees(modules, variables, input_shape=input_shape)
    units = [np.concatenate([np.asarray(k, bool) for k in m.keep.values()]) for m in modules]
    rows = [
        {
            "class": int(m.classes[0]),
            "unit_retention": float(u.mean()),
            "weight_retention": float(metrics.weight_retention(tree, variables["params"])),
            "fallbacks": len(m.fallbacks),
        }
        for m, u, tree in zip(modules, units, trees)
    ]
    overlap = metrics.mean_pairwise_overlap(trees)
    return {
        "rows": rows,
        "unit_retention": float(np.mean([r["unit_retention"] for r in rows])),
        "weight_retention": float(np.mean([r["weight_retention"] for r in rows])),
        "overlap": float(overlap.moda),
        "jaccard": float(overlap.jaccard),
        "pairs": len(overlap.pairs),
        "coupling": float(metrics.jaccard_coupling(np.stack(units)).mean),
    }


__all__ = ["keep_trees", "size_table"]
