"""Tables of `experiments/reproduce.py`: what each measures, the published numbers, the results file.

`measure_seed` trains (or resumes) one seed's runs of a row, extracts the modules and measures
them; it caches its result in `<seed dir>/measured.json`. `write_results` puts mean ± std over
the finished seeds next to the papers' numbers (METHODS §13.1, §13.2, §13.7).
"""

import csv
import dataclasses
import importlib.metadata
import itertools
import json
import math
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

MEASURE_VERSION = 1  # bump when a cached measured.json no longer fits the code


@dataclasses.dataclass(frozen=True)
class Column:
    key: str
    title: str
    scale: float = 1.0  # 100 for percentages
    digits: int = 2


@dataclasses.dataclass(frozen=True)
class Table:
    title: str
    methods: tuple[str, ...]
    columns: tuple[Column, ...]
    published: dict[str, dict[str, float]]  # model -> column key -> value (paper, CIFAR-10)
    notes: str
    cache: str = "measured.json"  # per-seed cache file; tables over the same runs differ here
    runs_of: str | None = None  # another table whose training runs (and workdir) this one reads


MWT = Table(
    title="MwT (ICSE'24): accuracy, accuracy loss, KRR, Jaccard cohesion/coupling, time",
    methods=("standard", "mwt"),
    columns=(
        Column("standard_accuracy", "ST acc %", 100),
        Column("method_accuracy", "MwT acc %", 100),
        Column("composed_accuracy", "10 modules, no retraining, acc %", 100),
        Column("accuracy_loss", "ST − that, pp", 100),
        Column("krr", "KRR %", 100),
        Column("cohesion", "cohesion", 1, 4),
        Column("coupling", "coupling", 1, 4),
        Column("time_ratio", "time MwT/ST", 1),
    ),
    published={
        "vgg16": {"standard_accuracy": 92.62, "method_accuracy": 90.55, "time_ratio": 1.70},
        "resnet18": {
            "standard_accuracy": 93.37,
            "method_accuracy": 91.04,
            "krr": 24.74,
            "cohesion": 0.9437,
            "coupling": 0.2412,
            "time_ratio": 1.77,
        },
        "simcnn": {"krr": 14.58},
        "rescnn": {"krr": 14.58},
    },
    notes=(
        "Published: CIFAR-10; accuracies and time ratios from MODA's Table A (§13.2; MwT "
        "under MODA's setup, V100 hours), ResNet18 KRR/cohesion/coupling at τ = 0.9 from MwT's "
        "README (§13.1), SimCNN/ResCNN KRR from MwT's abstract (most likely those two models "
        "[assumed], §13.7). The paper's accuracy loss (1.13 pp) is measured on *fine-tuned* "
        "task modules (§4.6); this table does not fine-tune. Its '10 modules' column composes "
        "all class modules with no retraining (MwT composition drops the soft generator masks, "
        "keeps the whole classifier and takes each module's column, §4.7), the quantity MODA "
        "reports as MwT 'before fine-tuning' (≈ 32% for VGG16 and ≈ 12% for ResNet18 on 10 "
        "classes, §13.1). KRR = mean kept-kernel fraction of the "
        "class modules; cohesion/coupling = Jaccard over the extraction (training) samples, §10.4."
    ),
)

MODA = Table(
    title="MODA (ICSE'26): accuracy, module size, overlap, sub-task composition, time",
    methods=("standard", "moda"),
    columns=(
        Column("standard_accuracy", "ST acc %", 100),
        Column("method_accuracy", "MODA acc %", 100),
        Column("module_size", "module size", 1, 3),
        Column("overlap", "overlap", 1, 3),
        Column("reuse_accuracy", "composed acc %", 100),
        Column("restricted_accuracy", "MODA restricted %", 100),
        Column("time_ratio", "time MODA/ST", 1),
    ),
    published={
        "vgg16_moda": {
            "standard_accuracy": 92.62,
            "method_accuracy": 91.86,
            "module_size": 0.027,
            "overlap": 0.014,
            "reuse_accuracy": 94.48,
            "time_ratio": 1.40,
        },
        "resnet18": {
            "standard_accuracy": 93.37,
            "method_accuracy": 90.94,
            "module_size": 0.081,
            "overlap": 0.055,
            "reuse_accuracy": 94.11,
            "time_ratio": 1.31,
        },
        "mobilenet": {
            "standard_accuracy": 89.42,
            "method_accuracy": 89.34,
            "module_size": 0.089,
            "overlap": 0.044,
            "reuse_accuracy": 91.90,
            "time_ratio": 1.56,
        },
    },
    notes=(
        "Published: CIFAR-10, MODA's Tables A and C (§13.2); time ratio = MODA h / ST h of "
        "Table A. module size = mean fraction of the parent's parameters a class module keeps; "
        "overlap = mean over class pairs of shared parameters / model size (MODA's id-model "
        "method); composed acc = mean accuracy of the composed sub-task networks (union of the "
        "modules' kept units, logits of T, no retraining) over the sub-tasks of §5.6, on T's test "
        "samples; MODA restricted = the MODA model's own accuracy restricted to T's logits."
    ),
)

