"""Module composition: modules of one parent in one fused pruned pass, parents side by side.

Pipeline (METHODS §4.7, §5.5, §5.7 step 5)::

    composed = compose([m3, m5, k1], {parent_key(m3.parent): v_a, parent_key(k1.parent): v_b},
                       relabel={("kmnist", 1): 11})
    logits = composed.apply_fn(x)                 # [B, len(composed.classes)]
    cal = {g.key: fit_calibration(g, batches_of(g)) for g in composed.groups}
    composed = calibrate(composed, cal)           # min-max normalized logits, then argmax
    result = evaluate_composed(composed, images, labels, batch_size=256, preprocess=to_float)

Modules are grouped by parent (canonical JSON of `module.parent`). Each group is **one** pruned
network over the union of its modules' keep-masks (STYLE §2: modules of one parent compose in one
fused pass): MODA slices the output rows of the group's classes (§5.5); MwT keeps all N outputs of
the original classifier and takes the group's columns (§4.6–4.7, no head, no fine-tuning). Groups
are combined by concatenating their (optionally min-max calibrated) logits; the prediction is the
argmax over all outputs.

`compose_one_by_one` is the CNNSplitter-style baseline (§4.7): one pruned network per module, each
contributing its own-class logit. Its column t equals the parent masked with u_t at column t, while
the fused column t equals the parent masked with u_T = OR_t u_t at column t; the two agree when
every module of a parent has the same keep-masks (e.g. one module per parent).
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from modjax import models
from modjax.modular._compose_data import evaluate_composed, fit_calibration
from modjax.modular._composed import Composed, Group, parent_key
from modjax.modular.module import Module, union
from modjax.modular.prune import prune

CALIBRATION_EPS = 1e-12
"""A class whose calibration max equals its min is divided by 1 instead of 0 (a constant logit)."""


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


def _size(parent: Mapping[str, Any], model: nn.Module, variables) -> dict[str, int]:
    """Params and MACs of a pruned network and of its parent (MwT generators excluded)."""
    size = {"params": models.count_params(variables["params"])}
    shape = parent.get("input_shape")
    if shape:
        summary = models.summarize(
            models.get_model(parent["model"], **parent["model_kwargs"]), tuple(shape)
        )
        size.update(
            macs=models.count_macs(model, tuple(shape)),
            parent_params=summary["params"] - summary["generator_params"],
            parent_macs=summary["macs"],
        )
    return size


def _build_group(key: str, module: Module, variables: Mapping[str, Any], classes) -> Group:
    """One pruned network for `module`'s keep-masks, outputting `classes` (parent ids)."""
    parent, method = module.parent, module.method
    shape = parent.get("input_shape")
    if method == "moda":
        model, pv = prune(
            parent["model"],
            parent["model_kwargs"],
            variables,
            module.keep,
            classes=list(classes),
            method=method,
            input_shape=shape,
        )
        columns = tuple(range(len(classes)))
    else:  # MwT keeps the whole N-way classifier (§4.6); take the group's columns
        model, pv = prune(
            parent["model"],
            parent["model_kwargs"],
            variables,
            module.keep,
            classes=None,
            method=method,
            input_shape=shape,
        )
        columns = tuple(int(c) for c in classes)
    return Group(
        key,
        dict(parent),
        method,
        tuple(int(c) for c in classes),
        model,
        pv,
        columns,
        _size(parent, model, pv),
    )


def _output_ids(
    groups: Sequence[Group], relabel: Mapping[tuple[str, int], int] | None
) -> tuple[tuple[int, ...], tuple[tuple[str | None, int], ...]]:
    """Output ids in group order after `relabel`; raises naming any clash."""
    relabel = {(d, int(c)): int(v) for (d, c), v in (relabel or {}).items()}
    sources = tuple((g.parent.get("dataset"), int(c)) for g in groups for c in g.classes)
    unused = sorted(set(relabel) - set(sources), key=str)
    if unused:
        raise ValueError(
            f"relabel keys {unused} name no composed (dataset, class id); composed: {list(sources)}"
        )
    ids, seen = [], {}
    for src in sources:
        new = relabel.get(src, src[1])
        if new in seen:
            other = seen[new]
            if other == src:
                raise ValueError(
                    f"class {src[1]} of dataset {src[0]!r} comes from two different parents; "
                    "compose it from one parent only"
                )
            if other[0] != src[0] and new == src[1] and other == (other[0], new):
                raise ValueError(
                    f"class id {new} clashes: dataset {other[0]!r} class {other[1]} and dataset "
                    f"{src[0]!r} class {src[1]} (different datasets); pass "
                    f"relabel={{(dataset, class_id): new_id}} to give them distinct ids"
                )
            raise ValueError(
                f"output id {new} clashes: (dataset, class) {other} and {src} both map to it "
                f"(relabel={relabel}); give them distinct ids"
            )
        seen[new] = src
        ids.append(new)
    return tuple(ids), sources


