"""`modjax modularize` and `modjax compose`: extract per-class modules; compose and evaluate."""

import dataclasses
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any

MODULAR_METHODS = ("mwt", "moda")


def add_commands(sub) -> None:
    """Registers the `modularize` and `compose` sub-commands on `sub` (argparse subparsers)."""
    p = sub.add_parser(
        "modularize",
        help="extract one module per class from a trained MwT/MODA run",
        description="Restore the latest checkpoint of a training workdir (method mwt or moda), "
        "run module extraction over its training split with the test transform (METHODS §4.5, "
        "§5.4), and save every per-class module under OUT/class_<c>/ plus OUT/modules.json "
        "(retention, fallbacks, timing). OUT is written whole or not at all.",
    )
    p.add_argument("--workdir", required=True, help="a directory written by `modjax train`")
    p.add_argument(
        "--threshold", type=float, default=0.9,
        help="activity frequency tau in (0, 1] a unit needs to join a class module "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--no-fallback", dest="fallback", action="store_false",
        help="disable the method's fallback for layers that keep too few units (MODA 2024 parity)",
    )
    p.add_argument(
        "--out", help="output directory; must not exist (default: WORKDIR/modules)"
    )
    p.add_argument("--data-dir", help="dataset directory (default: the run's, or $MODJAX_DATA_DIR)")
    p.add_argument(
        "--no-progress", dest="progress", action="store_false", help="disable the progress bar"
    )

    p = sub.add_parser(
        "compose",
        help="compose saved modules into one classifier and evaluate it",
        description="Load saved modules, restore each parent from the training workdir named in "
        "its manifest, build one pruned network per parent over the union of its modules "
        "(outputs of different parents concatenated), and evaluate on the test split(s) of the "
        "involved datasets, restricted to the composed classes.",
    )
    p.add_argument(
        "--modules", nargs="+", required=True, metavar="DIR",
        help="module directories written by `modjax modularize`, e.g. mods/class_3",
    )
    p.add_argument(
        "--relabel", nargs="+", default=[], metavar="DATASET:CLASS=NEW",
        help="give class CLASS of DATASET the output id NEW; needed when modules of different "
        "datasets share class ids, e.g. kmnist:1=11",
    )
    p.add_argument(
        "--calibrate", action="store_true",
        help="min-max normalize each output by its range over its parent's training samples "
        "of the composed classes before the argmax (METHODS §5.7 step 5); default raw logits",
    )
    p.add_argument(
        "--data-dir", help="dataset directory (default: each run's, or $MODJAX_DATA_DIR)"
    )
    p.add_argument(
        "--batch-size", type=int, default=256, help="evaluation batch size (default: %(default)s)"
    )
    p.add_argument(
        "--finetune-epochs", type=int, default=0, metavar="E",
        help="MwT task module (METHODS §4.6): fine-tune the union module of one MwT parent, "
        "wrapped with a head ReLU -> Lin(N, |T|), for E epochs on the parent's training samples "
        "of T and report the test accuracy of the best-validation and last epochs; 0 (default) "
        "skips fine-tuning",
    )
    p.add_argument(
        "--finetune-t-max", type=int, default=20,
        help="per-epoch cosine schedule period of the fine-tune (default: %(default)s)",
    )
    p.add_argument(
        "--finetune-lr", type=float, default=0.05,
        help="fine-tune peak SGD learning rate, Nesterov 0.9 (default: %(default)s)",
    )
    p.add_argument(
        "--finetune-batch-size", type=int, default=128,
        help="fine-tune training batch size (default: %(default)s)",
    )
    p.add_argument(
        "--val-fraction", type=float, default=0.1,
        help="stratified fraction of T's training samples held out for fine-tune model "
        "selection (default: %(default)s)",
    )
    p.add_argument(
        "--seed", type=int, default=0,
        help="fine-tune head init, validation split and data order seed (default: %(default)s)",
    )
    p.add_argument("--out", help="write the result as JSON to this file")

    p = sub.add_parser(
        "replace",
        help="repair a weak model's class with a strong model's module (MODA adapter)",
        description="Module replacement (METHODS §5.7): freeze a weak model (any `modjax train` "
        "run) and a strong model's single-class module; train an adapter Lin(N, N) over the weak "
        "logits with the target class's column replaced by the module's logit, with CE on the "
        "weak run's training data. Also runs the CNNSplitter-style baseline (softmax of the weak "
        "logits, target-class probability overwritten by the module output min-max normalized "
        "over the strong run's training set). Prints per-class test accuracy of the weak model, "
        "the baseline and the adapter, and the 'TC | mean non-TC' accuracy changes.",
    )
    p.add_argument(
        "--weak-workdir", required=True,
        help="training workdir of the weak model (its dataset's train/test splits are used)",
    )
    p.add_argument(
        "--module", required=True, metavar="DIR",
        help="one module directory written by `modjax modularize` on the strong run, e.g. "
        "strong/modules/class_3; its parent workdir is restored from its manifest",
    )
    p.add_argument(
        "--target-class", type=int, required=True, metavar="K",
        help="the weak model's class id (output index) that the module replaces",
    )
    p.add_argument(
        "--epochs", type=int, default=5,
        help="adapter epochs; cosine T_max = epochs (default: %(default)s; MODA 2024: 20)",
    )
    p.add_argument(
        "--learning-rate", type=float, default=0.05,
        help="adapter peak SGD learning rate, Nesterov 0.9 (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size", type=int, default=128,
        help="adapter training batch size (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="adapter init and data order seed")
    p.add_argument(
        "--data-dir", help="dataset directory (default: each run's, or $MODJAX_DATA_DIR)"
    )
    p.add_argument("--out", help="write the result as JSON to this file")


# ----------------------------------------------------------------------------- shared helpers


def load_run(workdir: pathlib.Path, data_dir: str | None, *, step: int | None = None):
    """`(config, run, host variables, step)` of a training workdir's checkpoint."""
    import jax

    from modjax import checkpoint, train
    from modjax.cli import config as config_lib
    from modjax.cli import loop

    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(
            f"{workdir / 'config.json'} not found: is {workdir} a directory written by "
            "`modjax train`?"
        )
    config = config_lib.load_json(workdir / "config.json")
    if data_dir:
        config = dataclasses.replace(config, data_dir=data_dir)
    run = loop.build_run(config)
    manager = checkpoint.make_manager(workdir / "checkpoints", save_every=1, keep=10**9)
    abstract = train.abstract_train_state(
        model=run.model, tx=run.tx, image_shape=run.input_shape, mesh=run.mesh
    )
    state, _ = checkpoint.restore(manager, abstract, step=step)
    return config, run, jax.device_get(train.variables_of(state)), int(state.step)


def _describe(config, run, workdir: pathlib.Path, step: int) -> dict[str, Any]:
    from modjax import modularize

    kwargs = {} if config.depth is None else {"depth": config.depth}
    parent = modularize.describe_parent(
        config.model, dataset=config.dataset, checkpoint=str(workdir.resolve()),
        input_shape=run.input_shape, num_classes=run.info.num_classes, width=config.width,
        mask_generators=config.method == "mwt", **kwargs,
    )
    parent["step"] = step
    return parent


def _write_json_atomic(path: pathlib.Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- modularize


def modularize(args) -> int:
    import jax
    import numpy as np

    from modjax import data, metrics, module_io, parallel
    from modjax import modularize as mz
    from modjax.cli import loop, report
    from modjax.prune import prune

    if not 0.0 < args.threshold <= 1.0:
        raise ValueError(f"--threshold={args.threshold} must be in (0, 1] (tau = 0.9 by default)")
    workdir = pathlib.Path(args.workdir)
    out = pathlib.Path(args.out) if args.out else workdir / "modules"
    if out.exists():
        raise ValueError(f"--out {out} exists; remove it or choose another directory")
    config, run, variables, step = load_run(workdir, args.data_dir)
    if config.method not in MODULAR_METHODS:
        raise ValueError(
            f"{workdir} was trained with method={config.method!r}; modularize needs a run "
            f"trained with one of {list(MODULAR_METHODS)}"
        )
    parent = _describe(config, run, workdir, step)
    images, labels = run.train_data
    batch = config.global_batch_size
    extraction = mz.extract_modules(
        data.eval_batches(images, labels, global_batch_size=batch),
        variables=parallel.replicate(variables, run.mesh),
        parent=parent,
        preprocess=loop.make_preprocess(config, run.info, augment=False),
        method=config.method,
        threshold=args.threshold,
        fallback=args.fallback,
        model=run.model,
        mesh=run.mesh,
        total=data.num_eval_batches(len(labels), batch),
        disable=not args.progress,
    )
    shape = tuple(run.input_shape)
    names = run.info.class_names
    rows, saved = [], []
    for module in extraction.modules:
        c = module.classes[0]
        pruned, pv = prune(
            parent["model"], parent["model_kwargs"], variables, module.keep,
            classes=[c] if config.method == "moda" else None, method=config.method,
            input_shape=shape,
        )
        size = metrics.module_flops_and_params(
            (pruned, pv["params"], shape), (run.model, variables["params"], shape)
        )
        layer_rates = {n: float(np.mean(k)) for n, k in module.keep.items()}
        module = module._replace(metrics={
            **module.metrics,
            "weight_retention": size.relative_params,
            "relative_flops": size.relative_flops,
            "module_params": size.params,
            "module_flops": size.flops,
        })
        saved.append(module)
        rows.append({
            "class": c,
            "name": names[c] if names else str(c),
            "samples": module.metrics.get("num_samples"),
            "unit_retention": module.metrics["kernel_rate"],
            "weight_retention": size.relative_params,
            "relative_flops": size.relative_flops,
            "fallbacks": len(module.fallbacks),
            "layer_retention": layer_rates,
        })
    summary = {
        "workdir": str(workdir.resolve()),
        "step": step,
        "method": config.method,
        "threshold": args.threshold,
        "fallback": args.fallback,
        "parent": parent,
        "extraction_time_s": extraction.timing,
        "num_fallbacks": len(extraction.fallbacks),
        "classes": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for module in saved:
            module_io.save_module(module, tmp / f"class_{module.classes[0]}")
        _write_json_atomic(tmp / "modules.json", report._jsonable(summary))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if jax.process_index() == 0:
        print(report.format_table(
            rows,
            ["class", "name", "samples", "unit_retention", "weight_retention", "relative_flops",
             "fallbacks"],
        ))
        print(
            f"\n{len(saved)} {config.method} modules of {config.model} on {config.dataset} "
            f"(step {step}, tau={args.threshold}) in {out}; extraction "
            f"{extraction.timing['total_s']:.2f} s (compile {extraction.timing['compile_s']:.2f} s)"
        )
    return 0


# ----------------------------------------------------------------------------- compose


def _parse_relabel(items) -> dict[tuple[str, int], int]:
    out = {}
    for item in items:
        try:
            src, new = item.rsplit("=", 1)
            dataset, cls = src.rsplit(":", 1)
            key, value = (dataset, int(cls)), int(new)
        except ValueError:
            raise ValueError(
                f"--relabel {item!r} must look like DATASET:CLASS=NEW, e.g. kmnist:1=11"
            ) from None
        if key in out:
            raise ValueError(f"--relabel gives {dataset}:{cls} twice")
        out[key] = value
    return out


def _same_parent(saved: dict[str, Any], restored: dict[str, Any]) -> str | None:
    for key in ("model", "model_kwargs", "dataset", "input_shape"):
        a, b = (json.dumps(p.get(key), sort_keys=True) for p in (saved, restored))
        if a != b:
            return f"{key} is {saved.get(key)!r} in the module but {restored.get(key)!r} in the run"
    return None


def restore_parent(module, module_dir, data_dir):
    """`(config, run, host variables, step)` of the training run a module was cut from.

    Raises:
        ValueError: the manifest names no training workdir, or the run there is not the
            module's parent (another model, dataset or step).
    """
    ckpt = module.parent.get("checkpoint")
    if not ckpt or not (pathlib.Path(ckpt) / "config.json").is_file():
        raise ValueError(
            f"module {module_dir} comes from an unknown parent: its manifest names checkpoint "
            f"{ckpt!r}, which is not a training workdir (no config.json)"
        )
    config, run, variables, step = load_run(
        pathlib.Path(ckpt), data_dir, step=module.parent.get("step")
    )
    clash = _same_parent(module.parent, _describe(config, run, pathlib.Path(ckpt), step))
    if clash:
        raise ValueError(f"module {module_dir} does not belong to the run in {ckpt}: {clash}")
    return config, run, variables, step


def compose(args) -> int:
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    from modjax import compose as cp
    from modjax import data, module_io
    from modjax.cli import loop, report

    relabel = _parse_relabel(args.relabel)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size={args.batch_size} must be >= 1")
    _check_finetune_args(args)
    modules = []
    for d in args.modules:
        modules.append(module_io.load_module(d))
    if args.finetune_epochs > 0:
        _check_finetune_modules(args.modules, modules, cp.parent_key)
    runs: dict[str, dict[str, Any]] = {}  # parent key -> restored run
    for d, m in zip(args.modules, modules):
        key = cp.parent_key(m.parent)
        if key in runs:
            continue
        config, run, variables, _ = restore_parent(m, d, args.data_dir)
        fn = loop.make_preprocess(config, run.info, augment=False)
        runs[key] = {"config": config, "run": run, "variables": variables, "preprocess": fn}
    shapes = {tuple(r["run"].info.image_shape) for r in runs.values()}
    if len(shapes) > 1:
        raise ValueError(
            f"modules come from datasets with different image shapes {sorted(shapes)}; "
            "composition feeds one input to every parent"
        )
    key0 = jax.random.PRNGKey(0)
    pre = {k: (lambda f: lambda x: f(x, key0))(r["preprocess"]) for k, r in runs.items()}
    vbp = {k: r["variables"] for k, r in runs.items()}
    composed = cp.compose(modules, vbp, relabel=relabel, preprocess_by_parent=pre)

    calibration = None
    if args.calibrate:
        calibration = {}
        for g in composed.groups:
            r = runs[g.key]
            images, labels = r["run"].train_data
            sel = np.isin(labels, g.classes)
            batches = data.eval_batches(
                images[sel], labels[sel], global_batch_size=args.batch_size
            )
            calibration[g.key] = cp.fit_calibration(g, batches, preprocess=r["preprocess"])
        composed = cp.calibrate(composed, calibration)

    # Test samples of the composed classes of every dataset, labelled with output ids.
    out_id = dict(zip(composed.sources, composed.classes))
    test_x, test_y, seen = [], [], set()
    for r in runs.values():
        name = r["config"].dataset
        if name in seen:
            continue
        seen.add(name)
        images, labels = r["run"].test_data
        mapping = {c: i for (d, c), i in out_id.items() if d == name}
        sel = np.isin(labels, list(mapping))
        test_x.append(images[sel])
        test_y.append(np.array([mapping[int(c)] for c in labels[sel]], np.int64))
    images, labels = np.concatenate(test_x), np.concatenate(test_y)
    t0 = time.perf_counter()
    result = cp.evaluate_composed(
        composed, images, labels, batch_size=args.batch_size,
        preprocess=lambda x, rng: x.astype(jnp.float32),
    )
    eval_s = time.perf_counter() - t0

    finetune = None
    if args.finetune_epochs > 0:
        finetune = _finetune(args, composed.groups[0], runs[composed.groups[0].key])

    groups = []
    for g in composed.groups:
        groups.append({
            "model": g.parent["model"], "dataset": g.parent.get("dataset"),
            "checkpoint": g.parent.get("checkpoint"), "step": g.parent.get("step"),
            "method": g.method, "classes": list(g.classes), **g.size,
        })
    keys = ("params", "macs", "parent_params", "parent_macs")
    size = {k: sum(g[k] for g in groups) for k in keys}
    size.update(
        relative_params=size["params"] / size["parent_params"],
        relative_macs=size["macs"] / size["parent_macs"],
    )
    per_class = []
    for (dataset, c), i in zip(composed.sources, composed.classes):
        r = next(r for r in runs.values() if r["config"].dataset == dataset)
        names = r["run"].info.class_names
        per_class.append({
            "output_id": i, "dataset": dataset, "class": c,
            "name": names[c] if names else str(c),
            "test_samples": result["per_class_count"][i],
            "accuracy": result["per_class_accuracy"][i],
        })
    value = {
        "modules": [str(pathlib.Path(d).resolve()) for d in args.modules],
        "classes": list(composed.classes),
        "sources": [list(s) for s in composed.sources],
        "relabel": [[d, c, n] for (d, c), n in relabel.items()],
        "calibrated": calibration is not None,
        "accuracy": result["accuracy"],
        "count": result["count"],
        "per_class": per_class,
        "size": size,
        "groups": groups,
        "eval_time_s": eval_s,
    }
    if finetune is not None:
        value["finetune"] = finetune
    if args.out:
        _write_json_atomic(pathlib.Path(args.out), report._jsonable(value))
    print(report.format_table(
        per_class, ["output_id", "dataset", "class", "name", "test_samples", "accuracy"]
    ))
    print(
        f"\ncomposed {len(composed.classes)} classes from {len(groups)} parent(s): accuracy "
        f"{result['accuracy']:.4f} on {result['count']} test samples"
        f"{' (calibrated)' if calibration is not None else ''}; params {size['params']} "
        f"({size['relative_params']:.3f} of parents), MACs {size['macs']} "
        f"({size['relative_macs']:.3f} of parents)"
        + (f"; result in {args.out}" if args.out else "")
    )
    if finetune is not None:
        print(
            f"fine-tuned task module ({finetune['epochs']} epochs, {finetune['train_samples']} "
            f"train / {finetune['val_samples']} val samples): accuracy best epoch "
            f"{finetune['best_epoch']} {finetune['best_accuracy']:.4f}, last epoch "
            f"{finetune['last_accuracy']:.4f} on {finetune['test_samples']} test samples "
            f"(not fine-tuned {result['accuracy']:.4f}); {finetune['train_time_s']:.2f} s"
        )
    return 0


def _check_finetune_args(args) -> None:
    if args.finetune_epochs < 0:
        raise ValueError(f"--finetune-epochs={args.finetune_epochs} must be >= 0 (0: none)")
    if args.finetune_epochs == 0:
        return
    if args.finetune_t_max < 1:
        raise ValueError(f"--finetune-t-max={args.finetune_t_max} must be >= 1 (MwT: 20)")
    if not args.finetune_lr > 0:
        raise ValueError(f"--finetune-lr={args.finetune_lr} must be > 0 (MwT: 0.05)")
    if args.finetune_batch_size < 1:
        raise ValueError(f"--finetune-batch-size={args.finetune_batch_size} must be >= 1")
    if not 0.0 < args.val_fraction < 1.0:
        raise ValueError(f"--val-fraction={args.val_fraction} must be in (0, 1) (MwT: 0.1)")


def _check_finetune_modules(dirs, modules, parent_key) -> None:
    """Fine-tuning builds one MwT task module: every module MwT and of one parent."""
    other = [f"{d} ({m.method})" for d, m in zip(dirs, modules) if m.method != "mwt"]
    if other:
        raise ValueError(
            f"--finetune-epochs needs MwT modules (METHODS §4.6 task module); not MwT: "
            f"{', '.join(other)}"
        )
    keys = {parent_key(m.parent) for m in modules}
    if len(keys) > 1:
        raise ValueError(
            f"--finetune-epochs needs modules of one parent; --modules come from {len(keys)} "
            "different training runs"
        )


def _finetune(args, group, r) -> dict[str, Any]:
    """Fine-tunes the MwT task module of `group` (METHODS §4.6); returns the JSON summary."""
    import time

    import jax
    import numpy as np

    from modjax import data, finetune, train
    from modjax.cli import loop

    classes = np.asarray(sorted(group.classes))  # T; labels become positions in sorted T
    config, run = r["config"], r["run"]

    def of_t(images, labels):
        sel = np.isin(labels, classes)
        return images[sel], np.searchsorted(classes, labels[sel]).astype(np.int32)

    tr_x, tr_y = of_t(*run.train_data)
    te_x, te_y = of_t(*run.test_data)
    train_idx, val_idx = finetune.stratified_split(tr_y, fraction=args.val_fraction, seed=args.seed)
    if len(train_idx) < args.finetune_batch_size:
        raise ValueError(
            f"--finetune-batch-size={args.finetune_batch_size} exceeds the {len(train_idx)} "
            f"fine-tuning samples of classes {classes.tolist()}; pass a smaller one"
        )
    model, variables = finetune.make_task_head(
        group.model, group.variables, num_outputs=len(classes), seed=args.seed
    )
    eval_pre = r["preprocess"]
    t0 = time.perf_counter()
    res = finetune.finetune_task_module(
        model, variables, (tr_x[train_idx], tr_y[train_idx]), (tr_x[val_idx], tr_y[val_idx]),
        num_classes=len(classes),
        train_preprocess=loop.make_preprocess(config, run.info, augment=True),
        eval_preprocess=eval_pre,
        num_epochs=args.finetune_epochs, t_max=args.finetune_t_max,
        learning_rate=args.finetune_lr, batch_size=args.finetune_batch_size, seed=args.seed,
    )
    train_s = time.perf_counter() - t0
    evaluate = train.make_eval_step(model=model, preprocess=eval_pre, num_classes=len(classes))

    def test_accuracy(v) -> float:
        correct = count = 0
        for batch in data.eval_batches(te_x, te_y, global_batch_size=args.batch_size):
            sums = jax.device_get(evaluate(v, batch))
            correct, count = correct + int(sums["correct"]), count + int(sums["count"])
        return correct / max(count, 1)

    return {
        "classes": classes.tolist(),
        "epochs": args.finetune_epochs, "t_max": args.finetune_t_max,
        "learning_rate": args.finetune_lr, "batch_size": args.finetune_batch_size,
        "val_fraction": args.val_fraction, "seed": args.seed,
        "train_samples": int(len(train_idx)), "val_samples": int(len(val_idx)),
        "test_samples": int(len(te_y)),
        "best_epoch": res.best_epoch, "best_val_accuracy": res.best_val_accuracy,
        "best_accuracy": test_accuracy(res.best_variables),
        "last_val_accuracy": res.last_val_accuracy,
        "last_accuracy": test_accuracy(res.last_variables),
        "history": res.history,
        "train_time_s": train_s,
    }


# ----------------------------------------------------------------------------- replace


def _check_replace_args(args) -> None:
    if args.epochs < 1:
        raise ValueError(f"--epochs={args.epochs} must be >= 1 (MODA: 5)")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size={args.batch_size} must be >= 1")
    if not args.learning_rate > 0:
        raise ValueError(f"--learning-rate={args.learning_rate} must be > 0")


def replace(args) -> int:
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    from modjax import compose as cp
    from modjax import data, module_io
    from modjax import replace as rp
    from modjax.cli import loop, report

    _check_replace_args(args)
    module = module_io.load_module(args.module)  # validate cheap inputs before restoring runs
    if len(module.classes) != 1:
        raise ValueError(
            f"--module {args.module} holds classes {list(module.classes)}; replacement needs a "
            "single-class module (one directory class_<c> written by `modjax modularize`)"
        )
    weak_dir = pathlib.Path(args.weak_workdir)
    weak_config, weak_run, weak_vars, weak_step = load_run(weak_dir, args.data_dir)
    n = weak_run.info.num_classes
    k = args.target_class
    if not 0 <= k < n:
        raise ValueError(
            f"--target-class={k} is not a class of the weak run ({weak_config.dataset}, {n} "
            f"classes): expected 0..{n - 1}"
        )
    config, run, strong_vars, step = restore_parent(module, args.module, args.data_dir)
    if tuple(run.info.image_shape) != tuple(weak_run.info.image_shape):
        raise ValueError(
            f"the strong run's images are {tuple(run.info.image_shape)} but the weak run's are "
            f"{tuple(weak_run.info.image_shape)}; both models must read the same inputs"
        )

    key0 = jax.random.PRNGKey(0)
    strong_pre = loop.make_preprocess(config, run.info, augment=False)
    key = cp.parent_key(module.parent)
    composed = cp.compose(
        [module], {key: strong_vars}, preprocess_by_parent={key: lambda x: strong_pre(x, key0)}
    )

    def strong_apply(images):
        return composed.apply_fn(jnp.asarray(images, jnp.float32))[:, 0]

    weak_pre = loop.make_preprocess(weak_config, weak_run.info, augment=False)
    weak_model = weak_run.model

    @jax.jit
    def weak_apply(images):
        x = weak_pre(jnp.asarray(images, jnp.float32), key0)
        return weak_model.apply(weak_vars, x, train=False)[0]

    t0 = time.perf_counter()
    images, labels = weak_run.train_data
    params = rp.train_adapter(
        weak_apply, strong_apply,
        data.eval_batches(images, labels, global_batch_size=args.batch_size),
        target_index=k, num_epochs=args.epochs, learning_rate=args.learning_rate,
        batch_size=args.batch_size, seed=args.seed,
    )
    train_s = time.perf_counter() - t0
    s_images, s_labels = run.train_data
    lo, hi = cp.fit_calibration(
        composed.groups[0], data.eval_batches(s_images, s_labels, global_batch_size=256),
        preprocess=strong_pre,
    )
    lo, hi = float(lo[0]), float(hi[0])

    test_x, test_y = weak_run.test_data
    predictors = {
        "weak": weak_apply,
        "cnnsplitter": jax.jit(lambda x: rp.cnnsplitter_patch(
            weak_apply(x), strong_apply(x), lo, hi, target_index=k)),
        "moda_adapter": jax.jit(rp.replaced_apply(weak_apply, strong_apply, params,
                                                  target_index=k)),
    }
    acc = {
        name: rp.per_class_accuracy(f, test_x, test_y, num_classes=n, batch_size=256)
        for name, f in predictors.items()
    }
    overall = {}
    counts = np.bincount(test_y, minlength=n)
    for name, a in acc.items():
        overall[name] = float(np.nansum(a * counts) / counts.sum())
    changes = {
        name: dict(zip(("tc", "mean_non_tc"), rp.per_class_change(acc["weak"], acc[name],
                                                                   target_index=k)))
        for name in ("cnnsplitter", "moda_adapter")
    }
    names = weak_run.info.class_names
    rows = [
        {
            "class": c, "name": (names[c] if names else str(c)) + (" (TC)" if c == k else ""),
            "test_samples": int(counts[c]),
            **{name: float(a[c]) for name, a in acc.items()},
        }
        for c in range(n)
    ]
    value = {
        "weak_workdir": str(weak_dir.resolve()), "weak_step": weak_step,
        "module": str(pathlib.Path(args.module).resolve()),
        "strong_class": int(module.classes[0]), "strong_method": module.method,
        "target_class": k, "epochs": args.epochs, "learning_rate": args.learning_rate,
        "batch_size": args.batch_size, "seed": args.seed,
        "strong_min": lo, "strong_max": hi,
        "accuracy": overall, "per_class": rows, "change": changes,
        "adapter_train_time_s": train_s,
    }
    if args.out:
        _write_json_atomic(pathlib.Path(args.out), report._jsonable(value))
    print(report.format_table(
        rows, ["class", "name", "test_samples", "weak", "cnnsplitter", "moda_adapter"]
    ))
    print(
        f"\nreplaced class {k} of the weak {weak_config.model} ({weak_config.dataset}) with the "
        f"{module.method} module of class {module.classes[0]} ({config.model}); accuracy weak "
        f"{overall['weak']:.4f}, cnnsplitter {overall['cnnsplitter']:.4f}, moda adapter "
        f"{overall['moda_adapter']:.4f}"
    )
    for name in ("cnnsplitter", "moda_adapter"):
        c = changes[name]
        print(f"TC | mean non-TC change, {name}: {c['tc']:+.4f} | {c['mean_non_tc']:+.4f}")
    if args.out:
        print(f"result in {args.out}")
    return 0


__all__ = ["add_commands", "compose", "modularize", "replace"]
