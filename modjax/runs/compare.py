"""The methods side by side on one network: train, cut modules, and measure them all alike.

    rows = compare_seed(base_config, workdir, seed=0, methods=("standard", *registry.methods()),
                        tasks=sample_tasks(10, 20), data_dir=..., cut_args={...})

For one seed, `compare_seed` trains the network with standard cross-entropy, decomposes it with
Pan & Rajan (the dense method for an MLP, the CNN method for a CIFAR ResNet without BatchNorm),
trains it with MwT and with MODA and cuts their modules, and (for a CIFAR ResNet) shrinks the
standard network with DeepArc. Every step goes through the `modjax` commands a user runs, into
module directories; every metric is then computed from those directories by the same code,
whatever family made them (`measure`): the accuracy of all N modules composed, module size in
parameters and MACs relative to the parent (`modules.Scorer.size`), overlap (mean pairwise
Jaccard of the hidden units the modules use, `Family.units`), the accuracy of the same sampled
sub-tasks composed from their modules, and wall times. Each finished stage is cached in the
workdir as JSON, so an interrupted comparison resumes where it stopped.
"""

import itertools
import json
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from modjax import metrics
from modjax.modules import atomic, registry
from modjax.runs import compare_table, training
from modjax.runs import compose as run_compose
from modjax.runs import config as config_lib

STANDARD = "standard"
"""The row of plain cross-entropy training, beside every registered family's methods."""


def comparable() -> tuple[str, ...]:
    """The rows a comparison can have: `standard`, then every registered method."""
    return (STANDARD, *registry.methods())


def sample_tasks(num_classes: int, count: int, *, seed: int = 42) -> list[tuple[int, ...]]:
    """A seeded sample of `count` sub-tasks (class subsets of size ≥ 2, METHODS §5.6), the same
    list for every method and seed.

    Example:
        >>> sample_tasks(4, 3)
        [(0, 1), (0, 1, 3), (0, 1, 2, 3)]
    """
    every = [
        t for k in range(2, num_classes + 1) for t in itertools.combinations(range(num_classes), k)
    ]
    if count >= len(every):
        return every
    picked = np.random.default_rng(seed).choice(len(every), size=count, replace=False)
    return [every[i] for i in sorted(picked)]


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _cli(argv: Sequence[Any]) -> None:
    """Runs `modjax ARGV` in a fresh process, as a user does (each family's cut is timed the
    same way, start-up included)."""
    argv = [str(a) for a in argv]
    done = subprocess.run(
        [sys.executable, "-m", "modjax", *argv], capture_output=True, text=True, check=False
    )
    if done.returncode:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"`modjax {' '.join(argv)}` exited with {done.returncode}: {tail}")


def _train_stage(path: pathlib.Path, config, workdir: pathlib.Path, progress: bool) -> dict:
    """Trains once (cached at `path`): wall time and test accuracy."""
    if path.is_file():
        return json.loads(path.read_text())
    seconds = _timed(lambda: training.train_and_evaluate(config, workdir, progress=progress))
    summary = json.loads((workdir / "summary.json").read_text())
    result = {"train_s": seconds, "model_accuracy": summary["test_accuracy"]}
    atomic.write_json(path, result)
    return result


def _command_stage(path: pathlib.Path, argv: Sequence[Any]) -> dict:
    """Runs a `modjax` command once (cached at `path`): its wall time as `cut_s`."""
    if path.is_file():
        return json.loads(path.read_text())
    result = {"cut_s": _timed(lambda: _cli(argv))}
    atomic.write_json(path, result)
    return result


def class_dirs(out: pathlib.Path, num_classes: int) -> list[pathlib.Path]:
    """The per-class module directories `class_<c>` a command wrote."""
    dirs = [out / f"class_{c}" for c in range(num_classes)]
    missing = [d for d in dirs if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"{missing[0]} not found: the modules of {out} are incomplete")
    return dirs


