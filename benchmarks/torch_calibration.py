"""Calibration of `compare_torch.py`'s PyTorch side against plain PyTorch (issue 23).

    python -m benchmarks.torch_calibration [--models lenet5 ...] [--threads 1 2] [--ablation]

A *calibration* is the reference network's standard train step (CE, SGD-Nesterov 0.9, float32,
batch 128, no augmentation) timed the way a PyTorch user times it: a fresh process that imports
neither JAX nor modjax, `torch.set_num_threads(t)`, OpenMP's default wait policy, no core
pinning, a plain loop of steps after warm-up. `compare_torch.py` refuses to print a ratio whose
in-harness torch step is more than `TOLERANCE` slower than this.

`--ablation` measures what each difference between the harness's worker and that plain process
costs, one factor at a time, each in its own fresh process (`FACTORS`), on the first model and
thread count given. Writes benchmarks/results/torch_calibration_cpu.md.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
RESULTS = HERE / "results"
TOLERANCE = 1.10
"""In-harness torch may be at most this much slower than its calibration before ratios are
refused."""

FACTORS = {
    "plain": {},
    "harness worker (all factors)": {
        "policy": "PASSIVE", "pin": True, "jax": True, "train_call": True, "ref_step": True,
    },
    "OMP_WAIT_POLICY=PASSIVE": {"policy": "PASSIVE"},
    "pinned to t cores": {"pin": True},
    "JAX in the process, its steps alternating": {"jax": True},
    "... with a 20 ms pause after the JAX round": {"jax": True, "pause": 0.02},
    "harness worker, OMP default policy": {
        "pin": True, "jax": True, "train_call": True, "ref_step": True,
    },
    "harness worker, OMP default, 20 ms pause": {
        "pin": True, "jax": True, "train_call": True, "ref_step": True, "pause": 0.02,
    },
    "model.train() every step": {"train_call": True},
    "torch_ref.train_step (loss dict, detach)": {"ref_step": True},
}  # fmt: skip
"""Ablation rows: the worker settings each fresh process runs with."""


def worker(spec: dict) -> dict:
    """Times `spec["steps"]` torch steps in `spec["rounds"]` rounds in this (fresh) process."""
    if spec.get("pin"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: spec["threads"]])
    import torch  # noqa: PLC0415 - after the affinity and OMP settings

    torch.set_num_threads(spec["threads"])
    from benchmarks import torch_ref  # noqa: PLC0415 - plain PyTorch, no JAX
    from benchmarks.torch_ref import train as ref_train  # noqa: PLC0415

    torch.manual_seed(0)
    model = torch_ref.get_model(spec["model"], num_classes=10, width=spec["width"])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    x = torch.randn(spec["batch"], 3, 32, 32)
    y = torch.arange(spec["batch"]) % 10
    model.train()

    def step():
        if spec.get("ref_step"):
            ref_train.train_step(model, opt, x, y, "standard")
            return
        if spec.get("train_call"):
            model.train()
        opt.zero_grad(set_to_none=True)
        logits, _ = model(x)
        torch.nn.functional.cross_entropy(logits, y).backward()
        opt.step()

    other = _jax_side(spec) if spec.get("jax") else None
    for _ in range(spec["warmup"]):
        step()
    times = []
    for _ in range(spec["rounds"]):
        if other is not None:  # the harness alternates sides round by round
            other(spec["steps"])
            time.sleep(spec.get("pause", 0))  # let XLA's pool threads stop spinning
        t0 = time.perf_counter()
        for _ in range(spec["steps"]):
            step()
        times.append((time.perf_counter() - t0) / spec["steps"])
    return {
        "ms": 1e3 * statistics.median(times),
        "rounds_ms": [1e3 * t for t in times],
        "jax_loaded": "jax" in sys.modules,
    }


def _jax_side(spec):
    """modjax's jitted step of the same model, run between torch rounds as in the harness."""
    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from modjax import models, objectives, train  # noqa: PLC0415

    model = models.get_model(spec["model"], num_classes=10, width=spec["width"])
    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=10**6, num_epochs=1)
    state = {"s": train.create_train_state(model=model, tx=tx, seed=0, image_shape=(32, 32, 3))}
    fn = train.make_train_step(
        model=model, tx=tx, objective=objectives.standard, preprocess=lambda x, r: x
    )
    rs = np.random.RandomState(0)
    batch = jax.device_put({
        "image": rs.randn(spec["batch"], 32, 32, 3).astype(np.float32),
        "label": (np.arange(spec["batch"]) % 10).astype(np.int32),
    })  # fmt: skip

    def run(n):
        for _ in range(n):
            state["s"], m = fn(state["s"], batch)
        jax.block_until_ready(m)

    run(2)
    return run


