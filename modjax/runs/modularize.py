"""Cutting module directories from a training workdir, and restoring a module's parent.

    summary = modularize_workdir(workdir, out=workdir / "modules", threshold=0.9)
    config, run, variables, step = restore_parent(module, workdir)   # checked by hash

`modularize_workdir` pins the checkpoint step it cut from and writes every module in the
travelling format (`modjax.modular.io`, format 2): keep-masks, the parent's kept-unit values
(`modular.portable.kept_units`), the pruned architecture, the parent's identity (model, kwargs,
dataset, step and content hash), the test transform and class names.
"""

import os
import pathlib
import shutil
import tempfile
from typing import Any

import numpy as np

from modjax import models
from modjax.modular import io as module_io
from modjax.modular import portable
from modjax.modular.compose import parent_key
from modjax.modular.io import ModuleFileError
from modjax.modules import identity, transform
from modjax.runs.workdir import load_run, write_json_atomic


def describe_run(config, run, step: int, variables) -> dict[str, Any]:
    """The parent description of a run's checkpoint: zoo model, dataset, step and hash."""
    from modjax import modular

    kwargs = {} if config.depth is None else {"depth": config.depth}
    parent = modular.describe_parent(
        config.model,
        dataset=config.dataset,
        checkpoint=None,
        input_shape=run.input_shape,
        num_classes=run.info.num_classes,
        width=config.width,
        mask_generators=config.method == "mwt",
        **kwargs,
    )
    return {**parent, "step": int(step), "hash": identity.parent_hash(variables)}


def restore_parent(module, workdir: str | os.PathLike, data_dir: str | None = None):
    """`(config, run, variables, step)` of `workdir` at the module's step, checked by hash.

    Raises:
        ModuleFileError: the run has no checkpoint at the module's step (field `parent.step`),
            its weights there are not the module's parent (field `parent.hash`), or it is
            another model/dataset (naming the field).
    """
    from modjax.checkpoint import CheckpointError

    workdir = pathlib.Path(workdir)
    step = module.parent.get("step")
    try:
        config, run, variables, step = load_run(workdir, data_dir, step=step)
    except CheckpointError as e:
        raise ModuleFileError(
            f"the module's field 'parent.step' is {step!r} but the run in {workdir} has no "
            f"restorable checkpoint of its parent at that step ({e})"
        ) from e
    found = describe_run(config, run, step, variables)
    for key in ("model", "model_kwargs", "dataset", "input_shape", "hash"):
        if parent_key({"v": found.get(key)}) != parent_key({"v": module.parent.get(key)}):
            raise ModuleFileError(
                f"the module's field 'parent.{key}' is {module.parent.get(key)!r} but the run "
                f"in {workdir} at step {step} has {found.get(key)!r}: not the module's parent"
            )
    return config, run, variables, step


def _save_all(out: pathlib.Path, write) -> None:
    """Writes a directory whole or not at all (stale temporaries of killed runs removed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        write(tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
    from modjax import data, metrics, parallel
    from modjax import modular as mz
    from modjax.modular.prune import prune
    from modjax.runs import report, training

    workdir, out = pathlib.Path(workdir), pathlib.Path(out)
    if out.exists():
        raise ValueError(f"--out {out} exists; remove it or choose another directory")
    config, run, variables, step = load_run(workdir, data_dir, step=step)
    if config.method not in mz.METHODS:
        raise ValueError(
            f"{workdir} was trained with method={config.method!r}; modularize needs a run "
            f"trained with one of {list(mz.METHODS)}"
        )
    parent = describe_run(config, run, step, variables)
    images, labels = run.train_data
    batch = config.global_batch_size
    extraction = mz.extract_modules(
        data.eval_batches(images, labels, global_batch_size=batch),
        variables=parallel.replicate(variables, run.mesh),
        parent=dict(parent),
        preprocess=training.make_preprocess(config, run.info, augment=False),
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
    names = run.info.class_names
    spec = transform.preprocess_spec(
        run.info, normalize=config.normalize, image_size=config.image_size
    )
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
            "class_names": [names[c] if names else str(c)],
            "source": {"workdir": str(workdir.resolve()), "step": step},
        }
        saved.append((module, {"units": units.values, "unit_index": units.index}, info))
        rows.append(
            {
                "class": c,
                "name": names[c] if names else str(c),
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
        "workdir": str(workdir.resolve()),
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

    def write(tmp: pathlib.Path) -> None:
        for module, arrays, info in saved:
            module_io.save_module(
                module, tmp / f"class_{module.classes[0]}", arrays=arrays, info=info
            )
        write_json_atomic(tmp / "modules.json", report.jsonable(summary))
        os.chmod(tmp / "modules.json", 0o644)

    _save_all(out, write)
    return summary


__all__ = ["describe_run", "modularize_workdir", "restore_parent"]
