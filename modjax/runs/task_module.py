"""The MwT task module of a composition, fine-tuned on its dataset (METHODS §4.6).

value = compose_dirs(dirs)                            # runs.compose
tuned = finetune_task(value, epochs=10)               # summary, TaskHead, best variables
save_task(tuned, value, "modules/task_3_5")           # a module directory (modular.task)
"""

import os
import pathlib
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from modjax import data, loop, train
from modjax.modular import finetune, module, task
from modjax.modular import io as module_io
from modjax.modular.compose import parent_key
from modjax.modules import transform
from modjax.modules.directory import section as info_section
from modjax.runs.compose import class_names, load_split


def check_task_modules(saved) -> None:
    """Raises `ValueError` unless every loaded module is MwT and all share one parent."""
    other = [f"{s.path} ({s.method})" for s in saved if s.method != "mwt"]
    if other:
        raise ValueError(
            f"--finetune-epochs needs MwT modules (METHODS §4.6 task module); not MwT: "
            f"{', '.join(other)}"
        )
    parents = {parent_key(s.parent) for s in saved}
    if len(parents) > 1:
        raise ValueError(
            f"--finetune-epochs needs modules of one parent; --modules come from {len(parents)} "
            "different parents"
        )


class FineTuned(NamedTuple):
    """A fine-tuned task module: its JSON summary, its network and its best-epoch variables."""

    summary: dict[str, Any]
    model: finetune.TaskHead
    variables: dict[str, Any]


def finetune_task(
    value: Mapping[str, Any],
    *,
    epochs: int,
    t_max: int = 20,
    learning_rate: float = 0.05,
    batch_size: int = 128,
    eval_batch_size: int = 256,
    val_fraction: float = 0.1,
    seed: int = 0,
    data_dir: str | None = None,
) -> FineTuned:
    """Fine-tunes the MwT task module of a one-parent `compose_dirs` result (METHODS §4.6).

    Reads the parent dataset's training split (T's samples, stratified validation split) and
    test split. Returns the JSON summary (best-validation and last-epoch test accuracy), the
    network and the variables of the best validation epoch, which `save_task` keeps.

    Raises:
        ValueError: modules that are not MwT or come from several parents, bad arguments.
    """
    saved = value["saved"]
    check_task_modules(saved)
    groups = value["composed"].groups
    group = groups[0]
    spec = info_section(saved[0], "preprocess")
    classes = np.asarray(sorted(group.classes))  # T; labels become positions in sorted T

    def of_t(images, labels):
        sel = np.isin(labels, classes)
        return images[sel], np.searchsorted(classes, labels[sel]).astype(np.int32)

    tr_x, tr_y = of_t(*load_split(spec["dataset"], "train", data_dir))
    te_x, te_y = of_t(*load_split(spec["dataset"], "test", data_dir))
    train_idx, val_idx = data.stratified_split(tr_y, fraction=val_fraction, seed=seed)
    if len(train_idx) < batch_size:
        raise ValueError(
            f"--finetune-batch-size={batch_size} exceeds the {len(train_idx)} fine-tuning "
            f"samples of classes {classes.tolist()}; pass a smaller one"
        )
    model, variables = finetune.make_task_head(
        group.network.model, group.variables, num_outputs=len(classes), seed=seed
    )
    eval_pre = transform.input_transform(spec)
    t0 = time.perf_counter()
    res = finetune.finetune_task_module(
        model,
        variables,
        (tr_x[train_idx], tr_y[train_idx]),
        (tr_x[val_idx], tr_y[val_idx]),
        num_classes=len(classes),
        train_preprocess=transform.input_transform(spec, augment=True),
        eval_preprocess=eval_pre,
        num_epochs=epochs,
        t_max=t_max,
        learning_rate=learning_rate,
        batch_size=batch_size,
        seed=seed,
    )
    train_s = time.perf_counter() - t0
    evaluate = train.make_eval_step(model=model, preprocess=eval_pre, num_classes=len(classes))

    def test_accuracy(v) -> float:
        return loop.evaluate(
            eval_step=evaluate,
            variables=v,
            images=te_x,
            labels=te_y,
            global_batch_size=eval_batch_size,
        )["accuracy"]

    summary = {
        "classes": classes.tolist(),
        "epochs": epochs,
        "t_max": t_max,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "val_fraction": val_fraction,
        "seed": seed,
        "train_samples": len(train_idx),
        "val_samples": len(val_idx),
        "test_samples": len(te_y),
        "best_epoch": res.best_epoch,
        "best_val_accuracy": res.best_val_accuracy,
        "best_accuracy": test_accuracy(res.best_variables),
        "last_val_accuracy": res.last_val_accuracy,
        "last_accuracy": test_accuracy(res.last_variables),
        "history": res.history,
        "train_time_s": train_s,
    }
    return FineTuned(summary, model, res.best_variables)


def save_task(
    tuned: FineTuned,
    value: Mapping[str, Any],
    directory: str | os.PathLike,
    *,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes the fine-tuned task module (best validation epoch) as a module directory.

    `value` is the `compose_dirs` result it was fine-tuned from (its modules give the parent, the
    union's keep-masks, the input transform and the class names).

    Raises:
        FileExistsError: `directory` exists and `overwrite` is False.
    """
    saved = value["saved"]
    loaded = [module_io.from_dir(s) for s in saved]
    union = module.union([s.module for s in loaded])
    classes = tuned.summary["classes"]
    dataset = union.parent.get("dataset")
    names = class_names(saved)
    summary = {k: v for k, v in tuned.summary.items() if k != "history"}
    return task.save_task_module(
        directory,
        model=tuned.model,
        variables=tuned.variables,
        backbone_name=union.parent["model"],
        classes=classes,
        parent=union.parent,
        keep=module_io.forward_keep(union),
        preprocess=info_section(saved[0], "preprocess"),
        finetune=summary,
        class_names=[names.get((dataset, c), str(c)) for c in classes],
        overwrite=overwrite,
    )


__all__ = ["FineTuned", "check_task_modules", "finetune_task", "save_task"]
