"""Compare the method families on one network: one table, every metric computed by the same code.

Run: python -m experiments.compare --config experiments/compare/configs/mlp_mnist.py \
         --data-dir ../shared/datasets --seeds 3
For each seed, trains the network with standard CE, MwT and MODA, decomposes the standard network
with Pan & Rajan, shrinks it with DeepArc (residual networks), and measures every method's module
directories alike (`modjax.runs.compare`). Each finished seed is written as
`<results>/seed_<s>.json` (config and its hash, git commit, command, device, versions, wall
time); the table `<results>.md` (mean ± std over the seed files with this config hash) is rebuilt
from those files, keeping its hand-written `## Reading` section. Interrupted runs resume from the
stages cached in `--workdir`.
"""

import argparse
import hashlib
import json
import math
import pathlib
import platform
import statistics
import subprocess
import sys
import time

import jax

from modjax.modules import atomic, jsonrules
from modjax.runs import compare
from modjax.runs import config as config_lib

COLUMNS = (
    ("model_accuracy", "trained network acc %", 100),
    ("modules_accuracy", "all modules composed acc %", 100),
    ("accuracy_loss", "loss vs standard, pp", 100),
    ("module_params", "module params / parent", 1),
    ("module_macs", "module MACs / parent", 1),
    ("overlap", "overlap (Jaccard)", 1),
    ("task_accuracy", "sub-tasks composed acc %", 100),
    ("time_vs_standard", "train time / standard", 1),
    ("cut_s", "decompose/extract s", 1),
)


def _config_hash(config: dict) -> str:
    return hashlib.sha256(jsonrules.canonical(config).encode()).hexdigest()[:12]


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "modjax"], capture_output=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def _cell(values: list[float], scale: float) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    mean = scale * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.3f}" if scale == 1 else f"{mean:.2f}"
    std = scale * statistics.stdev(values)
    return f"{mean:.3f} ± {std:.3f}" if scale == 1 else f"{mean:.2f} ± {std:.2f}"


def write_table(results: pathlib.Path, config_hash: str) -> pathlib.Path:
    """Rebuilds `<results>.md` from the seed files of `config_hash` (keeps `## Reading`)."""
    seeds = []
    for path in sorted(results.glob("seed_*.json")):
        record = json.loads(path.read_text())
        if record["config_hash"] == config_hash:
            seeds.append(record)
    if not seeds:
        raise FileNotFoundError(f"no seed file with config hash {config_hash} in {results}")
    first = seeds[0]
    walls = ", ".join(f"{r['wall_s'] / 60:.1f}" for r in seeds)
    methods = [r["method"] for r in first["rows"]]
    header = "| method | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    lines = [
        f"# The methods on one network: {first['config']['train']['model']} on "
        f"{first['config']['train']['dataset']}",
        "",
        f"{len(seeds)} seed(s) ({', '.join(str(r['seed']) for r in seeds)}), mean ± std. "
        f"Config hash {config_hash}; command `{first['command']}`; device {first['device']}; "
        f"{first['versions']}; commits {sorted({r['commit'] for r in seeds})}; wall time per "
        f"seed {walls} min.",
        "",
        "Every column is computed by the same code from module directories "
        "(`modjax.runs.compare.measure`): all modules composed = the N per-class modules (or "
        "the one network) composed and evaluated on the whole test set; module size = a "
        "single module's parameters and MACs over the parent's; overlap = mean pairwise "
        "Jaccard of the hidden units two modules use; sub-tasks = the mean accuracy of "
        f"{len(first['tasks'])} sampled class subsets, the same list for every method, composed "
        "from their modules without retraining; train time / standard = wall time of training "
        "the method's network (Pan & Rajan and DeepArc reuse the standard one: 1.0); "
        "decompose/extract s = wall time of `modjax decompose`, `modularize` or `shrink`.",
        "",
        header,
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for m in methods:
        cells = []
        for key, _, scale in COLUMNS:
            values = [next(r for r in s["rows"] if r["method"] == m).get(key) for s in seeds]
            cells.append(_cell(values, scale))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("")
    md = results.with_suffix(".md")
    reading = ""
    if md.is_file() and "## Reading" in md.read_text():
        reading = md.read_text()[md.read_text().index("## Reading") :]
    atomic.write_text(md, "\n".join(lines) + ("\n" + reading if reading else ""))
    return md


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.compare",
        description=__doc__.split("\n\n")[0],
        epilog="Configs: experiments/compare/configs/*.py (`get_config()` returns `train` (a "
        "`modjax train` config), `methods`, `tasks`, `decompose_args`, `shrink_args`).",
    )
    parser.add_argument("--config", required=True, help="a file of experiments/compare/configs")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default: 3)")
    parser.add_argument("--data-dir", help="dataset directory (default: $MODJAX_DATA_DIR)")
    parser.add_argument("--workdir", help="runs and modules (default: runs/compare/<config name>)")
    parser.add_argument(
        "--results",
        help="folder of per-seed result files; the table is <results>.md (default: "
        "benchmarks/results/compare/<config name>_<platform>)",
    )
    parser.add_argument("--progress", action="store_true", help="show training progress bars")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds={args.seeds} must be >= 1")
    name = pathlib.Path(args.config).stem
    raw = config_lib.load_config_file(args.config)
    unknown = sorted(set(raw) - {"train", "methods", "tasks", "decompose_args", "shrink_args"})
    if unknown or "train" not in raw:
        parser.error(f"--config {args.config}: needs 'train'; unknown keys {unknown}")
    train = dict(raw["train"])
    config_lib.from_dict(train, source=args.config)  # validate before any work
    config = {**raw, "train": train, "methods": list(raw.get("methods", compare.METHODS))}
    config_hash = _config_hash(config)
    workdir = pathlib.Path(args.workdir or f"runs/compare/{name}")
    platform_name = jax.devices()[0].platform
    results = pathlib.Path(args.results or f"benchmarks/results/compare/{name}_{platform_name}")
    num_classes = None
    for seed in range(args.seeds):
        out = results / f"seed_{seed}.json"
        if out.is_file() and json.loads(out.read_text())["config_hash"] == config_hash:
            print(f"seed {seed}: done ({out})")
            continue
        t0 = time.perf_counter()
        if num_classes is None:
            from modjax.runs import training

            num_classes = training.build_run(
                config_lib.from_dict({**train, "data_dir": args.data_dir})
            ).info.num_classes
        tasks = compare.sample_tasks(num_classes, int(raw.get("tasks", 20)))
        rows = compare.compare_seed(
            train,
            workdir / f"{config_hash}" / f"seed_{seed}",
            seed=seed,
            methods=config["methods"],
            tasks=tasks,
            data_dir=args.data_dir,
            decompose_args=raw.get("decompose_args", ()),
            shrink_args=raw.get("shrink_args", ("--search", "2")),
            progress=args.progress,
        )
        device = jax.devices()[0]
        atomic.write_json(
            out,
            {
                "seed": seed,
                "config": config,
                "config_hash": config_hash,
                "tasks": [list(t) for t in tasks],
                "commit": _git_commit(),
                "command": " ".join(["python -m experiments.compare", *sys.argv[1:]]),
                "device": f"{device.platform} ({device.device_kind}, {platform.machine()})",
                "versions": f"JAX {jax.__version__}, Python {platform.python_version()}",
                "wall_s": time.perf_counter() - t0,
                "rows": rows,
            },
        )
        print(f"seed {seed}: wrote {out}")
    md = write_table(results, config_hash)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