def measure(
    dirs: Sequence[pathlib.Path | str],
    *,
    tasks: Sequence[Sequence[int]],
    data_dir: str | None,
    batch_size: int = 512,
) -> dict[str, Any]:
    """The metrics of one method's modules, computed alike for every family.

    Args:
        dirs: one module directory per class (`class_<c>`), or one network directory scoring
            every class (DeepArc), given as `[DIR]`.
        tasks: sub-tasks (class tuples) to compose and evaluate.
        data_dir: dataset directory.
        batch_size: evaluation batch size.

    Returns:
        `modules_accuracy` (all classes composed), `module_params`, `module_macs` (mean single-
        module size relative to the parent), `overlap` (NaN for whole networks), `task_accuracy`
        (mean over `tasks`) and `per_task`.
    """
    saved = run_compose.load_dirs(dirs)
    whole = len(saved) == 1 and len(saved[0].classes) > 1
    fam = registry.family_of(saved[0].method)
    everything = run_compose.compose_dirs(dirs, data_dir=data_dir, batch_size=batch_size)
    if whole:  # one network for every class: its size is the module size
        sizes = [everything["size"]]
        overlap = float("nan")
    else:
        sizes = [run_compose.compose_dirs([d], evaluate=False)["size"] for d in dirs]
        units = [fam.units(s) for s in saved] if fam.units is not None else None
        overlap = float("nan")
        if units is not None:
            u = np.stack([np.concatenate([np.ravel(v) for v in m.values()]) for m in units])
            overlap = float(metrics.jaccard_coupling(u.astype(bool)).mean)
    per_task = []
    for task in tasks:
        chosen = (
            [f"{saved[0].path}:{','.join(map(str, task))}"] if whole else [dirs[c] for c in task]
        )
        r = run_compose.compose_dirs(chosen, data_dir=data_dir, batch_size=batch_size)
        per_task.append({"task": list(task), "accuracy": r["accuracy"]})
    return {
        "modules_accuracy": everything["accuracy"],
        "module_params": float(np.mean([s["relative_params"] for s in sizes])),
        "module_macs": float(np.mean([s["relative_macs"] for s in sizes])),
        "overlap": overlap,
        "task_accuracy": float(np.mean([t["accuracy"] for t in per_task])),
        "per_task": per_task,
    }