def _check_calibration(groups: Sequence[Group], calibration: Mapping) -> tuple[list, dict]:
    """Validates `{parent key: (min, max)}` over each parent's composed classes (sorted) and
    returns one `(min, max)` per group, restricted to that group's classes."""
    classes: dict[str, list[int]] = {}
    for g in groups:
        classes.setdefault(g.key, []).extend(g.classes)
    classes = {k: sorted(set(v)) for k, v in classes.items()}
    stray = set(calibration) - set(classes)
    if stray:
        raise ValueError(
            f"calibration has {len(stray)} key(s) that name no parent of this composition "
            "(keys: parent_key(module.parent), i.e. Group.key)"
        )
    checked = {}
    for key, cls in classes.items():
        if key not in calibration:
            g = next(g for g in groups if g.key == key)
            raise ValueError(
                f"calibration has no entry for the parent of classes {cls} "
                f"({g.parent.get('model')} on {g.parent.get('dataset')}); use fit_calibration"
            )
        lo, hi = (np.asarray(a, np.float32) for a in calibration[key])
        if lo.shape != (len(cls),) or hi.shape != lo.shape:
            raise ValueError(
                f"calibration of classes {cls} has shapes {lo.shape}, {hi.shape}; expected "
                f"({len(cls)},) each"
            )
        if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (hi >= lo).all()):
            raise ValueError(f"calibration of classes {cls} needs finite min <= max")
        checked[key] = (lo, hi)
    out = []
    for g in groups:
        idx = [classes[g.key].index(c) for c in g.classes]
        lo, hi = checked[g.key]
        out.append((lo[idx], hi[idx]))
    return out, checked


def _pure_apply(groups, cal_list, preprocess_by_parent) -> Callable:
    pre = dict(preprocess_by_parent or {})
    plan = []
    for i, g in enumerate(groups):
        scale = None
        if cal_list is not None:  # min-max normalization (§5.7 step 5), constants on the host
            lo, hi = cal_list[i]
            rng = hi - lo
            scale = (lo, np.where(rng > CALIBRATION_EPS, rng, 1.0).astype(np.float32))
        plan.append((g.model, np.asarray(g.columns, np.int32), scale, pre.get(g.key)))

    def apply_fn(variables, x):
        outs = []
        for (model, cols, scale, fn), v in zip(plan, variables):
            logits, _ = model.apply(v, x if fn is None else fn(x), train=False)
            z = logits[:, cols]
            if scale is not None:
                z = (z - scale[0]) / scale[1]
            outs.append(z)
        return jnp.concatenate(outs, axis=-1).astype(jnp.float32)

    return apply_fn


def _make_apply(groups, cal_list, preprocess_by_parent) -> Callable[[jax.Array], jax.Array]:
    jitted = jax.jit(_pure_apply(groups, cal_list, preprocess_by_parent))
    variables = [g.variables for g in groups]
    return lambda x: jitted(variables, x)


def pure_apply(composed: Composed) -> tuple[Callable, list[dict[str, Any]]]:
    """`(fn, variables)` with `fn(variables, x) == composed.apply_fn(x)`, not jitted.

    The variables travel as an argument (one `{"params", "batch_stats"}` per group), e.g. for
    `jax.export`; calibration and per-parent preprocessing are constants inside `fn`.
    """
    groups = list(composed.groups)
    cal_list = None
    if composed.calibration is not None:
        cal_list, _ = _check_calibration(groups, composed.calibration)
    fn = _pure_apply(groups, cal_list, composed.preprocess_by_parent)
    return fn, [g.variables for g in groups]


def _finish(groups, relabel, calibration, preprocess_by_parent) -> Composed:
    ids, sources = _output_ids(groups, relabel)
    cal_list, checked = (None, None)
    if calibration is not None:
        cal_list, checked = _check_calibration(groups, calibration)
    apply = _make_apply(groups, cal_list, preprocess_by_parent)
    return Composed(apply, ids, tuple(groups), sources, checked, preprocess_by_parent)


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
        u = union(group)
        groups.append(_build_group(key, u, variables, u.classes))
    return _finish(groups, relabel, calibration, preprocess_by_parent)


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
    `groups` holds one entry per class (`key` = its parent key, so `preprocess_by_parent` and
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
            groups.append(_build_group(key, by_class[c], variables, (c,)))
    return _finish(groups, relabel, calibration, preprocess_by_parent)


def calibrate(composed: Composed, calibration: Mapping[str, tuple[Any, Any]] | None) -> Composed:
    """The same composition with min-max calibrated outputs (None: raw logits); no re-pruning.

    Args:
        composed: from `compose` or `compose_one_by_one`.
        calibration: `{parent key: (min [k], max [k])}` over each parent's composed classes in
            sorted order, e.g. `fit_calibration(group, ...)` of each fused group.
    """
    return _finish(
        list(composed.groups), _relabel_of(composed), calibration, composed.preprocess_by_parent
    )


def _relabel_of(composed: Composed) -> dict[tuple[str, int], int]:
    return {src: new for src, new in zip(composed.sources, composed.classes) if src[1] != new}


__all__ = [
    "Composed",
    "Group",
    "calibrate",
    "compose",
    "compose_one_by_one",
    "evaluate_composed",
    "fit_calibration",
    "parent_key",
    "pure_apply",
]
