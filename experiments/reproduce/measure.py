"""Measurements for the tables of `python -m experiments.reproduce`.

`measure_seed` trains (or resumes) one seed's runs of a row, extracts the modules and measures
them; it caches its result in `<seed dir>/measured.json`. The tables themselves (what each
column measures, the published numbers) and `write_results`, which puts mean ± std over the
finished seeds next to the papers' numbers (METHODS §13.1, §13.2, §13.7), are in `tables`.
Sub-tasks are `modjax.runs.compare.sample_tasks` (seed 42: the sample every earlier result
used), module sizes and overlap `modjax.runs.module_sizes.size_table`.
"""

import importlib.metadata
import json
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.reproduce.tables import Table
from modjax.modules import atomic
from modjax.runs.compare import sample_tasks

MEASURE_VERSION = 1  # bump when a cached measured.json no longer fits the code


def versions() -> str:
    names = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")
    return ", ".join(f"{n} {importlib.metadata.version(n)}" for n in names)


def estimate_cpu_hours(config, cpu_gflops: float = 40.0) -> float:
    """A rough CPU time estimate of one run: 3 × forward MACs × 2 flops × images × epochs.

    `cpu_gflops` is a sustained rate for 2 cores of this class of machine; the estimate says
    how far out of reach a run is, not when it ends.
    """
    from modjax import data, models

    info = data.get_info(config.dataset)
    shape = info.image_shape if config.image_size is None else (config.image_size,) * 2
    shape = (*shape[:2], info.image_shape[-1])
    kwargs = {"num_classes": info.num_classes, "width": config.width}
    macs = models.count_macs(models.get_model(config.model, **kwargs), shape)
    images = (config.train_examples or info.num_examples["train"]) * config.num_epochs
    return 3 * 2 * macs * images / (cpu_gflops * 1e9) / 3600


# ----------------------------------------------------------------------------- measuring


def _train(config, workdir: pathlib.Path, progress: bool) -> dict:
    from modjax.runs import training

    done = workdir / "summary.json"
    if done.exists():
        return json.loads(done.read_text())
    return training.train_and_evaluate(config, workdir, progress=progress)


def _train_time(summary: dict) -> float:
    return float(sum(e["epoch_time_s"] for e in summary["epochs_log"]))


def _modules(workdir: pathlib.Path, data_dir, progress: bool) -> dict:
    from modjax.runs.modularize import modularize_workdir

    root = workdir / "modules"
    if (root / "modules.json").exists():
        return json.loads((root / "modules.json").read_text())
    return modularize_workdir(workdir, out=root, data_dir=data_dir, progress=progress)


def _composed_all(workdir: pathlib.Path, num_classes: int, data_dir) -> float:
    from modjax.runs import compose as run_modules

    dirs = [workdir / "modules" / f"class_{c}" for c in range(num_classes)]
    return float(run_modules.compose_dirs(dirs, data_dir=data_dir)["accuracy"])


def subtasks(num_classes: int, count: int | None) -> list[tuple[int, ...]]:
    """§5.6's sub-tasks (every class subset of size ≥ 2), or the seeded sample of `count`."""
    return sample_tasks(num_classes, 2**num_classes if count is None else count)


