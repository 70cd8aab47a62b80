"""Reproduce a published MwT or MODA table end to end: train, extract, compose, measure, tabulate.

    python -m experiments.reproduce mwt  --scale cpu --seeds 3 --data-dir ../shared/datasets
    python -m experiments.reproduce moda --scale cpu --seeds 3 --data-dir ../shared/datasets
    python -m experiments.reproduce mwt  --scale paper --seeds 3 --distributed   # accelerators
    python -m experiments.reproduce moda_replace --scale digits --seeds 3        # about a minute

Tables (`--list` prints them):
- `mwt`:  MwT (METHODS §13.1, §13.7): standard and MwT accuracy, accuracy loss of the composed
  modules, KRR, Jaccard cohesion and coupling at modularization time (§10.4), training-time ratio.
- `mwt_reuse`: MwT sub-task reuse (§4.6–4.7, §13.1): fine-tuned task modules vs the
  CNNSplitter-style one-by-one composition and the fused one, on the `mwt` table's runs.
- `moda`: MODA (§13.2 Tables A, C): standard and MODA accuracy, module size, overlap, sub-task
  composition accuracy over §5.6's enumeration, training-time ratio.
- `moda_replace`: MODA module replacement (§5.7, §13.2 Table D): "TC | mean non-TC" accuracy
  change of the MODA adapter and the CNNSplitter-style baseline over an underfitted and an
  overfitted weak model, per target class (`replace.py`; networks cached per stage).

Scales are the files of `experiments/reproduce/configs/` (`cpu`, `paper`, `smoke`, `digits`);
each config's docstring gives its command and runtime. Each (model, method, seed) is a normal
`modjax train` workdir under `--workdir`, resumed from its last checkpoint when the command runs
again; each seed's measurements are cached next to it. The results file (`--out`, default
`benchmarks/results/reproduce_<table>_<scale>.md` and `.csv`) is rewritten after every finished
seed, with mean ± std over the finished seeds beside the published numbers, the device,
versions, wall time and the exact command. A workdir remembers its settings (`settings.json`);
running it again with other settings is refused, so one table never mixes results of different
settings.

On a cluster, `--submit slurm` (or `local`, `debug`) runs each (row, seed) as a submitit job
that resumes from its checkpoints when preempted or requeued, and writes the results file as jobs
finish; `--collect` rebuilds it from the finished seeds without running anything (`submit.py`;
BUILD.md, "Run a paper table on a Slurm cluster").
"""

import argparse
import functools
import json
import os
import pathlib
import platform
import shlex
import sys
import time

import jax

from experiments.reproduce import measure, replace, replace_table, submit, tables
from modjax.modules import atomic, jsonrules
from modjax.runs import config as config_lib

CONFIGS = pathlib.Path(__file__).resolve().parent / "configs"
SCALES = tuple(sorted(p.stem for p in CONFIGS.glob("*.py")))
TITLES = {
    **{name: t.title for name, t in tables.TABLES.items()},
    "moda_replace": replace_table.TITLE,
}
# TrainConfig fields added after workdirs were written: left out of settings.json at their
# default (no validation split), so that those workdirs still match.
NEWER_FIELDS = ("validation_split",)
KEYS = {"models", "train", "train_per_model", "tasks", "finetune_epochs", "for_accelerators"}
KEYS_REPLACE = {"models", "replace", "for_accelerators"}


