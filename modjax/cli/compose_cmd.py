"""`modjax compose`: compose saved modules into one classifier and evaluate it."""

import pathlib
from typing import Any

from modjax.runs.workdir import restore_parent, write_json_atomic


def add_parser(sub) -> None:
    """Registers the `compose` sub-command on `sub` (argparse subparsers)."""
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


def compose(args) -> int:
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    from modjax import data
    from modjax.modular import compose as cp
    from modjax.modular import io as module_io
    from modjax.runs import report, training

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
        fn = training.make_preprocess(config, run.info, augment=False)
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
        write_json_atomic(pathlib.Path(args.out), report.jsonable(value))
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

    import numpy as np

    from modjax import loop, train
    from modjax.modular import finetune
    from modjax.runs import training

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
        train_preprocess=training.make_preprocess(config, run.info, augment=True),
        eval_preprocess=eval_pre,
        num_epochs=args.finetune_epochs, t_max=args.finetune_t_max,
        learning_rate=args.finetune_lr, batch_size=args.finetune_batch_size, seed=args.seed,
    )
    train_s = time.perf_counter() - t0
    evaluate = train.make_eval_step(model=model, preprocess=eval_pre, num_classes=len(classes))

    def test_accuracy(v) -> float:
        return loop.evaluate(
            eval_step=evaluate, variables=v, images=te_x, labels=te_y,
            global_batch_size=args.batch_size,
        )["accuracy"]

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