MWT_REUSE = Table(
    title="MwT (ICSE'24) sub-task reuse: fine-tuned task modules vs CNNSplitter-style composition",
    methods=("standard", "mwt"),
    columns=(
        Column("restricted_accuracy", "ST restricted %", 100),
        Column("finetuned_accuracy", "task module, fine-tuned %", 100),
        Column("cnnsplitter_accuracy", "one-by-one, no retraining %", 100),
        Column("fused_accuracy", "fused, no retraining %", 100),
        Column("task_krr", "task module KRR %", 100),
    ),
    published={
        "vgg16": {"finetuned_accuracy": 93.5, "fused_accuracy": 53.5},
        "resnet18": {"restricted_accuracy": 98.0, "finetuned_accuracy": 97.23, "task_krr": 50.51},
    },
    notes=(
        "Sub-tasks: a seeded sample (seed 42) of §5.6's class subsets, the same for every seed; "
        "each cell is the mean over the sub-tasks, then mean ± std over seeds. ST restricted = "
        "the standard model's accuracy on T's test samples, argmax over T's logits (§4.7). Task "
        "module = the union of T's MwT modules with a new |T|-way head, fine-tuned (§4.6: SGD "
        "0.05, cosine T_max 20, the best epoch on a 10% validation split); one-by-one = the "
        "CNNSplitter-style composition (each class by its own module's own-class logit, §4.7); "
        "fused = one network over the union, the classifier's T columns. Published: ResNet18 "
        "3-class task at τ = 0.9 from MwT's README (§13.1; standard ≈ 98%); VGG16 = the middle "
        "of MODA's MwT reuse ranges (after fine-tuning ≈ 96 → 91%, before ≈ 75 → 32% over "
        "2–10 classes, §13.1), read from bar charts."
    ),
    cache="measured_reuse.json",
    runs_of="mwt",
)

TABLES = {"mwt": MWT, "mwt_reuse": MWT_REUSE, "moda": MODA}


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
    from modjax.runs import modules as run_modules

    dirs = [workdir / "modules" / f"class_{c}" for c in range(num_classes)]
    return float(run_modules.compose_dirs(dirs, data_dir=data_dir)["accuracy"])


def subtasks(num_classes: int, count: int | None, seed: int = 42) -> list[tuple[int, ...]]:
    """§5.6's sub-tasks (every class subset of size ≥ 2), or a seeded sample of `count`."""
    every = [
        t for k in range(2, num_classes + 1) for t in itertools.combinations(range(num_classes), k)
    ]
    if count is None or count >= len(every):
        return every
    picked = np.random.default_rng(seed).choice(len(every), size=count, replace=False)
    return [every[i] for i in sorted(picked)]