def _parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m experiments.reproduce",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    parser.add_argument("table", nargs="?", help=f"the table: one of {sorted(TITLES)}")
    parser.add_argument("--list", action="store_true", help="list the tables and exit")
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default="cpu",
        help="the recipe, experiments/reproduce/configs/<scale>.py: cpu (reduced, hours on 2 "
        "cores), paper (the papers', for accelerators), smoke (seconds, tests), digits "
        "(moda_replace on the embedded digits, a minute per seed) (default: cpu)",
    )
    parser.add_argument(
        "--scale-config",
        help="a config file of the same form instead of the scale's own (its results and "
        "workdir are still named after --scale); it is run as Python, so it can execute "
        "arbitrary code: use only files you trust",
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per row (default: 3)")
    parser.add_argument(
        "--models",
        nargs="+",
        help="rows to run, zoo model names (default: the config's models[table]; rows "
        "without published numbers show –)",
    )
    parser.add_argument(
        "--workdir", help="runs and caches (default: runs/reproduce_<table>_<scale>)"
    )
    parser.add_argument(
        "--out",
        help="results file stem (default: benchmarks/results/reproduce_<table>_<scale>)",
    )
    parser.add_argument("--data-dir", help="dataset directory (default: $MODJAX_DATA_DIR)")
    parser.add_argument(
        "--tasks",
        type=int,
        default=None,
        help="moda, mwt_reuse: sub-tasks per seed, a seeded sample of §5.6's 1013 (default: "
        "the config's tasks[table]; all at paper scale, 60 for moda and 4 for mwt_reuse at "
        "cpu scale)",
    )
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=None,
        help="mwt_reuse: task-module fine-tuning epochs (default: the config's; 10 at paper "
        "scale, §4.6; 2 at cpu scale)",
    )
    parser.add_argument(
        "--validation-split",
        type=float,
        default=0.1,
        metavar="F",
        help="mwt_reuse: the share of each sub-task's training images held out to select the "
        "task module's fine-tuning epoch; test accuracy is reported at the selected epoch. "
        "The tables choose nothing else after training: thresholds are the papers' fixed ones "
        "(default: %(default)s)",
    )
    parser.add_argument("--distributed", action="store_true", help="jax.distributed.initialize()")
    parser.add_argument(
        "--yes", action="store_true", help="run a config meant for accelerators on a CPU anyway"
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars"
    )
    submit.add_flags(parser)
    return parser, parser.parse_args(argv)


def _check_args(parser, args):
    if args.list:
        for name, title in sorted(TITLES.items()):
            print(f"{name:12s} {title}")
        raise SystemExit(0)
    if args.table not in TITLES:
        parser.error(
            f"table {args.table!r} does not exist; valid tables: {sorted(TITLES)} (see --list)"
        )
    if isinstance(args.seeds, bool) or args.seeds < 1:
        parser.error(f"--seeds {args.seeds} must be >= 1 (3 or more for error bars)")
    if args.finetune_epochs is not None and args.finetune_epochs < 1:
        parser.error(f"--finetune-epochs {args.finetune_epochs} must be >= 1")
    if args.tasks is not None and args.tasks < 1:
        parser.error(f"--tasks {args.tasks} must be >= 1")
    if not 0 < args.validation_split <= 0.5:  # one line, status 2 (experiments.run)
        raise ValueError(f"--validation-split {args.validation_split} must be in (0, 0.5]")
    return submit.check_args(args)  # a ValueError: one line, status 2 (experiments.run)


def load_scale(path: pathlib.Path, table: str) -> dict:
    """A scale config's settings, checked for what `table` needs (naming what is missing)."""
    cfg = config_lib.load_config_file(path)
    unknown = sorted(set(cfg) - KEYS - KEYS_REPLACE)
    need = KEYS_REPLACE if table == "moda_replace" else KEYS
    missing = sorted(need - set(cfg) - {"train_per_model", "for_accelerators"})
    if unknown or missing or table not in cfg["models"]:
        raise SystemExit(
            f"{path}: unknown keys {unknown}, missing keys {missing} for table {table!r}, "
            f"models for it: {cfg.get('models', {}).get(table)!r}"
        )
    return cfg


def row(cfg: dict, model: str, method: str) -> dict:
    """One training run's settings (`TrainConfig` fields, without seed and data_dir)."""
    per_model = cfg.get("train_per_model", {}).get(model, {})
    return {**cfg["train"], **per_model, "model": model, "method": method}


