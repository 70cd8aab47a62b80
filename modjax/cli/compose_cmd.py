"""`modjax compose`: compose saved modules into one classifier and evaluate it."""

import contextlib
import pathlib
import tempfile
from typing import Any

from modjax.cli.flags import add_bool_flag, positive_float
from modjax.modules import atomic, export
from modjax.runs import compose as modules
from modjax.runs import report, task_module


def add_parser(sub) -> None:
    """Registers the `compose` sub-command on `sub` (argparse subparsers)."""
    p = sub.add_parser(
        "compose",
        help="compose saved modules of any families into one classifier and evaluate it",
        description="Load module directories of any family and parent (no training workdir is "
        "needed: each holds its weights, input transform and parent hash) and build one "
        "classifier: MwT/MODA modules of one parent fuse into one pruned network, Pan & Rajan "
        "modules of one parent vote, DeepArc networks (shrink, repair) give their logits; the "
        "outputs sit side by side and the prediction is their argmax (use --calibrate when "
        "parents or families differ). Evaluate on the test split(s) of the involved datasets, "
        "restricted to the composed classes. Modules of different parents compose side by side; one "
        "class of one dataset comes from one module (the same class of two parents: keep one, or "
        "swap it with --replace). Class ids of different datasets that clash need --relabel.",
    )
    p.add_argument(
        "--modules",
        nargs="+",
        required=True,
        metavar="DIR",
        help="module directories written by `modjax modularize`, `decompose`, `shrink` or "
        "`repair`, e.g. mods/class_3; a folder of them (mods) stands for all its modules; "
        "DIR:C1,C2 keeps only those classes",
    )
    p.add_argument(
        "--relabel",
        nargs="+",
        default=[],
        metavar="DATASET:CLASS=NEW",
        help="give class CLASS of DATASET the output id NEW; needed when modules of different "
        "datasets share class ids, e.g. kmnist:1=11 (it maps a dataset's class, so it cannot tell "
        "two modules of one class of one dataset apart)",
    )
    add_bool_flag(
        p,
        "calibrate",
        default=False,
        help="calibrate the outputs on training data before the argmax, by the rule of "
        "--calibration (default: off: raw scores)",
    )
    p.add_argument(
        "--calibration",
        choices=("minmax", "platt"),
        default="minmax",
        help="with --calibrate: minmax = each output divided into its range over its parent's "
        "training samples of its classes (METHODS §5.7 step 5, MODA's rule); platt = each "
        "output mapped to the log-odds of a logistic fit against the training samples of every "
        "composed class, which puts modules of different parents and families on one scale "
        "(use it to mix families) (default: %(default)s)",
    )
    p.add_argument(
        "--data-dir", help="dataset directory (default: each run's, or $MODJAX_DATA_DIR)"
    )
    p.add_argument(
        "--replace",
        nargs="+",
        metavar="DIR",
        default=[],
        help="module replacement across models (Pan & Rajan FSE'20): these modules take the "
        "place of the --modules of the same (dataset, class), whatever the models' depths or "
        "families, e.g. --modules mnist1_modules --replace mnist4_modules/class_5",
    )
    p.add_argument(
        "--batch-size", type=int, default=256, help="evaluation batch size (default: %(default)s)"
    )
    p.add_argument(
        "--finetune-epochs",
        type=int,
        default=0,
        metavar="E",
        help="MwT task module (METHODS §4.6): fine-tune the union module of one MwT parent, "
        "wrapped with a head ReLU -> Lin(N, |T|), for E epochs on the parent's training samples "
        "of T and report the test accuracy of the best-validation and last epochs; 0 (default) "
        "skips fine-tuning",
    )
    p.add_argument(
        "--finetune-t-max",
        type=int,
        default=20,
        help="per-epoch cosine schedule period of the fine-tune (default: %(default)s)",
    )
    p.add_argument(
        "--finetune-lr",
        type=positive_float,
        default=0.05,
        help="fine-tune peak SGD learning rate, Nesterov 0.9 (default: %(default)s)",
    )
    p.add_argument(
        "--finetune-batch-size",
        type=int,
        default=128,
        help="fine-tune training batch size (default: %(default)s)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="stratified fraction of T's training samples held out for fine-tune model "
        "selection (default: %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="fine-tune head init, validation split and data order seed (default: %(default)s)",
    )
    p.add_argument(
        "--task-dir",
        metavar="DIR",
        help="with --finetune-epochs: write the fine-tuned task module (its best validation "
        "epoch) as a module directory, which compose, eval and --export take like any module",
    )
    p.add_argument(
        "--export",
        metavar="FILE",
        help="also write the composed classifier as one file (jax.export StableHLO + "
        "parameters + class ids/names in a zip) that runs with jax, numpy and flatbuffers; "
        "with --finetune-epochs, the fine-tuned task module is exported",
    )
    add_bool_flag(
        p,
        "overwrite",
        default=False,
        help="replace an existing --export FILE or --task-dir DIR (default: off)",
    )
    add_bool_flag(
        p,
        "eval",
        default=True,
        help="evaluate on the test split(s); --no-eval reads no dataset unless --calibrate or "
        "--finetune-epochs need the training split (default: on)",
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
        if value < 0 or key[1] < 0:
            raise ValueError(f"--relabel {item!r}: class ids must be >= 0")
        out[key] = value
    return out


def compose(args) -> int:
    relabel = _parse_relabel(args.relabel)
    if args.out and pathlib.Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a directory; give a file name for the JSON result")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size={args.batch_size} must be >= 1")
    _check_finetune_args(args)
    if args.export and pathlib.Path(args.export).exists() and not args.overwrite:
        raise ValueError(f"--export {args.export} exists; pass --overwrite to replace it")
    if args.task_dir and args.finetune_epochs == 0:
        raise ValueError("--task-dir needs --finetune-epochs E > 0: it keeps the fine-tuned module")
    if args.task_dir and pathlib.Path(args.task_dir).exists() and not args.overwrite:
        raise ValueError(f"--task-dir {args.task_dir} exists; pass --overwrite to replace it")
    dirs = modules.replace_dirs(args.modules, args.replace) if args.replace else args.modules
    if args.finetune_epochs > 0:  # refuse before any evaluation
        task_module.check_task_modules(modules.load_dirs(dirs))
    value = modules.compose_dirs(
        dirs,
        relabel=relabel,
        calibrate=args.calibrate,
        calibration=args.calibration,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        evaluate=args.eval,
    )
    composed = value.pop("composed")
    saved = value.pop("saved")
    if args.finetune_epochs > 0:
        tuned = task_module.finetune_task(
            {"composed": composed, "saved": saved},
            epochs=args.finetune_epochs,
            t_max=args.finetune_t_max,
            learning_rate=args.finetune_lr,
            batch_size=args.finetune_batch_size,
            eval_batch_size=args.batch_size,
            val_fraction=args.val_fraction,
            seed=args.seed,
            data_dir=args.data_dir,
        )
        value["finetune"] = tuned.summary
        if args.task_dir or args.export:  # the export reads the task module back, as a user would
            with contextlib.ExitStack() as stack:
                where = args.task_dir or stack.enter_context(tempfile.TemporaryDirectory())
                target = pathlib.Path(where) / ("" if args.task_dir else "task")
                path = task_module.save_task(
                    tuned, {"saved": saved}, target, overwrite=args.overwrite
                )
                if args.task_dir:
                    value["finetune"]["task_dir"] = str(path.resolve())
                task_value = modules.compose_dirs([path], evaluate=False)
                composed, value["names"] = task_value["composed"], task_value["names"]
    if args.export:
        spec = saved[0].info["preprocess"]  # one raw input shape (runs.compose.check_inputs)
        path = export.export_composed(
            composed,
            args.export,
            input_shape=spec["image_shape"],
            class_names=value["names"],
            overwrite=args.overwrite,
        )
        value["export"] = {
            "path": str(path.resolve()),
            "bytes": path.stat().st_size,
            "network": "fine-tuned task module" if args.finetune_epochs > 0 else "composition",
        }
    if args.out:
        atomic.write_json(pathlib.Path(args.out), value)
    _print(value, args)
    return 0


