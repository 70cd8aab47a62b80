"""`--submit` and `--collect` of `python -m experiments.reproduce`: a table's (row, seed) runs as
submitit jobs, the table assembled from the per-seed result files.

    python -m experiments.reproduce moda --scale paper --seeds 3 --submit slurm \\
        --partition gpu --gpus-per-node 8 --nodes 2 --time 12:00:00
    python -m experiments.reproduce moda --scale paper --seeds 3 --collect   # table only

Each unfinished (row, seed) becomes one `seed_job.SeedJob` (seeds whose result file exists are not
submitted again). Backends: `slurm` (`submitit.SlurmExecutor`), `local` (`LocalExecutor`: one
process per job on this machine, as the tests run it on CPU) and `debug` (`DebugExecutor`: in this
process, one job after the other; a failing job opens pdb). The command waits for the jobs and
rewrites the results file whenever one finishes; `--no-wait` (Slurm) only submits, and
`--collect` later rebuilds the file from whatever has finished, running nothing.

A multi-node Slurm job (`--nodes` > 1, or `--distributed`) runs one process per GPU
(`--ntasks-per-node` = `--gpus-per-node`, JAX's Slurm default of one local device per process)
and calls `jax.distributed.initialize`, which reads the Slurm environment. A one-node job is one
process that sees all of the node's GPUs.

Submitit is the optional extra `modjax[cluster]`; this module imports it only when submitting.
"""

import argparse
import contextlib
import json
import math
import os
import pathlib
import re
import shutil
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

