"""Module directories in the workdir layer: cut them from a run, compose them without one.

    summary = modularize_workdir(workdir, out=workdir / "modules", threshold=0.9)
    result = compose_dirs(["mods/class_3", "mods/class_1"], calibrate=True)  # no workdir needed
    result["accuracy"], result["composed"].apply_fn

`modularize_workdir` pins the checkpoint step it cut from and writes every module in the
travelling format (`modjax.modular.io`, format 2): keep-masks, the parent's kept-unit values
(`modular.portable.kept_units`), the pruned architecture, the parent's identity (model, kwargs,
dataset, step and content hash), the test transform and class names. `compose_dirs` rebuilds
the composition from those directories alone; datasets are read (by name, from `data_dir`) only
to calibrate, evaluate or fine-tune.
"""

import functools
import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modjax.modular import io as module_io
from modjax.modular import portable
from modjax.modular.compose import parent_key
from modjax.modular.io import ModuleFileError
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
    return {**parent, "step": int(step), "hash": portable.parent_hash(variables)}


def restore_parent(module, workdir: str | os.PathLike, data_dir: str | None = None):
    """`(config, run, variables, step)` of `workdir` at the module's step, checked by hash.

    Raises:
        ModuleFileError: the run's weights at that step are not the module's parent (field
            `parent.hash`), or another model/dataset (naming the field).
    """
    workdir = pathlib.Path(workdir)
    step = module.parent.get("step")
    config, run, variables, step = load_run(workdir, data_dir, step=step)
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
    )
    shape = tuple(run.input_shape)
    names = run.info.class_names
    spec = portable.preprocess_spec(
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
                "model_kwargs": portable.model_kwargs_of(pruned),
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


def units_of(saved: module_io.Saved) -> portable.Units:
    """The kept-unit values of a loaded module directory, checked against its classes."""
    try:
        index, values = saved.arrays["unit_index"], saved.arrays["units"]
    except KeyError as e:
        raise ModuleFileError(
            f"{saved.path / module_io.MANIFEST} field 'arrays' lacks group {e.args[0]!r}"
        ) from None
    if set(index) != set(values):
        raise ModuleFileError(f"{saved.path}: 'units' and 'unit_index' name different leaves")
    head = index.get("params/head/kernel")
    m = saved.module
    if m.method == "moda" and (head is None or sorted(head.tolist()) != sorted(m.classes)):
        raise ModuleFileError(
            f"{saved.path / module_io.MANIFEST} field 'classes' is {list(m.classes)} but the "
            f"module's output units are {None if head is None else head.tolist()}"
        )
    return portable.Units(dict(index), dict(values))


def check_parents(saved: Sequence[module_io.Saved]) -> None:
    """Refuses modules that claim one parent (model, kwargs, dataset, step) with two hashes."""
    seen: dict[str, tuple[str, pathlib.Path]] = {}
    for s in saved:
        p = s.module.parent
        key = parent_key({k: v for k, v in p.items() if k not in ("hash", "checkpoint")})
        h = p.get("hash")
        if key in seen and seen[key][0] != h:
            other_hash, other = seen[key]
            raise ModuleFileError(
                f"{s.path / module_io.MANIFEST} field 'parent.hash' is {h!r} but {other} claims "
                f"the same parent ({p['model']} on {p.get('dataset')!r}, step {p.get('step')}) "
                f"with hash {other_hash!r}: they were cut from different weights"
            )
        seen.setdefault(key, (h, s.path))


def load_dirs(dirs: Sequence[str | os.PathLike]) -> list[module_io.Saved]:
    """Loads and verifies module directories; refuses conflicting parent hashes."""
    if not dirs:
        raise ValueError("no module directories given")
    saved = [module_io.load(d) for d in dirs]
    check_parents(saved)
    return saved


def build_composition(
    saved: Sequence[module_io.Saved],
    *,
    relabel: Mapping[tuple[str, int], int] | None = None,
):
    """`(composed, groups_info)` from loaded module directories alone (no parent checkpoint).

    Raises:
        ValueError: modules that cannot compose (clashing ids, different input shapes, units
            that do not cover the fused network), naming the modules.
    """
    import jax

    from modjax.modular import compose as cp
    from modjax.modular.module import union

    by_key: dict[str, list[module_io.Saved]] = {}
    for s in saved:
        by_key.setdefault(parent_key(s.module.parent), []).append(s)
    vbp, pre, specs = {}, {}, {}
    for key, group in by_key.items():
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
        vbp[key] = variables
        spec = _field(group[0], "preprocess")
        specs[key] = spec
        pre[key] = functools.partial(portable.input_transform(spec), rng=jax.random.PRNGKey(0))
    shapes = {tuple(s["image_shape"]) for s in specs.values()}
    if len(shapes) > 1:
        raise ValueError(
            f"modules come from datasets with different image shapes {sorted(shapes)}; "
            "composition feeds one input to every parent"
        )
    composed = cp.compose([s.module for s in saved], vbp, relabel=relabel, preprocess_by_parent=pre)
    return composed, specs


def _field(s: module_io.Saved, key: str) -> Any:
    if key not in s.info:
        raise ModuleFileError(f"{s.path / module_io.MANIFEST} field 'info' lacks {key!r}")
    return s.info[key]


def class_names(saved: Sequence[module_io.Saved]) -> dict[tuple[str, int], str]:
    """`{(dataset, class id): name}` from the modules' manifests."""
    out = {}
    for s in saved:
        names = _field(s, "class_names")
        for c, n in zip(s.module.classes, names):
            out[(s.module.parent.get("dataset"), int(c))] = str(n)
    return out


def _split(dataset: str, split: str, data_dir: str | None):
    from modjax import data

    return data.load(dataset, split, data_dir=data_dir)


def compose_dirs(
    dirs: Sequence[str | os.PathLike],
    *,
    relabel: Mapping[tuple[str, int], int] | None = None,
    calibrate: bool = False,
    evaluate: bool = True,
    data_dir: str | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Composes module directories into one classifier; calibrates and evaluates on request.

    Args:
        dirs: module directories (`modjax modularize` output); no parent workdir is read.
        relabel: `{(dataset, class id): new id}` for clashing ids of different datasets.
        calibrate: min-max calibrate each parent's outputs on its dataset's training samples of
            the composed classes (METHODS §5.7 step 5); reads the training split.
        evaluate: evaluate on the test split of every involved dataset.
        data_dir: dataset directory (default `$MODJAX_DATA_DIR`).
        batch_size: evaluation and calibration batch size.

    Returns:
        `{"composed", "saved", "classes", "sources", "names", "calibrated", "groups", "size"}`
        plus `"accuracy", "count", "per_class", "eval_time_s"` when `evaluate`.

    Raises:
        ValueError (ModuleFileError for damaged or conflicting directories): naming the module.
    """
    import jax.numpy as jnp

    from modjax import data
    from modjax.modular import compose as cp

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size={batch_size!r} must be >= 1")
    saved = load_dirs(dirs)
    composed, specs = build_composition(saved, relabel=relabel)
    if calibrate:
        cal = {}
        for g in composed.groups:
            images, labels = _split(g.parent["dataset"], "train", data_dir)
            sel = np.isin(labels, g.classes)
            batches = data.eval_batches(images[sel], labels[sel], global_batch_size=batch_size)
            fn = portable.input_transform(specs[g.key])
            cal[g.key] = cp.fit_calibration(g, batches, preprocess=fn)
        composed = cp.calibrate(composed, cal)
    names = class_names(saved)
    groups = [
        {
            "model": g.parent["model"],
            "dataset": g.parent.get("dataset"),
            "hash": g.parent.get("hash"),
            "step": g.parent.get("step"),
            "method": g.method,
            "classes": list(g.classes),
            **g.size,
        }
        for g in composed.groups
    ]
    size = {
        k: sum(g[k] for g in groups) for k in ("params", "macs", "parent_params", "parent_macs")
    }
    size.update(
        relative_params=size["params"] / size["parent_params"],
        relative_macs=size["macs"] / size["parent_macs"],
    )
    value = {
        "composed": composed,
        "saved": saved,
        "modules": [str(pathlib.Path(d).resolve()) for d in dirs],
        "classes": list(composed.classes),
        "sources": [list(s) for s in composed.sources],
        "names": [names.get(tuple(s), str(s[1])) for s in composed.sources],
        "relabel": [[d, c, n] for (d, c), n in (relabel or {}).items()],
        "calibrated": calibrate,
        "groups": groups,
        "size": size,
    }
    if not evaluate:
        return value
    out_id = dict(zip(composed.sources, composed.classes))
    test_x, test_y = [], []
    for dataset in dict.fromkeys(d for d, _ in composed.sources):
        images, labels = _split(dataset, "test", data_dir)
        mapping = {c: i for (d, c), i in out_id.items() if d == dataset}
        sel = np.isin(labels, list(mapping))
        test_x.append(images[sel])
        test_y.append(np.array([mapping[int(c)] for c in labels[sel]], np.int64))
    t0 = time.perf_counter()
    result = cp.evaluate_composed(
        composed,
        np.concatenate(test_x),
        np.concatenate(test_y),
        batch_size=batch_size,
        preprocess=lambda x, rng: x.astype(jnp.float32),
    )
    value["eval_time_s"] = time.perf_counter() - t0
    value["per_class"] = [
        {
            "output_id": i,
            "dataset": d,
            "class": c,
            "name": n,
            "test_samples": result["per_class_count"][i],
            "accuracy": result["per_class_accuracy"][i],
        }
        for (d, c), i, n in zip(composed.sources, composed.classes, value["names"])
    ]
    value.update(accuracy=result["accuracy"], count=result["count"])
    return value


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
) -> dict[str, Any]:
    """Fine-tunes the MwT task module of a one-parent `compose_dirs` result (METHODS §4.6).

    Reads the parent dataset's training split (T's samples, stratified validation split) and
    test split; returns the JSON summary (best-validation and last-epoch test accuracy).

    Raises:
        ValueError: modules that are not MwT or come from several parents, bad arguments.
    """
    from modjax import loop, train
    from modjax.modular import finetune

    saved = value["saved"]
    other = [f"{s.path} ({s.module.method})" for s in saved if s.module.method != "mwt"]
    if other:
        raise ValueError(
            f"--finetune-epochs needs MwT modules (METHODS §4.6 task module); not MwT: "
            f"{', '.join(other)}"
        )
    groups = value["composed"].groups
    if len(groups) > 1:
        raise ValueError(
            f"--finetune-epochs needs modules of one parent; --modules come from {len(groups)} "
            "different parents"
        )
    group = groups[0]
    spec = _field(saved[0], "preprocess")
    classes = np.asarray(sorted(group.classes))  # T; labels become positions in sorted T

    def of_t(images, labels):
        sel = np.isin(labels, classes)
        return images[sel], np.searchsorted(classes, labels[sel]).astype(np.int32)

    tr_x, tr_y = of_t(*_split(spec["dataset"], "train", data_dir))
    te_x, te_y = of_t(*_split(spec["dataset"], "test", data_dir))
    train_idx, val_idx = finetune.stratified_split(tr_y, fraction=val_fraction, seed=seed)
    if len(train_idx) < batch_size:
        raise ValueError(
            f"--finetune-batch-size={batch_size} exceeds the {len(train_idx)} fine-tuning "
            f"samples of classes {classes.tolist()}; pass a smaller one"
        )
    model, variables = finetune.make_task_head(
        group.model, group.variables, num_outputs=len(classes), seed=seed
    )
    eval_pre = portable.input_transform(spec)
    t0 = time.perf_counter()
    res = finetune.finetune_task_module(
        model,
        variables,
        (tr_x[train_idx], tr_y[train_idx]),
        (tr_x[val_idx], tr_y[val_idx]),
        num_classes=len(classes),
        train_preprocess=portable.input_transform(spec, augment=True),
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

    return {
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


__all__ = [
    "build_composition",
    "check_parents",
    "class_names",
    "compose_dirs",
    "describe_run",
    "finetune_task",
    "load_dirs",
    "modularize_workdir",
    "restore_parent",
    "units_of",
]
