"""Where a modjax train step spends its time: per-XLA-op times from the JAX profiler.

Runs the jitted train step of one model and method (the same step `compare_torch.py` times:
float32 batch, no augmentation), records `--steps` steps with `jax.profiler.trace`, reads the
trace back with `jax.profiler.ProfileData` and prints the ops (XLA:CPU thunks, or GPU kernels)
that take the most time per step, with the layer each comes from (the HLO's `op_name`).

Run: python -m benchmarks.profile_step --model lenet5 --method standard [--threads 1] [--torch]
     (~20 s for LeNet5 on a 2-core CPU; SimCNN/VGG16 ~1 min)

`--torch` also profiles the PyTorch reference's eager step (`benchmarks/torch_ref`, the same
weights and batch, `torch.profiler`, self CPU time per aten op), so an op's time can be read
on both sides.

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
    parser.add_argument("--torch", action="store_true", help="also profile the torch reference")
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


KINDS = (
    "conv forward",
    "conv backward",
    "layout transposes",
    "batchnorm, bias-grad sums",
    "relu / max-pool",
    "optimizer",
    "other",
)


def kind_of_xla_op(op, layer):
    """A rough kind of one XLA op (for the by-kind table), from its name and layer path.

    XLA:CPU's `reduce-window` ops are its tree rewrite of large reductions; in the zoo's train
    steps those are BatchNorm's statistics and their gradients, and the conv bias gradients.
    """
    if "transpose(jvp" in layer and "/conv/" in layer or layer.endswith(" convolution"):
        return "conv backward"
    if "/conv/" in layer and ("conv_general_dilated" in layer or "/while" in layer):
        return "conv forward"
    if "bhwk,ko" in layer:  # im2col's matmul, forward
        return "conv forward"
    if op.startswith(("transpose", "copy")) and not layer.startswith("jit("):
        return "layout transposes"
    if "/bn/" in layer or "reduce-window" in op:
        return "batchnorm, bias-grad sums"
    if any(k in layer for k in ("relu", "reduce_max", "select_n", "/max")):
        return "relu / max-pool"
    if "sgd" in layer.lower() or "optax" in layer.lower() or "apply_updates" in layer:
        return "optimizer"
    return "other"


def kind_of_aten_op(name):
    """The same kinds for one torch profiler entry (self CPU time)."""
    n = name.lower()
    if "convolution_backward" in n or "convolutionbackward" in n:
        return "conv backward"
    if "convolution" in n or "conv2d" in n:
        return "conv forward"
    if "batch_norm" in n or "batchnorm" in n:
        return "batchnorm, bias-grad sums"  # torch's bias gradients are inside conv backward
    if any(k in n for k in ("relu", "clamp_min", "threshold", "max_pool", "maxpool")):
        return "relu / max-pool"
    if "optimizer" in n or "_foreach" in n or "sgd" in n:
        return "optimizer"
    return "other"


def by_kind(rows):
    """{kind: ms per step} from `(kind, ms)` pairs, in `KINDS` order."""
    out = dict.fromkeys(KINDS, 0.0)
    for kind, ms in rows:
        out[kind] += ms
    return out


def _build(args):
    import jax  # noqa: PLC0415

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
    return step, state, jax.device_put(_host_batch(args.batch_size))


def _host_batch(batch_size):
    """The profiled batch (NHWC float32, balanced labels); both sides get the same one."""
    import numpy as np  # noqa: PLC0415

    rs = np.random.RandomState(0)
    return {
        "image": rs.randn(batch_size, 32, 32, 3).astype(np.float32),
        "label": (np.arange(batch_size) % 10).astype(np.int32),
    }


def profile(args):
    """(median step ms, [(op, layer, ms per step, calls per step)], profiled steps, the
    state's variables)."""
    import jax  # noqa: PLC0415

    from modjax import train  # noqa: PLC0415

    step, state, batch = _build(args)
    step = step.lower(state, batch).compile()  # one compile: its HLO names the ops, it runs
    names = _op_names(step.as_text())
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
    return statistics.median(times), ops, args.steps, jax.device_get(train.variables_of(state))


def profile_torch(args, variables):
    """(median step ms, [(aten op, self ms per step, calls per step)]) of the reference step:
    `compare_torch.py`'s torch side (`_compare_worker.Torch`), same weights and batch."""
    import torch  # noqa: PLC0415

    from benchmarks._compare_worker import Torch  # noqa: PLC0415

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    step = Torch(
        args.model, args.method, args.width, _host_batch(args.batch_size), variables,
        device="cpu", bf16=False,
    )  # fmt: skip
    step(3)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step(1)
        times.append(1e3 * (time.perf_counter() - t0))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step(args.steps)
    ops = [
        (e.key, e.self_cpu_time_total / 1e3 / args.steps, e.count / args.steps)
        for e in prof.key_averages()
        if e.self_cpu_time_total > 0
    ]
    ops.sort(key=lambda op: -op[1])
    return statistics.median(times), ops


def main(argv=None):
    args = parse_args(argv)
    import jax  # noqa: PLC0415

    step_ms, ops, steps, variables = profile(args)
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
    if not args.torch:
        return
    import torch  # noqa: PLC0415

    torch_ms, torch_ops = profile_torch(args, variables)
    total = sum(ms for _, ms, _ in torch_ops)
    print(
        f"\n## torch {torch.__version__} eager reference, {torch.get_num_threads()} thread(s)\n\n"
        f"step {torch_ms:.2f} ms (median of {steps}, without the profiler); aten ops under the "
        f"profiler {total:.2f} ms per step (self CPU time)\n"
    )
    print("| aten op | self ms / step | share | calls / step |")
    print("|---|---:|---:|---:|")
    for op, ms, n in torch_ops[: args.top]:
        print(f"| `{op}` | {ms:.2f} | {ms / total if total else 0.0:.0%} | {n:g} |")
    ours = by_kind((kind_of_xla_op(op, layer), ms) for op, layer, ms, _ in ops)
    theirs = by_kind((kind_of_aten_op(op), ms) for op, ms, _ in torch_ops)
    print(
        "\n## By kind (ms per step under the profiler; kinds from op names, approximate)\n\n"
        "| kind | modjax ms | torch ms | modjax − torch ms |\n|---|---:|---:|---:|"
    )
    for kind in KINDS:
        print(
            f"| {kind} | {ours[kind]:.1f} | {theirs[kind]:.1f} | {ours[kind] - theirs[kind]:+.1f} |"
        )
    print(f"| all | {op_ms:.1f} | {total:.1f} | {op_ms - total:+.1f} |")


if __name__ == "__main__":
    main()
