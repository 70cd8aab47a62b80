"""modjax vs the PyTorch reference (`benchmarks/torch_ref`): train step, extraction, composition.

    python -m benchmarks.compare_torch [--models lenet5 simcnn vgg16] [--methods standard mwt moda]
        [--scale cpu|gpu] [--rounds 5] [--threads 1 2] [--bf16] [--no-compile]

For every thread count, each model's plain-PyTorch step is first timed in a fresh process
without JAX (`torch_calibration.calibrate`); a cell whose in-harness torch step is more than 10%
slower than that gets no ratio (the harness would be measuring itself, not PyTorch). Then one
worker process is pinned to that many cores (JAX and torch size their pools from the affinity
mask; torch also gets `set_num_threads`). Inside it, per model, method
and batch, modjax's jitted step, the reference eager step and (where it compiles) the
`torch.compile`d reference are timed in alternating rounds on the same float32 batch and the
same initial weights, so machine noise cancels from the per-round ratios. No augmentation on
either side. Extraction of all class modules (modjax's one counting pass vs the reference's
inference pass + per-class loop) and a 5-class composed network's inference are timed at the
largest thread count. Writes benchmarks/results/compare_torch_<scale>.{md,csv,png}.

Scales: `cpu` = width 0.25, batch 128; `gpu` = width 1.0, batches 128 and 512 (`--bf16`: bf16
compute with float32 master weights on both sides). A failed or over-budget run is reported as
"failed: reason", never as a ratio.
"""

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