def _moda_module_metrics(workdir: pathlib.Path, data_dir, tasks: int | None) -> dict:
    """Module size, overlap, and sub-task composition vs the restricted MODA model."""
    from module_report import id_keep_trees

    from modjax import metrics
    from modjax.modular import compose as cp
    from modjax.modular import io as module_io
    from modjax.modular.prune import masked_equivalent
    from modjax.runs import training
    from modjax.runs.modularize import restore_parent

    root = workdir / "modules"
    modules = [
        module_io.load_module(d)
        for d in sorted(root.glob("class_*"), key=lambda p: int(p.name.split("_")[1]))
    ]
    config, run, variables, _ = restore_parent(modules[0], workdir, data_dir)
    parent = modules[0].parent
    kwargs, shape = dict(parent["model_kwargs"]), tuple(run.input_shape)
    trees = id_keep_trees(modules, variables, parent["model"], kwargs, shape)
    size = statistics.mean(metrics.weight_retention(t, variables["params"]) for t in trees)
    overlap = metrics.mean_pairwise_overlap(trees)

    # Composition of T = masked form of the union of T's modules, logits of T (equal to the
    # pruned composition, checked on the first task): one compiled function for every task.
    pre = training.make_preprocess(config, run.info, augment=False)
    images, labels = run.test_data
    model, _ = masked_equivalent(parent["model"], kwargs, modules[0].keep, method="moda")
    rng = jax.random.PRNGKey(0)

    @jax.jit  # variables are arguments, not constants folded into the program
    def logits_fn(v, x, masks):
        return model.apply(v, pre(x, rng), masks=masks, train=False)[0]

    @jax.jit
    def parent_fn(v, x):
        return run.model.apply(v, pre(x, rng), train=False)[0]

    batch = 500
    parent_logits = np.concatenate(
        [
            np.asarray(parent_fn(variables, images[i : i + batch]))
            for i in range(0, len(labels), batch)
        ]
    )
    rows = []
    for i, task in enumerate(subtasks(len(modules), tasks)):
        chosen = [modules[c] for c in task]
        union = {n: np.any([m.keep[n] for m in chosen], axis=0) for n in chosen[0].keep}
        _, masks = masked_equivalent(parent["model"], kwargs, union, method="moda")
        sel = np.flatnonzero(np.isin(labels, task))
        idx = np.concatenate([sel, np.full((-len(sel)) % batch, sel[0])])
        out = np.concatenate(
            [
                np.asarray(logits_fn(variables, images[idx[j : j + batch]], masks))
                for j in range(0, len(idx), batch)
            ]
        )[: len(sel)][:, list(task)]
        y = np.searchsorted(np.asarray(task), labels[sel])
        composed = float(np.mean(out.argmax(-1) == y))
        restricted = float(np.mean(parent_logits[sel][:, list(task)].argmax(-1) == y))
        if i == 0:  # the masked shortcut equals the real (pruned) composition
            real = cp.compose(chosen, {cp.parent_key(parent): variables}).apply_fn(
                pre(jnp.asarray(images[sel[:256]]), rng)
            )
            np.testing.assert_allclose(np.asarray(real), out[:256], rtol=1e-4, atol=1e-4)
        rows.append({"task": list(task), "composed": composed, "restricted": restricted})
    return {
        "module_size": float(size),
        "overlap": float(overlap.moda),
        "reuse_accuracy": statistics.mean(r["composed"] for r in rows),
        "restricted_accuracy": statistics.mean(r["restricted"] for r in rows),
        "tasks": rows,
    }


def _mwt_reuse_metrics(
    workdir: pathlib.Path, standard: pathlib.Path, data_dir, tasks: int | None, epochs: int
) -> dict:
    """Per sub-task: ST restricted, fine-tuned task module, one-by-one and fused compositions."""
    import functools

    from modjax.modular import compose as cp
    from modjax.modular import io as module_io
    from modjax.modular.portable import input_transform
    from modjax.runs import modules as run_modules
    from modjax.runs import task_module
    from modjax.runs.modularize import restore_parent
    from modjax.runs.pipeline import parent_restricted_accuracy
    from modjax.runs.workdir import load_run

    root = workdir / "modules"
    modules = [module_io.load(root / f"class_{c}") for c in range(len(list(root.glob("class_*"))))]
    _, mwt_run, mwt_variables, _ = restore_parent(modules[0].module, workdir, data_dir)
    key = cp.parent_key(modules[0].module.parent)
    pre = functools.partial(
        input_transform(modules[0].info["preprocess"]), rng=jax.random.PRNGKey(0)
    )
    cfg, run, variables, _ = load_run(standard, data_dir)
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
        ft = task_module.finetune_task(fused, epochs=epochs, data_dir=data_dir)
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
) -> dict:
    """Trains (or resumes) one seed of a row, extracts and measures; cached in `table.cache`."""
    from modjax import data

    cache = seed_dir / table.cache
    if cache.exists():
        value = json.loads(cache.read_text())
        if value.get("version") == MEASURE_VERSION:
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
        value.update(_mwt_reuse_metrics(work, standard, data_dir, tasks, finetune_epochs))
    elif method == "mwt":
        num_classes = data.get_info(runs[method].dataset).num_classes
        value["composed_accuracy"] = _composed_all(work, num_classes, data_dir)
        value["accuracy_loss"] = value["standard_accuracy"] - value["composed_accuracy"]
        value["cohesion"], value["coupling"] = mods["cohesion"], mods["coupling"]
    else:
        value.update(_moda_module_metrics(work, data_dir, tasks))
    value["measure_s"] = time.perf_counter() - t0
    from modjax.runs.report import jsonable

    cache.write_text(json.dumps(jsonable(value), indent=2))
    return value