def _moda_module_metrics(workdir: pathlib.Path, data_dir, tasks: int | None) -> dict:
    """Module size, overlap, and sub-task composition vs the restricted MODA model."""
    from modjax import loop, train
    from modjax.modular import compose as cp
    from modjax.modular import io as module_io
    from modjax.modular.prune import masked_equivalent
    from modjax.runs import module_sizes
    from modjax.runs.modularize import restore_parent

    root = workdir / "modules"
    modules = [
        module_io.load_module(d)
        for d in sorted(root.glob("class_*"), key=lambda p: int(p.name.split("_")[1]))
    ]
    restored = restore_parent(modules[0], workdir, data_dir)
    run, variables = restored.run, restored.variables
    sizes = module_sizes.size_table(modules, variables, input_shape=run.input_shape)
    parent = modules[0].parent
    kwargs = dict(parent["model_kwargs"])

    # Composition of T = masked form of the union of T's modules, logits of T (equal to the
    # pruned composition, checked on the first task). The task enters as data (masks, and the
    # logits outside T set to -inf), so one compiled eval step serves every task; argmax over
    # the remaining logits is argmax over T's.
    model, _ = masked_equivalent(parent["model"], kwargs, modules[0].keep, method="moda")

    def composed_fn(v, x):
        logits = model.apply(v["variables"], x, masks=v["masks"], train=False)[0]
        return jnp.where(v["in_task"], logits, -jnp.inf)

    def restricted_fn(v, x):
        logits = run.model.apply(v["variables"], x, train=False)[0]
        return jnp.where(v["in_task"], logits, -jnp.inf)

    steps = {
        name: train.make_eval_step(
            predict_fn=fn,
            preprocess=restored.preprocess,
            num_classes=run.info.num_classes,
            loss=False,
        )
        for name, fn in (("composed", composed_fn), ("restricted", restricted_fn))
    }
    images, labels = run.test_data
    rows = []
    for i, task in enumerate(subtasks(len(modules), tasks)):
        chosen = [modules[c] for c in task]
        union = {n: np.any([m.keep[n] for m in chosen], axis=0) for n in chosen[0].keep}
        _, masks = masked_equivalent(parent["model"], kwargs, union, method="moda")
        in_task = np.isin(np.arange(run.info.num_classes), task)
        sel = np.flatnonzero(np.isin(labels, task))
        row = {"task": list(task)}
        for name, step in steps.items():
            v = {"variables": variables, "in_task": in_task}
            if name == "composed":
                v["masks"] = masks
            row[name] = loop.evaluate(
                eval_step=step,
                variables=v,
                images=images[sel],
                labels=labels[sel],
                global_batch_size=500,
                prefetch=0,
            )["accuracy"]
        if i == 0:  # the masked shortcut equals the real (pruned) composition
            x = restored.preprocess(jnp.asarray(images[sel[:256]]), jax.random.PRNGKey(0))
            real = cp.compose(chosen, {cp.parent_key(parent): variables}).apply_fn(x)
            masked = model.apply(variables, x, masks=masks, train=False)[0][:, list(task)]
            np.testing.assert_allclose(np.asarray(real), masked, rtol=1e-4, atol=1e-4)
        rows.append(row)
    return {
        "module_size": statistics.mean(r["weight_retention"] for r in sizes["rows"]),
        "overlap": sizes["overlap"],
        "reuse_accuracy": statistics.mean(r["composed"] for r in rows),
        "restricted_accuracy": statistics.mean(r["restricted"] for r in rows),
        "tasks": rows,
    }


def _mwt_reuse_metrics(
    workdir: pathlib.Path,
    standard: pathlib.Path,
    data_dir,
    tasks: int | None,
    epochs: int,
    validation_split: float = 0.1,
) -> dict:
    """Per sub-task: ST restricted, fine-tuned task module, one-by-one and fused compositions."""
    import functools

    from modjax.modular import compose as cp
    from modjax.modular import io as module_io
    from modjax.modules.transform import input_transform
    from modjax.runs import compose as run_modules
    from modjax.runs import task_module
    from modjax.runs.modularize import restore_parent
    from modjax.runs.pipeline import parent_restricted_accuracy
    from modjax.runs.training import load_run

    root = workdir / "modules"
    modules = [module_io.load(root / f"class_{c}") for c in range(len(list(root.glob("class_*"))))]
    restored = restore_parent(modules[0].module, workdir, data_dir)
    mwt_run, mwt_variables = restored.run, restored.variables
    key = cp.parent_key(modules[0].module.parent)
    pre = functools.partial(
        input_transform(modules[0].info["preprocess"]), rng=jax.random.PRNGKey(0)
    )
    standard_run = load_run(standard, data_dir)
    cfg, run, variables = standard_run.config, standard_run.run, standard_run.variables
    images, labels = mwt_run.test_data
    rows = []
    for task in subtasks(len(modules), tasks):
        dirs = [m.path for m in modules if m.module.classes[0] in task]
        fused = run_modules.compose_dirs(dirs, data_dir=data_dir)
        one_by_one = cp.compose_one_by_one(
            [modules[c].module for c in task], {key: mwt_variables}, preprocess_by_parent={key: pre}
        )
        sel = np.isin(labels, task)
        res = cp.evaluate_composed(
            one_by_one,
            images[sel],
            labels[sel],
            batch_size=256,
            preprocess=lambda x, rng: x.astype(jnp.float32),
        )
        ft = task_module.finetune_task(
            fused, epochs=epochs, data_dir=data_dir, val_fraction=validation_split
        ).summary
        union = [
            np.any([modules[c].module.keep[n] for c in task], axis=0)
            for n in modules[0].module.keep
        ]
        rows.append(
            {
                "task": list(task),
                "restricted_accuracy": parent_restricted_accuracy(cfg, run, variables, task),
                "finetuned_accuracy": ft["best_accuracy"],
                "finetuned_last_accuracy": ft["last_accuracy"],
                "cnnsplitter_accuracy": float(res["accuracy"]),
                "fused_accuracy": float(fused["accuracy"]),
                "task_krr": float(np.mean(np.concatenate(union))),
            }
        )
    keys = [k for k in rows[0] if k != "task"]
    return {**{k: statistics.mean(r[k] for r in rows) for k in keys}, "tasks": rows}