def compare_seed(
    base: Mapping[str, Any],
    workdir: pathlib.Path,
    *,
    seed: int,
    methods: Sequence[str],
    tasks: Sequence[Sequence[int]],
    data_dir: str | None,
    cut_args: Mapping[str, Sequence[str]] | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One seed of the comparison (see the module docstring); one row per method.

    A method that is a training objective (`Family.objectives`) trains its own network and cuts
    it; any other method cuts the standard network. The cut is the family's command
    (`Family.cut`) with `cut_args[method]` appended.

    Raises:
        ValueError: a method that is neither `standard` nor registered.
    """
    unknown = [m for m in methods if m not in comparable()]
    if unknown:
        raise ValueError(f"methods {unknown} are not comparable; choose from {list(comparable())}")
    workdir = pathlib.Path(workdir)
    values = {**base, "seed": int(seed)}
    if data_dir:
        values["data_dir"] = data_dir

    def config(method):
        return config_lib.from_dict({**values, "method": method}, source="compare")

    rows = []
    standard = workdir / STANDARD
    std = _train_stage(workdir / "standard.json", config(STANDARD), standard, progress)
    num_classes = training.build_run(config(STANDARD)).info.num_classes
    for method in methods:
        if method == STANDARD:
            rows.append({"method": method, **std, "modules_accuracy": std["model_accuracy"]})
            continue
        fam = registry.family_of(method)
        out = workdir / method / "modules"
        if method in fam.objectives:  # its own network, trained with its objective
            run = workdir / method
            trained = _train_stage(workdir / f"{method}_train.json", config(method), run, progress)
        else:
            run, trained = standard, std
        argv = [*fam.cut, "--workdir", run, "--out", out, *(cut_args or {}).get(method, ())]
        row = {**trained, **_command_stage(workdir / f"{method}.json", argv)}
        dirs = [out / "network"] if (out / "network").is_dir() else class_dirs(out, num_classes)
        path = workdir / f"{method}_metrics.json"
        if path.is_file():
            measured = json.loads(path.read_text())
        else:
            measured = measure(dirs, tasks=tasks, data_dir=data_dir)
            atomic.write_json(path, measured)
        rows.append({"method": method, **row, **measured})
    for r in rows:
        r["time_vs_standard"] = r["train_s"] / std["train_s"]
        r["accuracy_loss"] = std["model_accuracy"] - r["modules_accuracy"]
    return rows


CONFIG_KEYS = ("train", "methods", "tasks", "cut_args")
"""What a comparison config's `get_config()` returns: `train` (a `modjax train` config),
`methods` (`standard` and registered methods), `tasks` (how many sub-tasks), `cut_args`
(`{method: extra options of its family's cut command}`)."""


def load_config(path: str | pathlib.Path) -> dict[str, Any]:
    """A comparison config file, validated before any work.

    Raises:
        ValueError: a missing `train`, unknown keys, a bad training config or an unknown method,
            naming the file.
    """
    raw = config_lib.load_config_file(path)
    unknown = sorted(set(raw) - set(CONFIG_KEYS))
    if unknown or "train" not in raw:
        raise ValueError(
            f"{path}: a comparison config needs 'train' and takes {list(CONFIG_KEYS)}; "
            f"unknown keys {unknown}"
        )
    train = dict(raw["train"])
    config_lib.from_dict(train, source=str(path))
    methods = list(raw.get("methods", comparable()))
    bad = [m for m in methods if m not in comparable()]
    if bad:
        raise ValueError(f"{path}: methods {bad} are not comparable; known: {list(comparable())}")
    tasks = raw.get("tasks", 20)
    if isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1:
        raise ValueError(f"{path}: tasks={tasks!r} must be an int >= 1")
    return {**raw, "train": train, "methods": methods, "tasks": tasks}


def run(
    config_path: str | pathlib.Path,
    *,
    seeds: int,
    data_dir: str | None,
    workdir: pathlib.Path,
    results: pathlib.Path,
    command: str,
    progress: bool = False,
) -> pathlib.Path:
    """Seeds 0..seeds-1 of a comparison; each finished seed is written as
    `<results>/seed_<s>.json` and skipped when rerun; returns the rebuilt `<results>.md`.

    Raises:
        ValueError: a bad config or `seeds` < 1, before any work.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--seeds={seeds!r} must be an int >= 1")
    config = load_config(config_path)
    digest = compare_table.config_hash(config)
    log_dir = workdir / digest
    num_classes = None
    for seed in range(seeds):
        out = results / f"seed_{seed}.json"
        if out.is_file() and json.loads(out.read_text())["config_hash"] == digest:
            continue
        t0 = time.perf_counter()
        if num_classes is None:
            train = {**config["train"], **({"data_dir": data_dir} if data_dir else {})}
            num_classes = training.build_run(config_lib.from_dict(train)).info.num_classes
        tasks = sample_tasks(num_classes, config["tasks"])
        rows = compare_seed(
            config["train"],
            log_dir / f"seed_{seed}",
            seed=seed,
            methods=config["methods"],
            tasks=tasks,
            data_dir=data_dir,
            cut_args=config.get("cut_args", {}),
            progress=progress,
        )
        atomic.write_json(
            out,
            {
                "seed": seed,
                "config": config,
                "config_hash": digest,
                "tasks": [list(t) for t in tasks],
                "commit": compare_table.git_commit(),
                "command": command,
                "device": compare_table.device(),
                "versions": compare_table.versions(),
                "wall_s": time.perf_counter() - t0,
                "rows": rows,
            },
        )
    return compare_table.write_table(results, digest)


__all__ = [
    "CONFIG_KEYS",
    "STANDARD",
    "class_dirs",
    "comparable",
    "compare_seed",
    "load_config",
    "measure",
    "run",
    "sample_tasks",
]
