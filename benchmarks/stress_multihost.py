"""Stress test of multi-process training: 2 processes x 2 CPU devices on localhost, N times.

Each run trains the same configuration with evaluation every epoch (the setting that used to
deadlock) and must finish within `--timeout` seconds; a run that does not gets its thread stacks
dumped (SIGUSR1, which `modjax` registers with `faulthandler`) into its log and is then killed.
At the end the runs' parameters are compared with one 1-process run of 4 devices.

    python benchmarks/stress_multihost.py --runs 20 --data-dir ../shared/datasets

Writes `<out>/run_<i>/` (workdir and both processes' logs) and prints one line per run and a
summary; the exit status is 1 when any run hung, failed or ended with different parameters.
"""

import argparse
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a coordinator address)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_env(devices: int) -> dict[str, str]:
    """This environment without JAX_* variables, on the CPU with `devices` fake devices."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    return env


def _start(workdir: pathlib.Path, train_flags: list[str], extra: list[str], devices: int, log):
    cmd = [sys.executable, "-m", "modjax", "train", "--workdir", str(workdir), *train_flags]
    return subprocess.Popen(
        [*cmd, *extra], env=cpu_env(devices), cwd=REPO, stdout=log, stderr=subprocess.STDOUT
    )


def _wait(procs, timeout: float) -> str:
    """'ok', 'failed' (a non-zero exit) or 'hung' (stacks dumped, then killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        codes = [p.poll() for p in procs]
        if all(c is not None for c in codes):
            return "ok" if all(c == 0 for c in codes) else "failed"
        if any(c not in (None, 0) for c in codes):
            break  # one process died: its partner would wait forever
        time.sleep(0.5)
    hung = any(p.poll() is None for p in procs)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack into the log
    time.sleep(2)
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    return "hung" if hung else "failed"


def _leaves(workdir: pathlib.Path):
    import jax

    from modjax.runs.training import load_run

    return jax.tree.leaves(load_run(workdir).variables)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="2-process runs (default: 20)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run (default: 300)")
    parser.add_argument("--config", default="experiments/configs/mlp_mnist.py")
    parser.add_argument("--method", default="moda", help="training objective (default: moda)")
    parser.add_argument("--data-dir", default="../shared/datasets")
    parser.add_argument("--train-examples", type=int, default=4096)
    parser.add_argument("--num-epochs", type=int, default=3)
    parser.add_argument("--out", default="runs/stress_multihost", help="output directory")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs={args.runs}: expected at least 1")
    out = pathlib.Path(args.out).resolve()
    train_flags = [
        "--config", args.config, "--method", args.method, "--data-dir", args.data_dir,
        "--train-examples", str(args.train_examples), "--num-epochs", str(args.num_epochs),
        "--eval-every", "1", "--log-every", "8", "--checkpoint-every", "16", "--no-progress",
    ]  # fmt: skip
    reference = out / "one_process"
    if not (reference / "summary.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "one_process.log", "w") as log:
            proc = _start(reference, train_flags, [], 4, log)
            if _wait([proc], args.timeout) != "ok":
                print(f"the 1-process reference run failed: see {out / 'one_process.log'}")
                return 1
    expected = _leaves(reference)
    import numpy as np

    counts = {"ok": 0, "hung": 0, "failed": 0, "differs": 0}
    for i in range(args.runs):
        run = out / f"run_{i}"
        subprocess.run(["rm", "-rf", str(run)], check=True)
        run.mkdir(parents=True)
        port = free_port()
        logs = [open(run / f"process_{p}.log", "w") for p in (0, 1)]
        t0 = time.perf_counter()
        procs = [
            _start(
                run / "workdir",
                train_flags,
                [
                    "--distributed",
                    "--coordinator",
                    f"127.0.0.1:{port}",
                    "--num-processes",
                    "2",
                    "--process-id",
                    str(p),
                ],  # fmt: skip
                2,
                logs[p],
            )
            for p in (0, 1)
        ]
        status = _wait(procs, args.timeout)
        for log in logs:
            log.close()
        if status == "ok":
            got = _leaves(run / "workdir")
            same = all(
                np.allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
                for a, b in zip(got, expected, strict=True)
            )
            status = "ok" if same else "differs"
        counts[status] += 1
        print(f"run {i + 1}/{args.runs}: {status} in {time.perf_counter() - t0:.1f} s", flush=True)
    summary = {**counts, "runs": args.runs, "train_flags": train_flags}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(counts))
    return 0 if counts["ok"] == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