def _run_configs(table, cfg, models, seeds, data_dir):
    """`{(model, method, seed): TrainConfig}` of every training run the table needs."""
    out = {}
    for model in models:
        for method in table.methods:
            for seed in range(seeds):
                values = {**row(cfg, model, method), "seed": seed, "data_dir": data_dir}
                out[(model, method, seed)] = config_lib.from_dict(values, source="reproduce")
    return out


def _check_settings(path: pathlib.Path, settings: dict, defaults: dict | None = None) -> None:
    """Refuses a workdir written with other settings (one table never mixes settings).

    `settings.json` holds the training runs (shared by the tables over one workdir, e.g. `mwt`
    and `mwt_reuse`), `settings_<table>.json` each table's own options. A key an older file
    lacks counts as its value in `defaults` (the behaviour before the option existed).
    """
    workdir = path.parent
    defaults = defaults or {}
    if path.exists():
        old = json.loads(path.read_text())
        diff = sorted(k for k in settings if old.get(k, defaults.get(k)) != settings.get(k))
        if diff:
            raise SystemExit(
                f"{workdir} holds a run of other settings (differing: {diff}); use another "
                "--workdir or remove it to start over"
            )
    else:
        atomic.write_text(path, json.dumps(settings, indent=2, sort_keys=True))


def _warn_accelerator_on_cpu(args, cfg, configs) -> None:
    if args.collect or args.submit == "slurm":  # nothing runs here
        return
    if not cfg.get("for_accelerators") or jax.default_backend() != "cpu":
        return
    hours = sum(measure.estimate_cpu_hours(c) for c in configs.values())
    message = (
        f"--scale {args.scale} on a CPU: {len(configs)} runs, estimated {hours:,.0f} h of CPU "
        "time here (from each model's MACs); it is meant for accelerators"
    )
    if not args.yes:
        raise SystemExit(message + ". Pass --yes to run it anyway.")
    print("WARNING: " + message, file=sys.stderr)


def main(argv=None) -> int:
    parser, args = _parse(argv)
    resources = _check_args(parser, args)
    if args.distributed and not (args.submit or args.collect):  # jobs initialize their own
        jax.distributed.initialize()
    cfg = load_scale(pathlib.Path(args.scale_config or CONFIGS / f"{args.scale}.py"), args.table)
    models = args.models or list(cfg["models"][args.table])
    if args.table == "moda_replace":
        return _main_replace(args, argv, cfg, models, resources)
    table = tables.TABLES[args.table]
    tasks = args.tasks or cfg["tasks"][args.table]
    finetune_epochs = args.finetune_epochs or cfg["finetune_epochs"]
    configs = _run_configs(table, cfg, models, args.seeds, args.data_dir)
    _warn_accelerator_on_cpu(args, cfg, configs)

    runs_of = table.runs_of or args.table
    workdir = pathlib.Path(args.workdir or f"runs/reproduce_{runs_of}_{args.scale}")
    seeds = [
        submit.Seed(
            model,
            seed,
            functools.partial(
                measure.measure_seed,
                table,
                model,
                seed,
                {meth: configs[(model, meth, seed)] for meth in table.methods},
                workdir / f"{model}_s{seed}",
                tasks=tasks,
                progress=args.progress,
                finetune_epochs=finetune_epochs,
                validation_split=args.validation_split,
            ),
            functools.partial(measure.cached, table, workdir / f"{model}_s{seed}"),
            workdir / f"{model}_s{seed}",
        )
        for model in models
        for seed in range(args.seeds)
    ]
    if args.collect:
        submit.check_finished(seeds)  # before anything is written
    settings = {
        "scale": args.scale,
        "runs": {
            f"{m}/{meth}": {
                k: v
                for k, v in vars(c).items()
                if k not in ("seed", "data_dir") and not (k in NEWER_FIELDS and v == 0.0)
            }
            for (m, meth, _), c in configs.items()
        },
    }
    _check_settings(workdir / "settings.json", jsonrules.jsonable(settings))
    own = {"tasks": tasks, "finetune_epochs": finetune_epochs}
    if args.table == "mwt_reuse":  # files written before the flag selected on 10%
        own["validation_split"] = args.validation_split
    _check_settings(workdir / f"settings_{args.table}.json", own, {"validation_split": 0.1})
    out = pathlib.Path(args.out or f"benchmarks/results/reproduce_{args.table}_{args.scale}")
    context = _context(args, argv, row(cfg, models[0], table.methods[-1]))
    start = time.perf_counter()

    def write(measured, devices=None):
        context["wall_time_s"] = time.perf_counter() - start
        if devices:
            context["device"] = devices
        tables.write_results(table, measured, out, context, seeds_wanted=args.seeds)

    if args.submit or args.collect:
        return submit.run(args, resources, seeds, write)
    measured = {}
    by_key = {(s.model, s.seed): s for s in seeds}
    for seed in range(args.seeds):
        for model in models:
            measured.setdefault(model, []).append(by_key[(model, seed)].fn())
        if jax.process_index() == 0:
            write(measured)
            print(f"seed {seed} done: {out}.md")
    return 0


