"""MwT and MODA (and NeMo's training objective) as a family of the module layer: saved modules of one parent fuse into one
scorer (the pruned network of their union, rebuilt from their kept-unit values alone).
Registered through the `modjax.families` entry point."""

from collections.abc import Sequence

from modjax import models
from modjax.modular import io as module_io
from modjax.modular import portable, task
from modjax.modular.compose import module_scorer
from modjax.modular.module import METHODS, union
from modjax.modules import directory, identity, transform
from modjax.modules.directory import MANIFEST, ModuleDir, ModuleFileError
from modjax.modules.registry import Family
from modjax.modules.scorer import Scorer


def units_of(saved: module_io.Saved) -> portable.Units:
    """The kept-unit values of a loaded module directory, checked against its classes."""
    try:
        index, values = saved.arrays["unit_index"], saved.arrays["units"]
    except KeyError as e:
        raise ModuleFileError(
            f"{saved.path / MANIFEST} field 'arrays' lacks group {e.args[0]!r}"
        ) from None
    if set(index) != set(values):
        raise ModuleFileError(f"{saved.path}: 'units' and 'unit_index' name different leaves")
    head = index.get("params/head/kernel")
    m = saved.module
    if m.method == "moda" and (head is None or sorted(head.tolist()) != sorted(m.classes)):
        raise ModuleFileError(
            f"{saved.path / MANIFEST} field 'classes' is {list(m.classes)} but the "
            f"module's output units are {None if head is None else head.tolist()}"
        )
    return portable.Units(dict(index), dict(values))


def group_scorer(group: Sequence[module_io.Saved]) -> Scorer:
    """One scorer for saved modules of one parent: the pruned network of their union.

    Raises:
        ValueError: units that do not cover the fused network, modules that cannot unite, or
            a recorded pruned form that the keep-masks do not rebuild (naming the modules).
    """
    p = group[0].module.parent
    names = [str(s.path) for s in group]
    variables, covered = portable.assemble(
        [units_of(s) for s in group],
        p["model"],
        p["model_kwargs"],
        input_shape=p["input_shape"],
        names=names,
    )
    u = union([s.module for s in group])
    portable.check_covered(
        covered,
        p["model"],
        p["model_kwargs"],
        u.keep,
        classes=list(u.classes) if u.method == "moda" else None,
        method=u.method,
        input_shape=p["input_shape"],
        what=f"modules {', '.join(names)}",
    )
    spec = directory.section(group[0], "preprocess")
    s = module_scorer(u, variables)._replace(preprocess=transform.eval_transform(spec))
    if len(group) == 1 and "pruned" in group[0].info:  # its own pruned form, as recorded
        recorded = group[0].info["pruned"].get("model_kwargs")
        rebuilt = models.model_kwargs_of(s.network.model)
        if identity.parent_key({"model_kwargs": recorded}) != identity.parent_key(
            {"model_kwargs": rebuilt}
        ):
            raise ModuleFileError(
                f"{group[0].path / MANIFEST} field 'info.pruned.model_kwargs' does not match "
                "the network its keep-masks and units rebuild"
            )
    return s


def scorers(saved: Sequence[ModuleDir]) -> list[Scorer]:
    """One fused scorer per parent (in order of first appearance) of MwT/MODA directories,
    then one per fine-tuned task module (`task.task_scorer`: its own weights, never fused)."""
    groups: dict[str, list[module_io.Saved]] = {}
    for d in saved:
        if task.is_task(d):
            continue
        s = module_io.from_dir(d)
        groups.setdefault(identity.parent_key(s.module.parent), []).append(s)
    return [group_scorer(g) for g in groups.values()] + [
        task.task_scorer(d) for d in saved if task.is_task(d)
    ]


def units(saved: ModuleDir) -> dict:
    """The keep-masks: the parent's channels or neurons the module keeps, per mask point."""
    return dict(directory.group(saved, "keep"))


FAMILY = Family(
    name="modular",
    methods=METHODS,
    scorers=scorers,
    summary="MwT (ICSE'24) and MODA: modules from modular training, pruned to smaller networks; "
    "NeMo: MwT's generators with a contrastive loss (training only, no modules yet)",
    # NeMo (METHODS §6) trains with `objectives.nemo_objective` but has no module extraction
    # yet: it is an objective, not a module method (`modjax modularize` refuses its runs).
    objectives=(*METHODS, "nemo"),
    units=units,
    cut=("modularize",),
)

__all__ = ["FAMILY", "group_scorer", "scorers", "units", "units_of"]