# ----------------------------------------------------------------------------- results file


READING = "## Reading"


def write_markdown(path: pathlib.Path, text: str) -> None:
    """Writes a results file, keeping a hand-written `## Reading` section of the old one.

    The tables are regenerated after every seed; a reading of them, appended by hand after a
    run, survives re-runs (it may then describe fewer seeds than the table: re-read it).
    """
    old = path.read_text() if path.exists() else ""
    at = old.find("\n" + READING)
    path.write_text(text + (old[at:] if at >= 0 else ""))


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.mean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else math.nan)


def _cell(values, column: Column) -> str:
    if not values:
        return "–"
    mean, std = _mean_std([v * column.scale for v in values])
    text = f"{mean:.{column.digits}f}"
    return text if math.isnan(std) else f"{text} ± {std:.{column.digits}f}"


def write_results(
    table: Table, measured: dict, out: pathlib.Path, context: dict, *, seeds_wanted: int
) -> None:
    """Writes `<out>.md` and `<out>.csv`: mean ± std over finished seeds beside the paper."""
    out.parent.mkdir(parents=True, exist_ok=True)
    header = ["model", "seeds"]
    for c in table.columns:
        header += [c.title, f"paper {c.title}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    csv_rows = []
    for model, seeds in measured.items():
        cells = [model, f"{len(seeds)}/{seeds_wanted}"]
        paper = table.published.get(model, {})
        for c in table.columns:
            values = [s[c.key] for s in seeds if s.get(c.key) is not None]
            cells += [_cell(values, c), f"{paper[c.key]:g}" if c.key in paper else "–"]
            mean, std = _mean_std([v * c.scale for v in values]) if values else (None, None)
            csv_rows.append(
                {
                    "model": model,
                    "metric": c.key,
                    "mean": mean,
                    "std": std,
                    "seeds": len(values),
                    "paper": paper.get(c.key),
                    "values": " ".join(f"{v * c.scale:.6g}" for v in values),
                }
            )
        lines.append("| " + " | ".join(cells) + " |")
    cfg = context["config"]
    text = [
        f"# {table.title}",
        "",
        f"Scale: **{context['scale']}**. Mean ± std over the finished seeds (sample std).",
        "",
        *lines,
        "",
        table.notes,
        "",
        f"- Recipe (one row, modular run): `{json.dumps(cfg, sort_keys=True)}`",
        f"- Device: {context['device']}; machine: {context['machine']}",
        f"- Versions: {context['versions']}",
        f"- Wall time of this command so far: {context['wall_time_s'] / 60:.1f} min (cached "
        "seeds count 0)",
        f"- Command: `{context['command']}`",
    ]
    extra = [s for seeds in measured.values() for s in seeds if s.get("empty_layers")]
    if extra:
        text.append(
            f"- {len(extra)} seed(s) have modules with zero-width layers (see measured.json)."
        )
    write_markdown(out.with_suffix(".md"), "\n".join(text) + "\n")
    with out.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(csv_rows[0]))
        writer.writeheader()
        writer.writerows(csv_rows)


__all__ = [
    "TABLES",
    "Table",
    "estimate_cpu_hours",
    "measure_seed",
    "subtasks",
    "write_markdown",
    "write_results",
]