EXTRA = 'pip install "modjax[cluster]"'
BACKENDS = ("slurm", "local", "debug")
SLURM_ONLY = {
    "partition": "--partition",
    "nodes": "--nodes",
    "gpus_per_node": "--gpus-per-node",
    "cpus_per_task": "--cpus-per-task",
    "time": "--time",
    "slurm_arg": "--slurm-arg",
    "no_wait": "--no-wait",
}
DEFAULT_TIME = "24:00:00"
MAX_TIMEOUTS = 20  # requeues after hitting --time before submitit gives a job up
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # LocalExecutor's own default is 2 minutes
POLL_S = {"slurm": 60.0, "local": 0.5, "debug": 0.0}
ROOT = pathlib.Path(__file__).resolve().parents[2]  # jobs import `experiments` from here


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The submission flags (their defaults are None, so that misplaced ones can be named)."""
    group = parser.add_argument_group("cluster jobs (submitit, the extra modjax[cluster])")
    group.add_argument(
        "--submit",
        choices=BACKENDS,
        help="run each (row, seed) as a submitit job: slurm, local (processes on this machine) "
        "or debug (in this process); the table is written as jobs finish",
    )
    group.add_argument(
        "--collect",
        action="store_true",
        help="only rebuild the results file from the seeds that have finished; run nothing",
    )
    group.add_argument("--partition", help="slurm: the partition")
    group.add_argument("--nodes", type=int, help="slurm: nodes per job (default: 1)")
    group.add_argument("--gpus-per-node", type=int, help="slurm: GPUs per node (default: 1)")
    group.add_argument("--cpus-per-task", type=int, help="slurm: CPUs per process")
    group.add_argument(
        "--time",
        help=f"slurm: time limit per job, MINUTES or [D-]HH:MM:SS (default: {DEFAULT_TIME})",
    )
    group.add_argument(
        "--slurm-arg",
        action="append",
        metavar="KEY=VALUE",
        help="slurm: any other sbatch option, e.g. account=abc, qos=high, mem=200G, or requeue= "
        "for a flag without a value (repeatable)",
    )
    group.add_argument(
        "--no-wait", action="store_true", default=None, help="slurm: submit, then exit"
    )


class Resources(NamedTuple):
    """What each job asks for (Slurm), and whether it runs `jax.distributed`."""

    nodes: int = 1
    gpus_per_node: int = 1
    tasks_per_node: int = 1
    cpus_per_task: int | None = None
    time_min: int = 24 * 60
    partition: str | None = None
    extra: dict | None = None  # --slurm-arg
    distributed: bool = False
    wait: bool = True


def parse_time(text: str) -> int:
    """A Slurm time limit in whole minutes: `MINUTES` or `[D-]HH:MM:SS`.

    Raises:
        ValueError: another form, or less than a minute.

    Example:
        >>> parse_time("1-12:00:00"), parse_time("90"), parse_time("00:30:30")
        (2160, 90, 31)
    """
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d+):(\d+)", text.strip())
    if text.strip().isdigit():
        minutes = int(text)
    elif match:
        days, hours, mins, secs = (int(g or 0) for g in match.groups())
        minutes = days * 1440 + hours * 60 + mins + math.ceil(secs / 60)
    else:
        raise ValueError(
            f"--time {text!r}: expected minutes (e.g. 720) or [D-]HH:MM:SS (e.g. 12:00:00)"
        )
    if minutes < 1:
        raise ValueError(f"--time {text!r} must be at least one minute")
    return minutes


def _require_submitit(backend: str) -> None:
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ValueError(
            f"--submit {backend} needs submitit, which is not installed: {EXTRA}"
        ) from None


def check_args(args: argparse.Namespace) -> Resources | None:
    """The submission flags checked together, before any work; None without --submit.

    Raises:
        ValueError: a Slurm flag without `--submit slurm`, `--collect` with `--submit`,
            `--distributed` with a local backend, a count below its minimum, a bad `--time` or
            `--slurm-arg`, or submitit missing (naming the extra to install).
    """
    if args.collect and args.submit:
        raise ValueError(f"--collect runs nothing; drop --submit {args.submit}")
    if args.submit != "slurm":
        given = [flag for key, flag in SLURM_ONLY.items() if getattr(args, key) is not None]
        if given:
            where = f"--submit {args.submit}" if args.submit else "no --submit"
            verb = "applies" if len(given) == 1 else "apply"
            raise ValueError(f"{', '.join(given)} only {verb} to --submit slurm (got {where})")
    if args.submit is None:
        return None
    if args.distributed and args.submit != "slurm":
        raise ValueError(
            f"--distributed with --submit {args.submit}: multi-process jobs need --submit slurm"
        )
    if args.submit != "slurm":
        _require_submitit(args.submit)
        return Resources(gpus_per_node=0)
    for key, least in (("nodes", 1), ("gpus_per_node", 0), ("cpus_per_task", 1)):
        value = getattr(args, key)
        if value is not None and value < least:
            raise ValueError(f"{SLURM_ONLY[key]} {value} must be >= {least}")
    extra = {}
    for item in args.slurm_arg or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or key.startswith("-"):
            raise ValueError(f"--slurm-arg {item!r}: expected KEY=VALUE, e.g. account=abc")
        extra[key.strip()] = value if value else True  # `requeue=`: a flag without a value
    nodes = args.nodes or 1
    gpus = 1 if args.gpus_per_node is None else args.gpus_per_node
    distributed = bool(args.distributed) or nodes > 1
    time_min = parse_time(args.time or DEFAULT_TIME)
    _require_submitit(args.submit)
    if shutil.which("sbatch") is None:
        raise ValueError("--submit slurm: sbatch is not on PATH; run this on a Slurm login node")
    return Resources(
        nodes=nodes,
        gpus_per_node=gpus,
        tasks_per_node=max(gpus, 1) if distributed else 1,
        cpus_per_task=args.cpus_per_task,
        time_min=time_min,
        partition=args.partition,
        extra=extra,
        distributed=distributed,
        wait=not args.no_wait,
    )


def make_executor(backend: str, folder: pathlib.Path, res: Resources):
    """The submitit executor of `backend`, its pickles and logs under `folder`."""
    import submitit

    if backend == "debug":
        return submitit.DebugExecutor(folder)
    if backend == "local":
        # No `setup` lines: they would put a shell between the job id and submitit's controller,
        # and a SIGTERM to the job would end the shell instead of reaching the job.
        executor = submitit.LocalExecutor(folder)
        executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
        return executor
    executor = submitit.SlurmExecutor(folder, max_num_timeout=MAX_TIMEOUTS)
    params = dict(
        nodes=res.nodes,
        ntasks_per_node=res.tasks_per_node,
        time=res.time_min,
        setup=[f"export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}"],
        additional_parameters=res.extra or {},
    )
    if res.gpus_per_node:
        params["gpus_per_node"] = res.gpus_per_node
    if res.cpus_per_task:
        params["cpus_per_task"] = res.cpus_per_task
    if res.partition:
        params["partition"] = res.partition
    executor.update_parameters(**params)
    return executor


def job_env(backend: str) -> dict[str, str | None]:
    """Environment a job sets before JAX starts (`SeedJob.env`; None unsets a variable).

    LocalExecutor starts every job with CUDA_VISIBLE_DEVICES="" (no GPU) unless given GPU
    counts: a local job sees the devices this shell sees. Slurm sets the variable itself.
    """
    if backend != "local":
        return {}
    return {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}


@contextlib.contextmanager
def _importable(backend: str):
    """A local job's process imports `experiments` from this checkout, whatever its cwd."""
    if backend != "local":
        yield
        return
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), before) if p)
    try:
        yield  # LocalExecutor copies os.environ when it starts each job
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def _why(err: Exception) -> str:
    """A failed job's reason in one line: submitit's first line and the exception raised."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    head = lines[:2] if len(lines) > 1 and lines[1].startswith("has not") else lines[:1]
    raised = [x for x in lines if re.match(r"^[\w.]*(Error|Exception|Exit|Interrupt)(:|$)", x)]
    return " ... ".join(dict.fromkeys(head + raised[-1:])) or type(err).__name__


class Seed(NamedTuple):
    """One (row, seed) of a table: the call that makes its result, and where it is found."""

    model: str
    seed: int
    fn: Callable[[], dict]  # picklable: a job runs it
    cached: Callable[[], dict | None]  # the finished result read from disk, or None
    dir: pathlib.Path  # the seed's workdir (its job record goes there)


def _record_path(seed: Seed, name: str) -> pathlib.Path:
    return seed.dir / f"job_{name}.json"


def finished(seeds: list[Seed]) -> dict[str, list[dict]]:
    """`{model: [result of each finished seed]}` in the order of `seeds` (the table's rows)."""
    measured: dict[str, list[dict]] = {}
    for s in seeds:
        value = s.cached()
        if value is not None:
            measured.setdefault(s.model, []).append(value)
    return measured


def devices(seeds: list[Seed], name: str) -> str | None:
    """The devices the finished jobs recorded, or None if no job wrote a record."""
    found = []
    for s in seeds:
        path = _record_path(s, name)
        if path.exists():
            found.append(json.loads(path.read_text())["device"])
    return "; ".join(sorted(set(found))) + " (jobs)" if found else None


Write = Callable[[dict[str, list[dict]], str | None], None]


def check_finished(seeds: list[Seed]) -> None:
    """`--collect`'s check, before anything is written.

    Raises:
        ValueError: no seed has finished.
    """
    if not any(s.cached() is not None for s in seeds):
        raise ValueError(
            f"--collect: none of the {len(seeds)} (row, seed) runs under {seeds[0].dir.parent} "
            "has finished; submit them with --submit (or wait for the jobs)"
        )


def collect(seeds: list[Seed], *, name: str, write: Write) -> int:
    """Writes the results file from the finished seeds; runs nothing (`check_finished` first)."""
    measured = finished(seeds)
    write(measured, devices(seeds, name))
    count = sum(len(v) for v in measured.values())
    missing = [f"{s.model} s{s.seed}" for s in seeds if s.cached() is None]
    print(
        f"collected {count}/{len(seeds)} seeds" + (f"; not finished: {missing}" if missing else "")
    )
    return 0


def sweep(seeds: list[Seed], *, backend: str, res: Resources, name: str, write: Write) -> int:
    """Submits every unfinished seed as a job, waits, rewrites the table as each finishes.

    Returns 0 when every job finished, 1 if some failed (each named with its log), 130 if the
    wait was interrupted (the jobs go on; `--collect` writes the table later).
    """
    from experiments.reproduce.seed_job import SeedJob

    todo = [s for s in seeds if s.cached() is None]
    folder = seeds[0].dir.parent / "submitit"
    executor = make_executor(backend, folder, res)
    jobs = {}
    env = job_env(backend)
    with _importable(backend):
        for s in todo:
            if backend == "slurm":
                executor.update_parameters(job_name=f"{name}_{s.model}_s{s.seed}")
            record = str(_record_path(s, name))
            job = SeedJob(s.fn, record=record, distributed=res.distributed, env=env)
            jobs[s] = executor.submit(job)
            where = jobs[s].paths.stdout
            print(f"{s.model} seed {s.seed}: job {jobs[s].job_id} ({backend}), log {where}")
    print(f"{len(todo)} job(s) submitted, {len(seeds) - len(todo)} seed(s) already finished")
    if todo and not res.wait:
        print(
            "not waiting: rebuild the table with the same command and --collect instead of --submit"
        )
        return 0
    failed = []
    pending = dict(jobs)
    try:
        while pending:
            for s, job in list(pending.items()):
                if not job.done():
                    continue
                del pending[s]
                try:
                    job.result()
                except Exception as err:  # noqa: BLE001 - a failed job is reported, not raised
                    failed.append(f"{s.model} seed {s.seed} (job {job.job_id}): {_why(err)}")
                    print(f"FAILED {failed[-1]}; log {job.paths.stderr}", file=sys.stderr)
                    continue
                print(f"{s.model} seed {s.seed} done (job {job.job_id})")
                write(finished(seeds), devices(seeds, name))
            if pending:
                time.sleep(POLL_S[backend])
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: {len(pending)} job(s) go on; rebuild the table later with --collect",
            file=sys.stderr,
        )
        return 130
    if not jobs:  # everything had finished before: the table from the files
        write(finished(seeds), devices(seeds, name))
    if failed:
        print(f"{len(failed)} job(s) failed: {failed}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace, res: Resources | None, seeds: list[Seed], write: Write) -> int:
    """Dispatches `--collect` or `--submit` (after the caller's settings checks)."""
    name = args.table
    if args.collect:
        return collect(seeds, name=name, write=write)
    return sweep(seeds, backend=args.submit, res=res, name=name, write=write)
