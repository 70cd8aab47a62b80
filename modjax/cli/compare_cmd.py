"""`modjax compare`: the method families side by side on one network, one table."""

import pathlib

import jax

from modjax.runs import compare


def add_parser(sub) -> None:
    """Registers `compare` on `sub` (argparse subparsers)."""
    p = sub.add_parser(
        "compare",
        help="compare the methods (standard, MwT, MODA, Pan & Rajan, DeepArc) on one network",
        description="For each seed: train the config's network with standard cross-entropy and "
        "with every training objective among --config's methods (MwT, MODA), cut each "
        "method's modules with its family's command (modularize, decompose, shrink), and "
        "measure every method's module directories with the same code: all modules composed, "
        "module size in parameters and MACs, overlap, the same sampled sub-tasks composed "
        "without retraining, training and cutting time. Each finished seed is written as "
        "<results>/seed_<s>.json (config hash, commit, command, device); the table "
        "<results>.md is rebuilt from those files, keeping its '## Reading' section. Rerunning "
        "resumes from the stages cached in --workdir.",
        epilog="Configs: experiments/compare/configs/*.py; get_config() returns "
        f"{list(compare.CONFIG_KEYS)}.",
    )
    p.add_argument(
        "--config",
        required=True,
        help="a comparison config (get_config()) (run as Python: use only files you trust)",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default: %(default)s)")
    p.add_argument("--data-dir", help="dataset directory (default: $MODJAX_DATA_DIR)")
    p.add_argument("--workdir", help="runs and modules (default: runs/compare/<config name>)")
    p.add_argument(
        "--results",
        help="folder of per-seed result files; the table is <results>.md (default: "
        "benchmarks/results/compare/<config name>_<platform>)",
    )
    p.add_argument("--progress", action="store_true", help="show training progress bars")


def compare_command(args, argv) -> int:
    """Runs `modjax compare`; prints the table."""
    name = pathlib.Path(args.config).stem
    platform = jax.devices()[0].platform
    md = compare.run(
        args.config,
        seeds=args.seeds,
        data_dir=args.data_dir,
        workdir=pathlib.Path(args.workdir or f"runs/compare/{name}"),
        results=pathlib.Path(args.results or f"benchmarks/results/compare/{name}_{platform}"),
        command=" ".join(["modjax", *argv]),
        progress=args.progress,
    )
    print(md.read_text())
    return 0


__all__ = ["add_parser", "compare_command"]