def cached(table: Table, seed_dir: pathlib.Path) -> dict | None:
    """One seed's finished measurements (`seed_dir/table.cache`), or None if absent or stale."""
    path = seed_dir / table.cache
    if not path.exists():
        return None
    value = json.loads(path.read_text())
    return value if value.get("version") == MEASURE_VERSION else None


def measure_seed(
    table: Table,
    model: str,
    seed: int,
    runs: dict,
    seed_dir: pathlib.Path,
    *,
    tasks: int | None,
    progress: bool,
    finetune_epochs: int = 10,
    validation_split: float = 0.1,
) -> dict:
    """Trains (or resumes) one seed of a row, extracts and measures; cached in `table.cache`.

    `validation_split` is the share of each sub-task's training images that selects the
    fine-tuned task module's epoch (`mwt_reuse`); test accuracy is reported at that epoch.
    """
    from modjax import data

    cache = seed_dir / table.cache
    value = cached(table, seed_dir)
    if value is not None:
        return value
    t0 = time.perf_counter()
    method = table.methods[-1]
    summaries = {m: _train(c, seed_dir / m, progress) for m, c in runs.items()}
    data_dir = runs[method].data_dir
    work = seed_dir / method
    mods = _modules(work, data_dir, progress)
    value = {
        "version": MEASURE_VERSION,
        "model": model,
        "seed": seed,
        "standard_accuracy": summaries["standard"]["test_accuracy"],
        "method_accuracy": summaries[method]["test_accuracy"],
        "train_time_s": {m: _train_time(s) for m, s in summaries.items()},
        "time_ratio": _train_time(summaries[method]) / _train_time(summaries["standard"]),
        "extraction_s": mods["extraction_time_s"]["total_s"],
        "krr": statistics.mean(r["unit_retention"] for r in mods["classes"]),
        "weight_retention": statistics.mean(r["weight_retention"] for r in mods["classes"]),
        "empty_layers": sum(len(r.get("empty_layers", [])) for r in mods["classes"]),
    }
    if table.runs_of == "mwt":
        standard = seed_dir / "standard"
        value.update(
            _mwt_reuse_metrics(work, standard, data_dir, tasks, finetune_epochs, validation_split)
        )
    elif method == "mwt":
        num_classes = data.get_info(runs[method].dataset).num_classes
        value["composed_accuracy"] = _composed_all(work, num_classes, data_dir)
        value["accuracy_loss"] = value["standard_accuracy"] - value["composed_accuracy"]
        value["cohesion"], value["coupling"] = mods["cohesion"], mods["coupling"]
    else:
        value.update(_moda_module_metrics(work, data_dir, tasks))
    value["measure_s"] = time.perf_counter() - t0
    atomic.write_json(cache, value)
    return value


__all__ = ["cached", "estimate_cpu_hours", "measure_seed", "subtasks", "versions"]