from benchmarks import torch_calibration

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"
MODELS = ("lenet5", "simcnn", "vgg16", "resnet18")
METHODS = ("standard", "mwt", "moda")
SCALES = {"cpu": {"width": 0.25, "batch_sizes": [128]}, "gpu": {"width": 1.0, "batch_sizes": [128, 512]}}  # fmt: skip
SIDES = ("modjax", "torch", "torch_compile")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["lenet5", "simcnn", "vgg16"])
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--scale", choices=SCALES, default="cpu")
    p.add_argument("--width", type=float, help="width multiplier (default: the scale's)")
    p.add_argument("--batch-sizes", type=int, nargs="+", help="default: the scale's")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (median)")
    p.add_argument("--steps", type=int, default=3, help="steps per side per round")
    p.add_argument("--threads", nargs="+", default=None, help="thread counts (default: 1 and all)")
    p.add_argument("--bf16", action="store_true", help="bf16 compute (GPU scale only)")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    p.add_argument("--compile-budget-s", type=float, default=240, help="per compile + 1st step")
    p.add_argument("--extract-samples", type=int, default=1280, help="'training set' size")
    p.add_argument("--extract-rounds", type=int, default=3)
    p.add_argument("--tag", help="results file suffix: compare_torch_<scale>_<tag>.*")
    p.add_argument(
        "--profile-ops",
        action="store_true",
        help="instead: time every conv layer alone on both sides (fwd + grads) at each --threads",
    )
    p.add_argument("--worker-threads", type=int, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    p.add_argument("--worker-extract", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    scale = SCALES[args.scale]
    args.width = args.width if args.width is not None else scale["width"]
    args.batch_sizes = args.batch_sizes or scale["batch_sizes"]
    return p, args


def cores():
    return sorted(os.sched_getaffinity(0))


def check_settings(parser, args):
    """Refuses what cannot be run honestly, naming the bad value."""
    bad = [m for m in args.models if m not in MODELS]
    if bad:
        parser.error(
            f"--models {bad}: no PyTorch reference with the MwT/MODA layers of this harness; "
            f"choose from {list(MODELS)}"
        )
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        parser.error(f"--methods {bad}: choose from {list(METHODS)}")
    if any(b < 2 for b in args.batch_sizes):
        parser.error(f"--batch-sizes {args.batch_sizes}: MwT/MODA pair losses need batches >= 2")
    if args.rounds < 3 or args.steps < 1:
        parser.error(f"--rounds {args.rounds} / --steps {args.steps}: need >= 3 rounds, >= 1 step")
    if not args.width > 0:
        parser.error(f"--width {args.width} must be positive")
    if args.bf16 and args.scale != "gpu":
        parser.error(
            "--bf16 is a GPU setting (XLA:CPU and torch CPU bf16 are emulated); use --scale gpu"
        )
    n = len(cores())
    if args.threads is None:
        args.threads = sorted({1, n})
    try:
        args.threads = [n if t == "all" else int(t) for t in args.threads]
    except ValueError:
        parser.error(f"--threads {args.threads}: integers or 'all'")
    bad = [t for t in args.threads if not 1 <= t <= n]
    if bad:
        parser.error(f"--threads {bad}: this process may use {n} cores")
    import torch  # noqa: PLC0415 - checked here, imported by the workers after pinning

    if args.scale == "gpu" and not torch.cuda.is_available():
        parser.error("--scale gpu: torch sees no CUDA device on this machine (no GPU run possible)")
    if args.scale == "gpu":
        import jax  # noqa: PLC0415

        if jax.default_backend() != "gpu":
            parser.error(f"--scale gpu: JAX's backend is {jax.default_backend()!r}, not 'gpu'")
    _check_memory(parser, args)


def _check_memory(parser, args):
    """Refuses a batch whose activations (×8: both sides, backward, BN) exceed free memory."""
    import jax  # noqa: PLC0415

    from modjax import models  # noqa: PLC0415

    if args.scale == "gpu":
        import torch  # noqa: PLC0415

        free = torch.cuda.mem_get_info()[0]
    else:
        with open("/proc/meminfo") as f:
            free = next(int(l.split()[1]) * 1024 for l in f if l.startswith("MemAvailable"))
    for name in args.models:
        model = models.get_model(name, width=args.width, mask_generators=True)
        shapes = jax.eval_shape(
            lambda x, model=model: model.init_with_output(jax.random.key(0), x)[0],
            jax.ShapeDtypeStruct((1, 32, 32, 3), "float32"),
        )
        per_sample = sum(4 * int(a.size) for a in jax.tree.leaves(shapes[1]))
        for b in args.batch_sizes:
            need = 8 * per_sample * b
            if need > 0.8 * free:
                parser.error(
                    f"--batch-sizes {b} with {name} at width {args.width} needs ~{need / 2**30:.1f} "
                    f"GiB of activations; only {free / 2**30:.1f} GiB is free on this device"
                )


def worker_main(args):
    os.sched_setaffinity(0, cores()[: args.worker_threads])  # before JAX / torch start
    import torch  # noqa: PLC0415

    torch.set_num_threads(args.worker_threads)
    if args.profile_ops:
        from benchmarks import _compare_ops  # noqa: PLC0415

        rows = _compare_ops.profile(args.models, args.width, args.batch_sizes[0], args.rounds)
        pathlib.Path(args.worker_out).write_text(json.dumps(rows))
        return
    from benchmarks import _compare_worker  # noqa: PLC0415

    for rows in _compare_worker.run(args):
        pathlib.Path(args.worker_out).write_text(json.dumps(rows))


def versions():
    import flax  # noqa: PLC0415
    import jax  # noqa: PLC0415
    import jaxlib  # noqa: PLC0415
    import optax  # noqa: PLC0415
    import torch  # noqa: PLC0415

    return {
        "python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
        "flax": flax.__version__, "optax": optax.__version__, "torch": torch.__version__,
    }  # fmt: skip


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
        with open("/proc/meminfo") as f:
            mem = next(int(l.split()[1]) / 2**20 for l in f if l.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem = float("nan")
    return {"host": platform.node(), "cpu": cpu, "cores": len(cores()), "mem_gib": mem,
            "os": platform.platform()}  # fmt: skip


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser, args = parse_args(argv)
    if args.worker_threads:
        return worker_main(args)
    check_settings(parser, args)
    info = {"argv": argv, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"), "machine": machine(), "versions": versions(), "threads": args.threads,
            "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_before": os.getloadavg()}  # fmt: skip
    rows, failures = [], []
    forward = _strip_option(argv, "--threads")
    for t in args.threads:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            out = f.name
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.compare_torch",
            *forward,
            "--worker-threads",
            str(t),
            "--worker-out",
            out,
        ]
        if t == max(args.threads):
            cmd.append("--worker-extract")
        print("running", " ".join(cmd[1:]), flush=True)
        # OpenMP's wait policy is the user's (default: unset, libgomp's spin-then-sleep): the
        # PASSIVE policy this harness used to force made torch 1.63x slower at 2 threads on a
        # quiet machine (torch_calibration.py). Under load spinning hurts torch instead, which
        # the calibration below catches: run on a quiet machine.
        env = dict(os.environ)
        if args.scale == "cpu":
            cal = info.setdefault("calibration", {})
            for name in args.models:
                try:
                    ms = torch_calibration.calibrate(name, args.width, t)["ms"]
                    cal[f"{name}@{t}"] = {"ms": ms}
                    print(f"calibration {name} at {t} threads: {ms:.2f} ms", flush=True)
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
                    cal[f"{name}@{t}"] = {"failed": str(err)}
                    print(f"calibration {name} at {t} threads FAILED: {err}", flush=True)
        # Compiles are cached per thread count: XLA:CPU splits ops into parallel tasks for the
        # cores it sees at compile time, so a program compiled by the 1-thread worker and loaded
        # by the 2-thread one runs as a 1-thread program (LeNet5 MwT at 2 threads: 12.6 vs
        # 9.5 ms; this made the objective's overhead read +28-34% when only the MwT step came
        # from the 1-thread worker's cache).
        cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or pathlib.Path(  # per user, as
            os.environ.get("MODJAX_CACHE_DIR") or pathlib.Path.home() / ".cache" / "modjax",
            "compare_torch_jax",  # modjax's data cache; not a fixed path in the shared temp dir
        )
        env["JAX_COMPILATION_CACHE_DIR"] = str(pathlib.Path(cache, f"threads-{t}"))
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        rc = subprocess.call(cmd, env=env, cwd=HERE.parent)  # `-m benchmarks...` from the root
        got = json.loads(pathlib.Path(out).read_text()) if os.path.getsize(out) else []
        for r in got:
            r["threads"] = t
        os.unlink(out)
        rows += got
        if rc != 0:
            failures.append(f"worker at {t} threads exited with code {rc} after {len(got)} cases")
    info["load_after"] = os.getloadavg()
    info["failures"] = failures
    if args.profile_ops:
        from benchmarks import _compare_ops  # noqa: PLC0415

        for t in args.threads:
            info.update(
                threads=t, batch=args.batch_sizes[0], width=args.width, load=info["load_after"]
            )
            _compare_ops.write(
                [r for r in rows if r["threads"] == t], info,
                RESULTS / f"compare_torch_{args.scale}_ops_{t}t.md",
            )  # fmt: skip
        return 1 if failures else 0
    from benchmarks import _compare_report  # noqa: PLC0415

    tag = f"_{args.tag}" if args.tag else ""
    _compare_report.write(rows, info, args, RESULTS / f"compare_torch_{args.scale}{tag}")
    return 1 if failures else 0


def _strip_option(argv, option):
    """`argv` without `option` and its values (up to the next `--flag`)."""
    out, skip = [], False
    for a in argv:
        if a == option:
            skip = True
            continue
        if skip and not a.startswith("--"):
            continue
        skip = False
        out.append(a)
    return out


if __name__ == "__main__":
    sys.exit(main())
