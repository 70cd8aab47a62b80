"""Cutting module directories from a training workdir, and restoring a module's parent.

    summary = modularize_workdir(workdir, out=workdir / "modules", threshold=0.9)
    restored = restore_parent(module, workdir)   # a training.RestoredRun, checked by hash

`modularize_workdir` pins the checkpoint step it cut from and writes every module in the
travelling format (`modjax.modular.io`, format 2): keep-masks, the parent's kept-unit values
(`modular.portable.kept_units`), the pruned architecture, the parent's identity (model, kwargs,
dataset, step and content hash), the test transform and class names.
"""

import os
import pathlib
from typing import Any

import numpy as np

from modjax import data, metrics, models, parallel
from modjax import modular as mz
from modjax.checkpoint import CheckpointError
from modjax.modular import io as module_io
from modjax.modular import portable
from modjax.modular.io import ModuleFileError
from modjax.modular.prune import prune
from modjax.modules import atomic, jsonrules
from modjax.runs import plots, training


def restore_parent(
    module, workdir: str | os.PathLike, data_dir: str | None = None
) -> training.RestoredRun:
    """The run in `workdir` at the module's step (`training.load_run`), checked by hash.

    Raises:
        ModuleFileError: the run has no checkpoint at the module's step (field `parent.step`),
            its weights there are not the module's parent (field `parent.hash`), or it is
            another model/dataset (naming the field).
    """
    workdir = pathlib.Path(workdir)
    step = module.parent.get("step")
    try:
        restored = training.load_run(workdir, data_dir, step=step)
    except CheckpointError as e:
        raise ModuleFileError(
            f"the module's field 'parent.step' is {step!r} but the run in {workdir} has no "
            f"restorable checkpoint of its parent at that step ({e})"
        ) from e
    found = restored.describe()
    for key in ("model", "model_kwargs", "dataset", "input_shape", "hash"):
        if jsonrules.canonical(found.get(key)) != jsonrules.canonical(module.parent.get(key)):
            raise ModuleFileError(
                f"the module's field 'parent.{key}' is {module.parent.get(key)!r} but the run "
                f"in {workdir} at step {restored.step} has {found.get(key)!r}: not the module's "
                "parent"
            )
    return restored


def check_method(method: str, *, what: str = "", command: str = "modularize") -> None:
    """Refuses a run whose objective yields no modules to extract here.

    The methods extraction takes are the modular family's own declaration (`modular.METHODS`,
    which the registry reads too).

    Raises:
        ValueError: `method` is not one of them, naming `what` (e.g. the workdir), `command`
            and the methods that are.
    """
    if method not in mz.METHODS:
        raise ValueError(
            f"{what + ': ' if what else ''}method={method!r}; {command} needs a run trained "
            f"with one of {list(mz.METHODS)} (modular training)"
        )


def _jaccard_summary(scores) -> dict[str, Any]:
    """MwT's modularization-time cohesion and coupling (METHODS §10.4), when computed."""
    if scores is None:
        return {}
    cohesion, coupling = scores["cohesion"], scores["coupling"]
    return {
        "cohesion": cohesion.mean,
        "coupling": coupling.mean,
        "cohesion_per_class": cohesion.per_class.tolist(),
        "cohesion_empty_union_pairs": int(cohesion.empty_union_pairs.sum()),
    }


