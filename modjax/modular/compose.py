"""MwT/MODA module composition: modules of one parent in one fused pruned pass, as scorers.

Pipeline (METHODS §4.7, §5.5, §5.7 step 5)::

    composed = compose([m3, m5, k1], {parent_key(m3.parent): v_a, parent_key(k1.parent): v_b},
                       relabel={("kmnist", 1): 11})
    logits = composed.apply_fn(x)                 # [B, len(composed.classes)]
    cal = {g.key: fit_calibration(g, batches_of(g)) for g in composed.groups}
    composed = calibrate(composed, cal)           # min-max normalized logits, then argmax
    result = evaluate_composed(composed, images, labels, batch_size=256, preprocess=to_float)

Modules are grouped by parent (`modules.identity.parent_key`). Each group becomes **one**
`modules.Scorer` over the pruned network of the union of its modules' keep-masks (STYLE §2:
modules of one parent compose in one fused pass): MODA slices the output rows of the group's
classes (§5.5); MwT keeps all N outputs of the original classifier and takes the group's columns
(§4.6–4.7, no head, no fine-tuning). The scorers are joined by `modules.compose_scorers`, the
composition every family shares, so these groups mix with other families' scorers.

`compose_one_by_one` is the CNNSplitter-style baseline (§4.7): one pruned network per module, each
contributing its own-class logit. Its column t equals the parent masked with u_t at column t, while
the fused column t equals the parent masked with u_T = OR_t u_t at column t; the two agree when
every module of a parent has the same keep-masks (e.g. one module per parent).
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from modjax.modular.module import Module, union
from modjax.modular.prune import prune
from modjax.modules.compose import (
    Composed,
    calibrate,
    compose_scorers,
    evaluate_composed,
    fit_calibration,
    pure_apply,
)
from modjax.modules.identity import parent_key
from modjax.modules.scorer import Scorer, network_scorer


def _group_modules(modules: Sequence[Module]) -> dict[str, list[Module]]:
    if not modules:
        raise ValueError("modules is empty; expected at least one Module to compose")
    groups: dict[str, list[Module]] = {}
    for m in modules:
        if not isinstance(m, Module):
            raise TypeError(f"modules must hold modjax Module objects; got {type(m).__name__}")
        groups.setdefault(parent_key(m.parent), []).append(m)
    return groups


def _variables_for(key: str, group: Sequence[Module], variables_by_parent: Mapping) -> Any:
    if key not in variables_by_parent:
        p = group[0].parent
        raise ValueError(
            f"modules of classes {sorted({c for m in group for c in m.classes})} come from parent "
            f"{p.get('model')!r} on {p.get('dataset')!r} (checkpoint {p.get('checkpoint')!r}), "
            f"which has no entry in variables_by_parent (keys: parent_key(module.parent))"
        )
    return variables_by_parent[key]


def module_scorer(
    module: Module, variables: Mapping[str, Any], classes: Sequence[int] | None = None
) -> Scorer:
    """The `Scorer` of a MwT/MODA module: its pruned network's logits at `classes`.

    Args:
        module: a module (or the `union` of one parent's modules).
        variables: the parent's `{"params", "batch_stats"}` (MwT generators included), or the
            parent-shaped values its saved units assemble (`portable.assemble`).
        classes: the parent class ids to score (default: `module.classes`).
    """
    parent, method = module.parent, module.method
    classes = tuple(int(c) for c in (module.classes if classes is None else classes))
    moda = method == "moda"  # MODA slices the classes' rows; MwT keeps the N-way head (§4.6)
    model, pv = prune(
        parent["model"],
        parent["model_kwargs"],
        variables,
        module.keep,
        classes=list(classes) if moda else None,
        method=method,
        input_shape=parent.get("input_shape"),
    )
    return network_scorer(
        key=parent_key(parent),
        parent=parent,
        method=method,
        classes=classes,
        model=model,
        variables=pv,
        columns=range(len(classes)) if moda else classes,
    )


def compose(
    modules: Sequence[Module],
    variables_by_parent: Mapping[str, Mapping[str, Any]],
    *,
    relabel: Mapping[tuple[str, int], int] | None = None,
    calibration: Mapping[str, tuple[Any, Any]] | None = None,
    preprocess_by_parent: Mapping[str, Callable[[jax.Array], jax.Array]] | None = None,
) -> Composed:
    """Composes modules: one fused pruned network per parent, outputs concatenated.

    Args:
        modules: extracted `Module`s (any classes, any parents); duplicates of a class merge.
        variables_by_parent: `{parent_key(module.parent): parent variables}` (the parent's own
            `{"params", "batch_stats"}`, MwT generators included).
        relabel: `{(dataset, class_id): new_id}`; required when modules of different datasets
            share class ids. Unmapped outputs keep their parent ids.
        calibration: `{parent key: (min [k], max [k])}` (`fit_calibration` of each group);
            logits become `(z − min) / (max − min)` (METHODS §5.7 step 5). None: raw logits.
        preprocess_by_parent: optional `{group key: f(x) -> x}` applied to the input of that
            group's network inside the jitted function (e.g. per-dataset normalization).

    Returns:
        A `Composed`; group order is the order of first appearance in `modules`, classes within
        a group sorted.

    Raises:
        ValueError: no modules, a parent without variables, modules of one parent that cannot
            unite, overlapping ids across datasets without `relabel` (naming the clash), bad
            `relabel` keys or `calibration`.

    Example:
        >>> composed = compose([m3, m5], {parent_key(m3.parent): variables})  # doctest: +SKIP
        >>> composed.classes  # doctest: +SKIP
        (3, 5)
    """
    groups = []
    for key, group in _group_modules(modules).items():
        variables = _variables_for(key, group, variables_by_parent)
        groups.append(module_scorer(union(group), variables))
    return compose_scorers(
        groups,
        relabel=relabel,
        calibration=calibration,
        preprocess_by_parent=preprocess_by_parent,
    )


def compose_one_by_one(
    modules: Sequence[Module],
    variables_by_parent: Mapping[str, Mapping[str, Any]],
    *,
    relabel: Mapping[tuple[str, int], int] | None = None,
    calibration: Mapping[str, tuple[Any, Any]] | None = None,
    preprocess_by_parent: Mapping[str, Callable[[jax.Array], jax.Array]] | None = None,
) -> Composed:
    """The CNNSplitter-style baseline (METHODS §4.7): one pruned network per module and class.

    Same classes and output order as `compose`, but every class t is predicted by its own
    module's network (keep-masks u_t) through its own-class logit, so nothing is shared.
    `groups` holds one scorer per class (`key` = its parent key, so `preprocess_by_parent` and
    `calibration` are keyed exactly as for `compose`).

    Raises:
        ValueError: as `compose`.
    """
    groups = []
    for key, group in _group_modules(modules).items():
        variables = _variables_for(key, group, variables_by_parent)
        classes = union(group).classes  # validates the group; fixes the output order
        by_class = {}
        for m in group:
            for c in m.classes:
                by_class.setdefault(c, m)
        for c in classes:
            groups.append(module_scorer(by_class[c], variables, (c,)))
    return compose_scorers(
        groups,
        relabel=relabel,
        calibration=calibration,
        preprocess_by_parent=preprocess_by_parent,
    )


__all__ = [
    "Composed",
    "calibrate",
    "compose",
    "compose_one_by_one",
    "evaluate_composed",
    "fit_calibration",
    "module_scorer",
    "parent_key",
    "pure_apply",
]
