"""Where a modjax train step spends its time: per-XLA-op times from the JAX profiler.

Runs the jitted train step of one model and method (the same step `compare_torch.py` times:
float32 batch, no augmentation), records `--steps` steps with `jax.profiler.trace`, reads the
trace back with `jax.profiler.ProfileData` and prints the ops (XLA:CPU thunks, or GPU kernels)
that take the most time per step, with the layer each comes from (the HLO's `op_name`).

Run: python benchmarks/profile_step.py --model lenet5 --method standard [--threads 1]
     (~20 s for LeNet5 on a 2-core CPU; SimCNN/VGG16 ~1 min)

This is how the direct conv lowering's input gradient and rolled row loop were found
(`benchmarks/results/conv_lowering_cpu.md`). Times under the profiler run a little slower
than without it; compare ops within one profile, and whole steps with `compare_torch.py`.
"""

import argparse
import collections
import os
import re
import statistics
import sys
import tempfile
import time

METHODS = ("standard", "mwt", "moda")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="lenet5", help="a zoo model name (default: lenet5)")
    parser.add_argument("--method", default="standard", choices=METHODS)
    parser.add_argument("--width", type=float, default=0.25, help="width multiplier")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="profiled steps (after warm-up)")
    parser.add_argument("--top", type=int, default=20, help="ops to list")
    parser.add_argument(
        "--threads", type=int, default=None, help="pin to this many cores (CPU; default: all)"
    )
    args = parser.parse_args(argv)
    for name in ("steps", "top", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.width <= 0:
        parser.error(f"--width must be > 0, got {args.width}")
    if args.threads is not None:
        cores = sorted(os.sched_getaffinity(0))
        if not 1 <= args.threads <= len(cores):
            parser.error(f"--threads must be in 1..{len(cores)} (this machine), got {args.threads}")
        os.sched_setaffinity(0, cores[: args.threads])  # before XLA sizes its thread pool
    return args


def _op_names(compiled_text):
    """{HLO instruction name: where it comes from} for every instruction of an optimized module:
    its `op_name` metadata (the layer path), else its result type and opcode."""
    names = {}
    for m in re.finditer(r"^\s*(?:ROOT )?%([\w.\-]+) = ([^\n]*)$", compiled_text, re.M):
        rest = m.group(2)
        meta = re.search(r'op_name="([^"]+)"', rest)
        what = re.match(r"(\S+) ([\w\-]+)\(", rest)
        names[m.group(1)] = meta.group(1) if meta else (" ".join(what.groups()) if what else "")
    return names


def _self_times(events):
    """[(name, self ns)]: each event's time minus the events nested in it on the same line
    (a `while` loop's thunk contains its body's fusions)."""
    out, stack = [], []  # stack: indices into out of the enclosing events
    for e in sorted(events, key=lambda e: (e.start_ns, -e.duration_ns)):
        while stack and out[stack[-1]][2] <= e.start_ns:
            stack.pop()
        if stack:
            out[stack[-1]][1] -= e.duration_ns
        out.append([e.name, e.duration_ns, e.start_ns + e.duration_ns])
        stack.append(len(out) - 1)
    return [(name, self_ns) for name, self_ns, _ in out]


def _build(args):
    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from modjax import models, objectives, train  # noqa: PLC0415

    if args.model not in models.MODEL_NAMES:
        sys.exit(f"--model {args.model!r} is not a zoo model; expected one of {models.MODEL_NAMES}")
    model = models.get_model(
        args.model, num_classes=10, width=args.width, mask_generators=args.method == "mwt"
    )
    objective = {
        "standard": objectives.standard,
        "mwt": objectives.mwt_objective(num_classes=10),
        "moda": objectives.moda_objective(num_classes=10),
    }[args.method]
    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=10**6, num_epochs=1)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=(32, 32, 3))
    step = train.make_train_step(
        model=model, tx=tx, objective=objective, preprocess=lambda x, rng: x
    )
    rs = np.random.RandomState(0)
    batch = jax.device_put({
        "image": rs.randn(args.batch_size, 32, 32, 3).astype(np.float32),
        "label": (np.arange(args.batch_size) % 10).astype(np.int32),
    })  # fmt: skip
    return step, state, batch


def profile(args):
    """(median step ms, [(op, layer, ms per step, calls per step)], profiled steps)."""
    import jax  # noqa: PLC0415

    step, state, batch = _build(args)
    names = _op_names(step.lower(state, batch).compile().as_text())
    for _ in range(3):
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(1e3 * (time.perf_counter() - t0))
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        for _ in range(args.steps):
            state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        jax.profiler.stop_trace()
        paths = [
            os.path.join(d, f) for d, _, fs in os.walk(trace_dir) for f in fs if f.endswith(".pb")
        ]
        if not paths:
            sys.exit(f"the profiler wrote no trace under {trace_dir}")
        data = jax.profiler.ProfileData.from_file(paths[0])
    total, calls = collections.Counter(), collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            events = [e for e in line.events if e.name in names]  # XLA ops, not host spans
            for name, self_ns in _self_times(events):
                total[name] += self_ns
                calls[name] += 1
    ops = [
        (op, names[op], ns / 1e6 / args.steps, calls[op] / args.steps)
        for op, ns in total.most_common()
    ]
    return statistics.median(times), ops, args.steps


def main(argv=None):
    args = parse_args(argv)
    import jax  # noqa: PLC0415

    step_ms, ops, steps = profile(args)
    op_ms = sum(ms for _, _, ms, _ in ops)
    device = jax.devices()[0]
    print(
        f"# {args.model} / {args.method}, width {args.width}, batch {args.batch_size}, "
        f"{device.platform} ({device.device_kind}), {len(os.sched_getaffinity(0))} core(s), "
        f"jax {jax.__version__}"
    )
    print(
        f"step {step_ms:.2f} ms (median of {steps}, without the profiler); XLA ops under the "
        f"profiler {op_ms:.2f} ms per step (self times: a loop's body ops are listed apart)\n"
    )
    print(
        "| op | self ms / step | share | calls / step | layer (HLO op_name, else type and opcode) |"
    )
    print("|---|---:|---:|---:|---|")
    for op, layer, ms, n in ops[: args.top]:
        share = ms / op_ms if op_ms else 0.0
        print(f"| `{op}` | {ms:.2f} | {share:.0%} | {n:g} | `{layer}` |")


if __name__ == "__main__":
    main()
