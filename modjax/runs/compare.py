"""The methods side by side on one network: train, cut modules, and measure them all alike.

    rows = compare_seed(base_config, workdir, methods=("standard", "panrajan", "mwt", "moda"),
                        tasks=sample_tasks(10, 20), data_dir=...)

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
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from modjax import metrics
from modjax.modules import atomic, registry
from modjax.runs import compose as run_compose
from modjax.runs import config as config_lib
from modjax.runs import training

METHODS = ("standard", "panrajan", "mwt", "moda", "deeparc")
"""The rows of a comparison: standard training and the four families' methods."""


def sample_tasks(num_classes: int, count: int, *, seed: int = 42) -> list[tuple[int, ...]]:
    """A seeded sample of `count` sub-tasks (class subsets of size ≥ 2, METHODS §5.6), the same
    list for every method and seed.

    Example:
        >>> sample_tasks(4, 3)
        [(0, 2), (0, 1, 3), (1, 2, 3)]
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


def _cli(argv: Sequence[str]) -> None:
    from modjax import cli  # the commands a user runs (cli imports runs, not the reverse)

    status = cli.main([str(a) for a in argv])
    if status:
        raise RuntimeError(f"`modjax {' '.join(map(str, argv))}` exited with {status}")


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
    decompose_args: Sequence[str] = (),
    shrink_args: Sequence[str] = ("--search", "2"),
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One seed of the comparison (see the module docstring); one row per method.

    Raises:
        ValueError: an unknown method, or `deeparc`/`panrajan` on a network they cannot take.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"methods {unknown} are not comparable here; choose from {list(METHODS)}")
    workdir = pathlib.Path(workdir)
    values = {**base, "seed": int(seed)}
    if data_dir:
        values["data_dir"] = data_dir

    def config(method):
        return config_lib.from_dict({**values, "method": method}, source="compare")

    rows = []
    standard = workdir / "standard"
    std = None
    if {"standard", "panrajan", "deeparc"} & set(methods):
        std = _train_stage(workdir / "standard.json", config("standard"), standard, progress)
    num_classes = training.build_run(config("standard")).info.num_classes
    for method in methods:
        out = workdir / method / "modules"
        if method == "standard":
            rows.append({"method": method, **std, "modules_accuracy": std["model_accuracy"]})
            continue
        if method == "panrajan":
            argv = ["decompose", "--workdir", standard, "--out", out, "--method", "panrajan"]
            row = {**std, **_command_stage(workdir / "panrajan.json", [*argv, *decompose_args])}
            dirs = class_dirs(out, num_classes)
        elif method == "deeparc":
            argv = ["shrink", "--workdir", standard, "--out", workdir / "deeparc", *shrink_args]
            row = {**std, **_command_stage(workdir / "deeparc.json", argv)}
            dirs = [workdir / "deeparc" / "network"]
        else:  # mwt, moda: train with the objective, then cut one module per class
            run = workdir / method
            trained = _train_stage(workdir / f"{method}_train.json", config(method), run, progress)
            argv = ["modularize", "--workdir", run, "--out", out]
            row = {**trained, **_command_stage(workdir / f"{method}.json", argv)}
            dirs = class_dirs(out, num_classes)
        path = workdir / f"{method}_metrics.json"
        if path.is_file():
            measured = json.loads(path.read_text())
        else:
            measured = measure(dirs, tasks=tasks, data_dir=data_dir)
            atomic.write_json(path, measured)
        rows.append({"method": method, **row, **measured})
    if std is not None:
        for r in rows:
            r["time_vs_standard"] = r["train_s"] / std["train_s"]
            r["accuracy_loss"] = std["model_accuracy"] - r["modules_accuracy"]
    return rows


__all__ = ["METHODS", "class_dirs", "compare_seed", "measure", "sample_tasks"]