def _context(args, argv, config) -> dict:
    """What a results file records besides the numbers: command, device, versions, recipe."""
    return {
        "command": shlex.join(["python", "-m", "experiments.reproduce", *(argv or sys.argv[1:])]),
        "device": f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind}) x "
        f"{jax.device_count()}",
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{_cpu_count()} cores, Python {platform.python_version()}",
        "versions": measure.versions(),
        "scale": args.scale,
        "config": config,
    }


def _main_replace(args, argv, cfg, models, resources) -> int:
    """`moda_replace`: `replace.run_seed` per (strong model, seed), then the table."""
    from modjax import data

    configs = {m: replace.settings_for(cfg["replace"], m) for m in models}
    on_cpu = jax.default_backend() == "cpu" and not (args.collect or args.submit == "slurm")
    if cfg.get("for_accelerators") and on_cpu and not args.yes:
        raise SystemExit(
            f"--scale {args.scale} on a CPU: {len(models)} strong models of "
            f"{configs[models[0]]['strong_epochs']} epochs and "
            f"{len(models) * len(configs[models[0]]['target_classes'])} weak models per seed; "
            "it is meant for accelerators. Pass --yes to run it anyway."
        )
    workdir = pathlib.Path(args.workdir or f"runs/reproduce_moda_replace_{args.scale}")
    seeds = [
        submit.Seed(
            model,
            seed,
            functools.partial(
                replace.run_seed,
                configs[model],
                seed=seed,
                data_dir=args.data_dir,
                cache=workdir / f"{model}_s{seed}",
                progress=args.progress,
            ),
            functools.partial(
                replace.cached_seed, configs[model], seed=seed, cache=workdir / f"{model}_s{seed}"
            ),
            workdir / f"{model}_s{seed}",
        )
        for model in models
        for seed in range(args.seeds)
    ]
    if args.collect:
        submit.check_finished(seeds)  # before anything is written
    _check_settings(workdir / "settings.json", jsonrules.jsonable({"replace": configs}))
    out = pathlib.Path(args.out or f"benchmarks/results/reproduce_moda_replace_{args.scale}")
    context = _context(args, argv, configs[models[0]])
    names = data.get_info(configs[models[0]]["dataset"]).class_names
    start = time.perf_counter()

    def write(measured, devices=None):
        context["wall_time_s"] = time.perf_counter() - start
        if devices:
            context["device"] = devices
        replace_table.write_results(
            measured, out, context, seeds_wanted=args.seeds, class_names=names
        )

    if args.submit or args.collect:
        return submit.run(args, resources, seeds, write)
    measured = {}
    by_key = {(s.model, s.seed): s for s in seeds}
    for seed in range(args.seeds):
        for model in models:
            measured.setdefault(model, []).append(by_key[(model, seed)].fn())
        if jax.process_index() == 0:
            write(measured)
            print(f"seed {seed} done: {out}.md")
    return 0


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    from experiments import run

    raise SystemExit(run(main, "python -m experiments.reproduce"))