def measure(spec: dict) -> dict:
    """`worker(spec)` in a fresh interpreter (OMP's policy is read when torch loads)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if spec.get("policy"):
        env["OMP_WAIT_POLICY"] = spec["policy"]
    code = (
        "import json, sys; from benchmarks.torch_calibration import worker; "
        "print(json.dumps(worker(json.loads(sys.argv[1]))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(spec)],
        capture_output=True, text=True, env=env, cwd=HERE.parent, timeout=900,
    )  # fmt: skip
    if proc.returncode:
        raise RuntimeError(
            f"calibration of {spec['model']} at {spec['threads']} threads failed: "
            f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def calibrate(model: str, width: float, threads: int, *, batch: int = 128, rounds: int = 7,
              steps: int = 5, warmup: int = 5) -> dict:  # fmt: skip
    """The plain-PyTorch step time of one (model, width, threads): `{"ms", "rounds_ms"}`."""
    spec = dict(model=model, width=width, threads=threads, batch=batch, rounds=rounds,
                steps=steps, warmup=warmup)  # fmt: skip
    return measure(spec)


def check(torch_ms: float, calibration_ms: float) -> str | None:
    """None if the harness's torch time is within `TOLERANCE` of plain PyTorch, else why not.

    Example:
        >>> check(7.5, 7.2) is None, check(24.1, 7.2)[:30]
        (True, 'in-harness torch 24.1 ms is 3.3')
    """
    if torch_ms <= TOLERANCE * calibration_ms:
        return None
    return (
        f"in-harness torch {torch_ms:.1f} ms is {torch_ms / calibration_ms:.2f}x plain PyTorch's "
        f"{calibration_ms:.1f} ms (tolerance {TOLERANCE:.2f}x): no ratio is reported"
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["lenet5"])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per row (median)")
    p.add_argument("--ablation", action="store_true", help="cost of each harness factor")
    p.add_argument("--out", default=str(RESULTS / "torch_calibration_cpu.md"))
    args = p.parse_args(argv)
    n = len(os.sched_getaffinity(0))
    bad = [t for t in args.threads if not 1 <= t <= n]
    if bad:
        p.error(f"--threads {bad}: this machine lets this process use {n} cores")
    lines = [
        "# PyTorch calibration (CPU)",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {n} cores, load before "
        f"{os.getloadavg()[0]:.2f}. Command: `python -m benchmarks.torch_calibration "
        f"{' '.join(argv if argv is not None else sys.argv[1:])}`. Each row: median over "
        f"{args.repeats} fresh processes of the median over {args.rounds} rounds of 5 steps.",
        "",
    ]
    specs = []
    if args.ablation:
        model, t = args.models[0], args.threads[-1]
        lines += [f"## Ablation: {model} width {args.width}, batch 128, {t} threads", "",
                  "| worker settings | ms/step | vs plain |", "|---|---|---|"]  # fmt: skip
        for name, factors in FACTORS.items():
            specs.append((name, dict(model=model, width=args.width, threads=t, batch=128,
                                     rounds=args.rounds, steps=10, warmup=10, **factors)))  # fmt: skip
    else:
        lines += ["| model | threads | plain PyTorch ms/step |", "|---|---|---|"]
        for model in args.models:
            for t in args.threads:
                specs.append((f"{model} | {t}", dict(model=model, width=args.width, threads=t,
                              batch=128, rounds=args.rounds, steps=5, warmup=5)))  # fmt: skip
    results = {}
    for rep in range(args.repeats):  # interleaved: load drifts hit every row alike
        for name, spec in specs:
            results.setdefault(name, []).append(measure(spec)["ms"])
            print(f"[{rep + 1}/{args.repeats}] {name}: {results[name][-1]:.2f} ms", flush=True)
    plain = statistics.median(results[specs[0][0]])
    for name, _ in specs:
        ms = statistics.median(results[name])
        lines.append(f"| {name} | {ms:.2f} | {ms / plain:.2f}x |" if args.ablation
                     else f"| {name} | {ms:.2f} |")  # fmt: skip
    lines += ["", f"Load after: {os.getloadavg()[0]:.2f}.", ""]
    pathlib.Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
