"""The whole modular pipeline in one workdir: modular training → one module per class → a
composed sub-task classifier (exported as one file), with one table of the results.

Layout of the workdir::

    config.json, metrics.jsonl, summary.json, checkpoints/   the parent's training run
    modules/class_<c>/                                      one module per class (travels)
    composed.jaxexport                                      the sub-task classifier, one file
    pipeline.json                                           the table below, as JSON

Every stage is resumable: training resumes from its checkpoint, and modules and the exported
classifier that already exist for the same parent step are reused.
"""

import json
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from modjax import data, loop, train
from modjax.modular import io as module_io
from modjax.modules import atomic, export
from modjax.runs import compose as run_modules
from modjax.runs import modularize as run_modularize
from modjax.runs import training
from modjax.runs.config import TrainConfig


def _parse_classes(classes: Sequence[int], num_classes: int) -> list[int]:
    out = [int(c) for c in classes]
    if len(out) < 2 or len(set(out)) != len(out) or min(out) < 0 or max(out) >= num_classes:
        raise ValueError(
            f"classes={list(classes)!r} must be at least 2 distinct class ids in [0, {num_classes})"
        )
    return sorted(out)


def parent_restricted_accuracy(config, run, variables, classes: Sequence[int]) -> float:
    """Accuracy of the parent on the test samples of `classes`, argmax over those logits only.

    The labels become positions in `classes` and the prediction is the parent's logits at their
    columns (`train.make_eval_step(predict_fn=...)`, one `loop.evaluate` pass).
    """
    images, labels = run.test_data
    sel = np.isin(labels, classes)
    position = np.searchsorted(np.asarray(classes), labels[sel]).astype(np.int32)
    columns = np.asarray(classes)

    def predict_fn(variables, x):
        return run.model.apply(variables, x, train=False)[0][:, columns]

    eval_step = train.make_eval_step(
        predict_fn=predict_fn,
        preprocess=training.make_preprocess(config, run.info, augment=False),
        num_classes=len(classes),
    )
    result = loop.evaluate(
        eval_step=eval_step,
        variables=variables,
        images=images[sel],
        labels=position,
        global_batch_size=config.global_batch_size,
    )
    return result["accuracy"]


def run_pipeline(
    config: TrainConfig,
    workdir: str | pathlib.Path,
    *,
    classes: Sequence[int],
    threshold: float = 0.9,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains `config` (MwT or MODA), extracts every class's module and composes `classes`.

    Args:
        config: a modular training run (a `method` that `modularize` extracts from).
        workdir: where everything is written (see the module docstring).
        classes: the sub-task: at least two class ids of the dataset.
        threshold: extraction τ (METHODS §4.5, §5.4).
        progress: show progress bars.

    Returns:
        `{"parent", "modules", "composed", "restricted", "rows", "times_s", ...}`, also written
        to `workdir/pipeline.json`.

    Raises:
        ValueError: a non-modular method or bad class ids, before any work.
    """
    run_modularize.check_method(config.method, command="the pipeline")
    info = data.get_info(config.dataset)
    classes = _parse_classes(classes, info.num_classes)
    workdir = pathlib.Path(workdir)
    times = {}

    t0 = time.perf_counter()
    summary = training.train_and_evaluate(config, workdir, progress=progress)
    times["train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    module_root = workdir / "modules"
    if module_root.exists():
        mods = json.loads((module_root / "modules.json").read_text())
        if mods.get("step") != summary["steps"]:
            raise ValueError(
                f"{module_root} holds modules of step {mods.get('step')} but the run is at "
                f"step {summary['steps']}; remove {module_root} to extract them again"
            )
    else:
        mods = run_modularize.modularize_workdir(
            workdir, out=module_root, threshold=threshold, progress=progress
        )
    times["modularize"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    composed = run_modules.compose_dirs(
        [module_root / f"class_{c}" for c in classes], data_dir=config.data_dir
    )
    spec = composed["saved"][0].info["preprocess"]
    exported = export.export_composed(
        composed["composed"],
        workdir / "composed.jaxexport",
        input_shape=spec["image_shape"],
        class_names=composed["names"],
        overwrite=True,
    )
    times["compose"] = time.perf_counter() - t0

    restored = training.load_run(workdir, config.data_dir)
    step = restored.step
    restricted = parent_restricted_accuracy(
        restored.config, restored.run, restored.variables, classes
    )
    parent_params = composed["size"]["parent_params"] // max(len(composed["groups"]), 1)
    names = info.class_names or [str(c) for c in range(info.num_classes)]
    rows = [
        {
            "what": f"parent ({config.model}, {info.num_classes} classes)",
            "classes": "all",
            "accuracy": summary["test_accuracy"],
            "params": parent_params,
            "of_parent": 1.0,
        }
    ]
    for row in mods["classes"]:
        module = module_io.load_module(module_root / f"class_{row['class']}")
        rows.append(
            {
                "what": f"module {row['class']}"
                + ("" if names[row["class"]] == str(row["class"]) else f" ({names[row['class']]})"),
                "classes": str(row["class"]),
                "accuracy": None,
                "params": module.metrics["module_params"],
                "of_parent": module.metrics["weight_retention"],
            }
        )
    label = ",".join(map(str, classes))
    rows.append(
        {
            "what": "parent restricted to the sub-task",
            "classes": label,
            "accuracy": restricted,
            "params": parent_params,
            "of_parent": 1.0,
        }
    )
    rows.append(
        {
            "what": "composed from modules",
            "classes": label,
            "accuracy": composed["accuracy"],
            "params": composed["size"]["params"],
            "of_parent": composed["size"]["relative_params"],
        }
    )
    value = {
        "workdir": training.workdir_label(workdir),
        "step": step,
        "method": config.method,
        "classes": classes,
        "rows": rows,
        "parent_accuracy": summary["test_accuracy"],
        "restricted_accuracy": restricted,
        "composed_accuracy": composed["accuracy"],
        "composed_size": composed["size"],
        "export": {"path": str(exported.resolve()), "bytes": exported.stat().st_size},
        "times_s": times,
    }
    atomic.write_json(workdir / "pipeline.json", value)
    return value
