"""`modjax pipeline`: modular training → one module per class → a composed sub-task classifier."""

import argparse
from collections.abc import Callable

import jax

from modjax.cli.flags import add_bool_flag
from modjax.runs import pipeline as pipeline_lib
from modjax.runs import report


def _classes(text: str) -> list[int]:
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} must be comma-separated class ids, e.g. 3,5,8"
        ) from None


def add_parser(sub, add_config_flags: Callable) -> None:
    """Registers `pipeline` on `sub`; `add_config_flags` adds the TrainConfig flags."""
    p = sub.add_parser(
        "pipeline",
        help="train modularly, extract one module per class, compose a sub-task classifier",
        description="The whole modular pipeline in one workdir: train (MwT or MODA), extract "
        "one module per class (workdir/modules/), compose the --classes sub-task from those "
        "modules alone and export it as one file (workdir/composed.jaxexport). Prints the "
        "parent's accuracy, each module's size, and the composed classifier next to the "
        "parent restricted to the same classes. Re-running resumes every stage.",
    )
    p.add_argument(
        "--config",
        help="experiment config file defining get_config(), e.g. experiments/configs/default.py; "
        "it is run as Python, so it can execute arbitrary code: use only files you trust",
    )
    p.add_argument(
        "--workdir", default="runs/pipeline", help="output directory (default: %(default)s)"
    )
    p.add_argument(
        "--classes",
        type=_classes,
        default=[3, 5, 8],
        help="the sub-task to compose: comma-separated class ids (default: 3,5,8)",
    )
    p.add_argument(
        "--threshold", type=float, default=0.9, help="extraction tau (default: %(default)s)"
    )
    add_bool_flag(p, "progress", default=True, help="show progress bars (default: on)")
    add_config_flags(p)


def pipeline(args, load_config: Callable) -> int:
    """Runs the pipeline of `args` and prints its table; `load_config(args)` builds the config."""
    config = load_config(args)
    value = pipeline_lib.run_pipeline(
        config,
        args.workdir,
        classes=args.classes,
        threshold=args.threshold,
        progress=args.progress,
    )
    if jax.process_index() != 0:
        return 0
    rows = [
        {
            **row,
            "accuracy": "" if row["accuracy"] is None else f"{row['accuracy']:.4f}",
            "of_parent": f"{100 * row['of_parent']:.1f}%",
        }
        for row in value["rows"]
    ]
    print(report.format_table(rows, ["what", "classes", "accuracy", "params", "of_parent"]))
    t = value["times_s"]
    print(
        f"\n{config.method} {config.model} on {config.dataset}: composed {value['classes']} from "
        f"modules alone: {value['composed_accuracy']:.4f} vs parent restricted "
        f"{value['restricted_accuracy']:.4f}, at {100 * value['composed_size']['relative_params']:.1f}% "
        f"of the parameters. Train {t['train']:.1f} s, modularize {t['modularize']:.1f} s, "
        f"compose+export {t['compose']:.1f} s.\nModules in {args.workdir}/modules, classifier in "
        f"{value['export']['path']} ({value['export']['bytes']} bytes)."
    )
    return 0