def modularize_workdir(
    workdir: str | os.PathLike,
    *,
    out: str | os.PathLike,
    threshold: float = 0.9,
    fallback: bool = True,
    data_dir: str | None = None,
    step: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Extracts one module per class from a MwT/MODA run and saves them under `out`.

    Writes `out/class_<c>/` (format `module_io.FORMAT_VERSION`) and `out/modules.json`; `out` is
    written whole or not at all.

    Args:
        workdir: a training workdir; `step` (default: latest) is pinned in every module.
        out: the output directory; it must not exist.
        threshold, fallback: extraction τ and fallback rule (METHODS §4.5, §5.4).

    Returns:
        The summary written to `modules.json` (with `rows` per class).

    Raises:
        ValueError: `out` exists, or a run of another method.
    """
    workdir, out = pathlib.Path(workdir), pathlib.Path(out)
    if out.exists():
        raise ValueError(f"--out {out} exists; remove it or choose another directory")
    restored = training.load_run(workdir, data_dir, step=step)
    config, run, variables = restored.config, restored.run, restored.variables
    step = restored.step
    check_method(config.method, what=str(workdir))
    parent = restored.describe()
    images, labels = run.train_data
    batch = config.global_batch_size
    extraction = mz.extract_modules(
        data.eval_batches(images, labels, global_batch_size=batch),
        variables=parallel.replicate(variables, run.mesh),
        parent=dict(parent),
        preprocess=restored.preprocess,
        method=config.method,
        threshold=threshold,
        fallback=fallback,
        model=run.model,
        mesh=run.mesh,
        total=data.num_eval_batches(len(labels), batch),
        disable=not progress,
        jaccard=config.method == "mwt",
    )
    shape = tuple(run.input_shape)
    names = restored.class_names
    spec = restored.preprocess_spec()
    rows, saved = [], []
    for module in extraction.modules:
        c = module.classes[0]
        classes = [c] if config.method == "moda" else None
        pruned, pv = prune(
            parent["model"],
            parent["model_kwargs"],
            variables,
            module.keep,
            classes=classes,
            method=config.method,
            input_shape=shape,
        )
        units = portable.kept_units(
            parent["model"],
            parent["model_kwargs"],
            variables,
            module.keep,
            classes=classes,
            method=config.method,
            input_shape=shape,
        )
        size = metrics.module_macs_and_params(
            (pruned, pv["params"], shape), (run.model, variables["params"], shape)
        )
        module = module._replace(
            parent=parent,
            metrics={
                **module.metrics,
                "weight_retention": size.relative_params,
                "relative_macs": size.relative_macs,
                "module_params": size.params,
                "module_macs": size.macs,
            },
        )
        info = {
            "pruned": {
                "model": parent["model"],
                "model_kwargs": models.model_kwargs_of(pruned),
                "outputs": list(range(run.info.num_classes)) if classes is None else classes,
            },
            "preprocess": spec,
            "class_names": [names[c]],
            "source": {"workdir": training.workdir_label(workdir), "step": step},
        }
        saved.append((module, {"units": units.values, "unit_index": units.index}, info))
        rows.append(
            {
                "class": c,
                "name": names[c],
                "samples": module.metrics.get("num_samples"),
                "unit_retention": module.metrics["kernel_rate"],
                "weight_retention": size.relative_params,
                "relative_macs": size.relative_macs,
                "fallbacks": len(module.fallbacks),
                # Zero-width layers (possible without the fallback): the module still works,
                # its logits past such a layer come from biases alone.
                "empty_layers": [n for n, k in module.keep.items() if not np.any(k)],
                "layer_retention": {n: float(np.mean(k)) for n, k in module.keep.items()},
            }
        )
    summary = {
        "workdir": training.workdir_label(workdir),
        "step": step,
        "method": config.method,
        "threshold": threshold,
        "fallback": fallback,
        "parent": parent,
        "extraction_time_s": extraction.timing,
        "num_fallbacks": len(extraction.fallbacks),
        **_jaccard_summary(extraction.jaccard),
        "classes": rows,
        "format_version": module_io.FORMAT_VERSION,
    }
    with atomic.directory(out) as tmp:
        for module, arrays, info in saved:
            module_io.save_module(
                module, tmp / f"class_{module.classes[0]}", arrays=arrays, info=info
            )
        atomic.write_json(tmp / "modules.json", summary)
        plots.module_overview(tmp, tmp / "modules.png")  # kept units and class overlap
    return summary


__all__ = ["check_method", "modularize_workdir", "restore_parent"]
