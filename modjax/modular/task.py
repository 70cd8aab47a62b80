"""The fine-tuned MwT task module (METHODS §4.6) as a module directory, and its scorer.

`modjax compose --finetune-epochs E --task-dir DIR` fine-tunes the pruned union of a sub-task's
MwT modules with a new head (`finetune.TaskHead`). That network is MwT's end product, so it is
kept like every module, in the shared format (method `"mwt"`)::

    params/          every variable of the TaskHead: "params/backbone/...", "params/head/...",
                     "batch_stats/backbone/..."
    keep/            the union's keep-masks (which kernels of the parent it keeps)
    info.task        {"backbone": {"model", "model_kwargs"}, "num_outputs", "fan_in",
                      "finetune": {epochs, best_epoch, accuracies, ...}}
    info.preprocess  the parent's test transform; info.class_names

Its `classes` are the sub-task T in output order (head output j scores class T[j]). Its weights
are not the parent's, so its `parent` is the parent's description with the task module's own
content hash (`hash`) and the parent's kept as `finetuned_from`: to the module layer it is a
network of its own, which never fuses with the parent's modules and composes beside any module
like a network of another parent (sizes stay relative to the original parent's model).
"""

import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from modjax import models
from modjax.modular.finetune import TaskHead
from modjax.modules import directory, identity, scorer, transform
from modjax.modules.directory import MANIFEST, ModuleDir, ModuleFileError

SECTION = "task"


def is_task(saved: ModuleDir) -> bool:
    """Whether a module directory holds a fine-tuned task module (an `info.task` section)."""
    return SECTION in saved.info


def save_task_module(
    directory_: str | os.PathLike,
    *,
    model: TaskHead,
    variables: Mapping[str, Any],
    backbone_name: str,
    classes: Sequence[int],
    parent: Mapping[str, Any],
    keep: Mapping[str, Any],
    preprocess: Mapping[str, Any],
    finetune: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes a fine-tuned task module as a module directory (see the module docstring).

    Args:
        directory_: the target; must not exist unless `overwrite`.
        model: the `TaskHead` (pruned backbone and head of `len(classes)` outputs).
        variables: its `{"params", "batch_stats"}` (e.g. the best validation epoch's).
        backbone_name: the zoo name that rebuilds `model.backbone` from its kwargs.
        classes: the sub-task's parent class ids, in head output order.
        parent: the description of the network the modules were cut from (with its `hash`).
        keep: the union's keep-masks `{mask point: bool [C]}`.
        preprocess: the parent's test transform (`modules.transform.preprocess_spec`).
        finetune: JSON record of the fine-tuning (epochs, best epoch, accuracies).
        class_names: one name per class of `classes`.
        overwrite: replace an existing directory.

    Raises:
        FileExistsError: the target exists and `overwrite` is False.
        ValueError: `backbone_name` does not rebuild the backbone, or `classes` does not match
            the head's width.
    """
    kwargs = models.model_kwargs_of(model.backbone)
    if models.model_kwargs_of(models.get_model(backbone_name, **kwargs)) != kwargs:
        raise ValueError(f"backbone_name={backbone_name!r} does not rebuild the task backbone")
    classes = [int(c) for c in classes]
    if len(classes) != model.num_outputs or len(set(classes)) != len(classes):
        raise ValueError(
            f"classes={classes} must be {model.num_outputs} distinct ids, one per head output"
        )
    info: dict[str, Any] = {
        SECTION: {
            "backbone": {"model": backbone_name, "model_kwargs": kwargs},
            "num_outputs": model.num_outputs,
            "fan_in": model.fan_in,
            "finetune": json.loads(json.dumps(dict(finetune or {}))),
        },
        "preprocess": dict(preprocess),
    }
    if class_names is not None:
        if len(class_names) != len(classes):
            raise ValueError(f"class_names has {len(class_names)} names for classes {classes}")
        info["class_names"] = [str(n) for n in class_names]
    own = identity.parent_hash(variables)
    return directory.save(
        directory_,
        method="mwt",
        classes=classes,
        parent={**parent, "hash": own, "finetuned_from": parent["hash"]},
        metrics={"params": models.count_params(variables["params"]), "hash": own},
        info=info,
        arrays={
            "params": identity.flat_variables(variables),
            "keep": {k: keep[k] for k in keep},
        },
        overwrite=overwrite,
    )


def load_task_module(saved: ModuleDir) -> tuple[TaskHead, dict[str, Any]]:
    """`(model, variables)` of a task-module directory, checked against its hash.

    Raises:
        ModuleFileError: no `info.task`, a backbone the zoo cannot rebuild, or variables whose
            content hash differs from the recorded one (naming the manifest).
    """
    where = saved.path / MANIFEST
    if not is_task(saved):
        raise ModuleFileError(f"{where} has no field 'info.{SECTION}': not a task module")
    task = directory.section(saved, SECTION)
    try:
        backbone = models.get_model(task["backbone"]["model"], **task["backbone"]["model_kwargs"])
        model = TaskHead(backbone, int(task["num_outputs"]), int(task["fan_in"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ModuleFileError(f"{where} field 'info.{SECTION}' names no zoo backbone ({e})") from e
    variables = directory.network_variables(saved)
    if len(saved.classes) != model.num_outputs:
        raise ModuleFileError(
            f"{where} field 'classes' has {len(saved.classes)} ids for {model.num_outputs} outputs"
        )
    return model, variables


def task_scorer(saved: ModuleDir) -> scorer.Scorer:
    """The `Scorer` of a task-module directory: head output j scores class `classes[j]`.

    Raises:
        ModuleFileError: as `load_task_module`.
    """
    model, variables = load_task_module(saved)
    spec = directory.section(saved, "preprocess")
    return scorer.network_scorer(
        key=identity.parent_key(saved.parent),  # the task module's own hash decides
        parent=saved.parent,
        method="mwt",
        classes=tuple(saved.classes),
        model=model,
        variables=variables,
        columns=tuple(range(model.num_outputs)),
        preprocess=transform.eval_transform(spec),
    )


__all__ = ["SECTION", "is_task", "load_task_module", "save_task_module", "task_scorer"]
