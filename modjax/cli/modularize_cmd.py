"""`modjax modularize`: extract one module per class from a trained MwT/MODA run."""

import pathlib

import jax

from modjax.cli.flags import add_bool_flag
from modjax.runs import report
from modjax.runs.modularize import modularize_workdir


def add_parser(sub) -> None:
    """Registers the `modularize` sub-command on `sub` (argparse subparsers)."""
    p = sub.add_parser(
        "modularize",
        help="extract one module per class from a trained MwT/MODA run",
        description="Restore the latest checkpoint of a training workdir (method mwt or moda), "
        "run module extraction over its training split with the test transform (METHODS §4.5, "
        "§5.4), and save every per-class module under OUT/class_<c>/ plus OUT/modules.json "
        "(retention, fallbacks, timing). OUT is written whole or not at all. Every module "
        "directory holds its kept-unit weights, architecture, input transform, class names and "
        "the parent's step and content hash, so `modjax compose` needs no workdir.",
    )
    p.add_argument("--workdir", required=True, help="a directory written by `modjax train`")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.9,
        help="activity frequency tau in (0, 1] a unit needs to join a class module "
        "(default: %(default)s)",
    )
    add_bool_flag(
        p,
        "fallback",
        default=True,
        help="the method's fallback for layers that keep too few units; --no-fallback is the "
        "MODA 2024 parity setting (default: on)",
    )
    p.add_argument("--out", help="output directory; must not exist (default: WORKDIR/modules)")
    p.add_argument("--data-dir", help="dataset directory (default: the run's, or $MODJAX_DATA_DIR)")
    p.add_argument(
        "--step",
        type=int,
        help="checkpoint step to cut the modules from (default: the latest); every module "
        "records it with the parent's content hash, so it never goes stale",
    )
    add_bool_flag(p, "progress", default=True, help="show a progress bar (default: on)")


def modularize(args) -> int:
    if not 0.0 < args.threshold <= 1.0:
        raise ValueError(f"--threshold={args.threshold} must be in (0, 1] (tau = 0.9 by default)")
    workdir = pathlib.Path(args.workdir)
    out = pathlib.Path(args.out) if args.out else workdir / "modules"
    if out.exists():
        raise ValueError(f"--out {out} exists; remove it or choose another directory")
    summary = modularize_workdir(
        workdir,
        out=out,
        threshold=args.threshold,
        fallback=args.fallback,
        data_dir=args.data_dir,
        step=args.step,
        progress=args.progress,
    )
    if jax.process_index() == 0:
        rows = [{**r, "empty_layers": len(r["empty_layers"])} for r in summary["classes"]]
        print(
            report.format_table(
                rows,
                [
                    "class",
                    "name",
                    "samples",
                    "unit_retention",
                    "weight_retention",
                    "relative_macs",
                    "fallbacks",
                    "empty_layers",
                ],
            )
        )
        parent, timing = summary["parent"], summary["extraction_time_s"]
        print(
            f"\n{len(rows)} {summary['method']} modules of {parent['model']} on "
            f"{parent['dataset']} (step {summary['step']}, tau={args.threshold}) in {out}; "
            f"extraction {timing['total_s']:.2f} s (compile {timing['compile_s']:.2f} s)"
        )
        if "cohesion" in summary:
            print(
                f"Jaccard cohesion {summary['cohesion']:.4f} (higher is better), coupling "
                f"{summary['coupling']:.4f} (lower is better) over the training samples (§10.4)"
            )
        empty = sorted({n for r in summary["classes"] for n in r["empty_layers"]})
        if empty:
            print(
                f"zero-width layers (no kept unit) in some modules: {empty}; such a module's "
                "logits past that layer come from biases alone"
            )
    return 0