def _print(value: dict[str, Any], args) -> None:
    size = value["size"]
    cal = f" (calibrated: {value['calibrated']})" if value["calibrated"] else ""
    where = f"; result in {args.out}" if args.out else ""
    sizes = (
        f"params {size['params']} ({size['relative_params']:.3f} of parents), MACs "
        f"{size['macs']} ({size['relative_macs']:.3f} of parents)"
    )
    n, g = len(value["classes"]), len(value["groups"])
    if "accuracy" in value:
        print(
            report.format_table(
                value["per_class"],
                ["output_id", "dataset", "class", "name", "test_samples", "accuracy"],
            )
        )
        print(
            f"\ncomposed {n} classes from {g} parent(s): accuracy {value['accuracy']:.4f} on "
            f"{value['count']} test samples{cal}; {sizes}{where}"
        )
    else:
        print(f"composed {n} classes from {g} parent(s){cal}, not evaluated; {sizes}{where}")
    if "export" in value:
        e = value["export"]
        print(
            f"exported to {e['path']} ({e['bytes']} bytes; load it with jax and flatbuffers, see "
            "modjax.modules.export.LOADER_SOURCE)"
        )
    ft = value.get("finetune")
    if ft is not None:
        base = f" (not fine-tuned {value['accuracy']:.4f})" if "accuracy" in value else ""
        print(
            f"fine-tuned task module ({ft['epochs']} epochs, {ft['train_samples']} "
            f"train / {ft['val_samples']} val samples): accuracy best epoch "
            f"{ft['best_epoch']} {ft['best_accuracy']:.4f}, last epoch "
            f"{ft['last_accuracy']:.4f} on {ft['test_samples']} test samples"
            f"{base}; {ft['train_time_s']:.2f} s"
        )


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
