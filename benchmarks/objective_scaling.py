"""Scaling of the MwT and MODA objectives with batch size: O(B·D) segment sums vs B×B pairs.

For each batch size B the script times, under `jax.jit`, the loss and its gradient with respect
to every mask (MwT) or activation (MODA) of a VGG16-like layer set:

- MwT: the 12 masked convs of VGG16 (conv 2–13; 64–512 channels), masks `[B, C]` in [0, 1).
- MODA: the 13 conv ReLU outputs of VGG16 as `[B, H, W, C]` maps plus one 512-unit dense layer.
  Spatial size is 2×2 for every conv so that B = 8192 fits in memory; the mean_{h,w}|a| reduction
  is the same O(B·H·W·C) pass in both forms, so it does not favour either.

"fast" is `modjax.objectives.{mwt,moda}_objective` (per-class segment sums, the Q form of METHODS
§11.2); "naive" is the same loss with the `[B, B]` cosine matrix per layer
(`modjax._pairs._naive_pair_statistics`).
Compile time (trace + lower + compile) is reported apart; step times are medians of `--repeats`
calls after one warm-up (3 calls where one takes over a second), each ended with
`block_until_ready`. "torch" is the PyTorch reference's pairwise loss and gradient
(`benchmarks/torch_ref/losses.py`, eager, when torch is installed). The naive form is skipped
where its predicted call time exceeds `--naive-cap-s` or its B×B matrices would exceed
`--naive-cap-gib`; torch where its predicted time exceeds `--torch-cap-s`.

Run: python benchmarks/objective_scaling.py            (~2-3 min on a 2-core CPU)
Writes benchmarks/results/objective_scaling_<platform>.{md,csv}.
"""

import argparse
import csv
import math
import os
import pathlib
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from modjax import objectives
from modjax._pairs import _naive_pair_statistics

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
NUM_CLASSES = 10
MWT_CHANNELS = (64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
MODA_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
MODA_SPATIAL = 2
MODA_DENSE = 512


def make_inputs(kind, batch_size, seed=0):
    """Random logits, acts (masks or activations) and labels for one batch."""
    keys = iter(jax.random.split(jax.random.key(seed), 32))
    logits = jax.random.normal(next(keys), (batch_size, NUM_CLASSES))
    labels = jax.random.randint(next(keys), (batch_size,), 0, NUM_CLASSES)
    if kind == "mwt":
        # Mask-like: ReLU(tanh(.)) values, about a third exactly 0.
        acts = {
            f"conv_{i + 2}/mask": jnp.maximum(
                jnp.tanh(jax.random.normal(next(keys), (batch_size, c)) + 0.5), 0
            )
            for i, c in enumerate(MWT_CHANNELS)
        }
    else:
        shape = (batch_size, MODA_SPATIAL, MODA_SPATIAL)
        acts = {
            f"conv_{i + 1}": jax.nn.relu(jax.random.normal(next(keys), (*shape, c)))
            for i, c in enumerate(MODA_CHANNELS)
        }
        acts["fc_1"] = jax.nn.relu(jax.random.normal(next(keys), (batch_size, MODA_DENSE)))
    return logits, acts, labels


def naive_loss(kind, logits, acts, labels):
    """The default MwT / MODA loss written with the B×B pairwise reference."""
    ce = jnp.mean(objectives.cross_entropy(logits, labels))
    vs = [objectives.reduce_activation(a) for a in acts.values()]
    stats = [_naive_pair_statistics(v, labels, num_classes=NUM_CLASSES) for v in vs]
    same = jnp.mean(jnp.stack([s.same_mean for s in stats]))
    diff = jnp.mean(jnp.stack([s.diff_mean for s in stats]))
    one_minus_same = jnp.where(stats[0].same_count > 0, 1 - same, 0)
    if kind == "mwt":
        return ce + 0.5 * one_minus_same + 1.5 * diff
    return ce + one_minus_same + diff + 0.3 * objectives.compactness(acts)


def make_fn(kind, form):
    """jit(value_and_grad) of the loss w.r.t. acts, for `form` in {"fast", "naive"}."""
    if form == "fast":
        factory = objectives.mwt_objective if kind == "mwt" else objectives.moda_objective
        objective = factory(num_classes=NUM_CLASSES)

        def loss_fn(acts, logits, labels):
            return objective(logits, acts, labels)[0]
    else:

        def loss_fn(acts, logits, labels):
            return naive_loss(kind, logits, acts, labels)

    return jax.jit(jax.value_and_grad(loss_fn))


def make_torch_fn(kind):
    """The PyTorch reference's pairwise loss and its gradient w.r.t. acts (`torch_ref.losses`).

    Returns `(prepare, call)`: `prepare(logits, acts, labels)` converts one batch to torch
    (NCHW activations) outside the timing; `call(batch)` returns the loss after the backward.
    None when torch is not installed.
    """
    try:
        import torch  # noqa: PLC0415
        from torch_ref import losses as ref_losses  # noqa: PLC0415
    except ImportError:
        return None
    loss_fn = ref_losses.mwt_loss if kind == "mwt" else ref_losses.moda_loss

    def prepare(logits, acts, labels):
        def tensor(a):
            a = np.asarray(a)
            a = a.transpose(0, 3, 1, 2) if a.ndim == 4 else a
            return torch.from_numpy(np.ascontiguousarray(a)).requires_grad_(True)

        return (
            torch.from_numpy(np.array(logits)),
            {k: tensor(v) for k, v in acts.items()},
            torch.from_numpy(np.asarray(labels)).long(),
        )

    def call(batch):
        logits, acts, labels = batch
        loss, _ = loss_fn(logits, acts, labels)
        torch.autograd.grad(loss, list(acts.values()))
        return float(loss.detach())

    return prepare, call


def time_torch(call, batch, repeats):
    """(median wall s, median process-CPU s, loss) of `call(batch)`; as `time_fn`, no compile."""
    t0 = time.perf_counter()
    call(batch)  # warm-up
    if time.perf_counter() - t0 > 1.0:
        repeats = min(repeats, 3)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        loss = call(batch)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), loss


def time_fn(fn, args, repeats):
    """(compile s, median wall s, median process-CPU s, loss); 3 calls at most for calls > 1 s.

    Process CPU time (all threads) measures the work done and is less sensitive than wall time to
    other jobs on a shared machine.
    """
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))  # warm-up
    if time.perf_counter() - t0 > 1.0:
        repeats = min(repeats, 3)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(compiled(*args))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return compile_s, statistics.median(wall), statistics.median(cpu), float(out[0])


def growth_exponent(batch_sizes, times):
    """Least-squares slope of log2(time) vs log2(B): 1 = linear, 2 = quadratic."""
    if len(times) < 2:
        return float("nan")
    return float(np.polyfit(np.log2(batch_sizes[: len(times)]), np.log2(times), 1)[0])


def run(args):
    rows = []
    for kind in ("mwt", "moda"):
        num_layers = len(MWT_CHANNELS) if kind == "mwt" else len(MODA_CHANNELS) + 1
        fns = {form: make_fn(kind, form) for form in ("fast", "naive")}
        torch_fn = None if args.no_torch else make_torch_fn(kind)
        naive_last = torch_last = None  # (B, seconds) of the last naive / torch point
        for b in args.batch_sizes:
            inputs = make_inputs(kind, b)
            args_ = (inputs[1], inputs[0], inputs[2])
            row = {"objective": kind, "batch_size": b}
            compile_s, wall, cpu, fast_loss = time_fn(fns["fast"], args_, args.repeats)
            row.update(fast_compile_s=compile_s, fast_ms=wall * 1e3, fast_cpu_ms=cpu * 1e3)
            naive_gib = 3 * num_layers * b * b * 4 / 2**30  # S, its mask and its cotangent
            # Predicted naive time: quadratic in B from the last point.
            predicted = 0.0 if naive_last is None else naive_last[1] * (b / naive_last[0]) ** 2
            if predicted <= args.naive_cap_s and naive_gib <= args.naive_cap_gib:
                compile_s, wall, cpu, naive_loss_value = time_fn(fns["naive"], args_, args.repeats)
                row.update(naive_compile_s=compile_s, naive_ms=wall * 1e3, naive_cpu_ms=cpu * 1e3)
                row["loss_rel_diff"] = abs(fast_loss - naive_loss_value) / abs(naive_loss_value)
                naive_last = (b, row["naive_ms"] / 1e3)
            predicted = 0.0 if torch_last is None else torch_last[1] * (b / torch_last[0]) ** 2
            if torch_fn is not None and predicted <= args.torch_cap_s:
                prepare, call = torch_fn
                wall, cpu, torch_loss = time_torch(call, prepare(*inputs), args.repeats)
                row.update(torch_ms=wall * 1e3, torch_cpu_ms=cpu * 1e3)
                row["torch_loss_rel_diff"] = abs(fast_loss - torch_loss) / abs(torch_loss)
                torch_last = (b, wall)
            rows.append(row)
            print(
                f"{kind:4s} B={b:5d}  fast {row['fast_ms']:9.2f} ms (compile "
                f"{row['fast_compile_s']:.2f} s)  naive "
                + (f"{row['naive_ms']:9.2f} ms" if "naive_ms" in row else "      skipped")
                + "  torch "
                + (f"{row['torch_ms']:9.2f} ms" if "torch_ms" in row else "      skipped"),
                flush=True,
            )
            del inputs, args_
    return rows


def write_results(rows, args):
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"objective_scaling_{jax.default_backend()}"
    fields = ["objective", "batch_size", "fast_compile_s", "fast_ms", "fast_cpu_ms",
              "naive_compile_s", "naive_ms", "naive_cpu_ms", "loss_rel_diff",
              "torch_ms", "torch_cpu_ms", "torch_loss_rel_diff"]  # fmt: skip
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)

    def fmt(x, spec):
        return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)

    device = jax.devices()[0]
    lines = [
        "# Objective scaling: O(B·D) segment sums vs naive B×B pairs vs the PyTorch reference",
        "",
        (
            f"- Device: {device.platform} ({jax.device_count()} JAX device, kind "
            f"`{device.device_kind}`); CPU {_cpu_name()}, {_cpu_count()} cores"
        ),
        (
            f"- Versions: jax {jax.__version__}, jaxlib {jax.lib.__version__}, "
            f"numpy {np.__version__}, Python {platform.python_version()}"
        ),
        (
            f"- Command: `{' '.join(['python benchmarks/objective_scaling.py', *args.argv])}` "
            f"({time.strftime('%Y-%m-%d')})"
        ),
        (
            f"- Timed: `jit(value_and_grad(loss))` w.r.t. all masks / activations, float32, "
            f"{NUM_CLASSES} classes; median of {args.repeats} calls (3 if a call takes > 1 s) "
            "after 1 warm-up; compile = "
            "trace + lower + compile."
        ),
        (
            f"- MwT: 12 mask layers `[B, C]`, C = {', '.join(map(str, MWT_CHANNELS))} "
            f"(ΣC = {sum(MWT_CHANNELS)}); loss CE + 0.5·L_coh + 1.5·L_cou."
        ),
        (
            f"- MODA: 13 conv activations `[B, {MODA_SPATIAL}, {MODA_SPATIAL}, C]`, C = "
            f"{', '.join(map(str, MODA_CHANNELS))}, plus a {MODA_DENSE}-unit dense layer; "
            "loss CE + L_aff + L_dis + 0.3·L_com."
        ),
        (
            f"- Naive skipped where its predicted call time (B² from the last point) > "
            f"{args.naive_cap_s} s or its B×B buffers > "
            f"{args.naive_cap_gib} GiB."
        ),
        (
            "- torch: the PyTorch reference's pairwise loss (`benchmarks/torch_ref/losses.py`: "
            "full B×B cosine matrix per layer, eager) and `autograd.grad` w.r.t. every mask / "
            f"activation, torch {_torch_version()} at {_torch_threads()} threads; skipped where "
            f"its predicted call time (B² from the last point) > {args.torch_cap_s} s."
        ),
        (
            f"- 1-minute load average {args.load_before:.1f} at the start and "
            f"{args.load_after:.1f} at the end on {_cpu_count()} cores: other jobs shared the CPU, "
            "so absolute times are indicative; compare the two forms within a row."
        ),
        "",
        (
            "| objective | B | fast compile (s) | fast wall (ms) | fast CPU (ms) "
            "| fast CPU ×/doubling | naive compile (s) | naive wall (ms) | naive CPU (ms) "
            "| naive CPU ×/doubling | naive / fast (wall) | loss rel. diff "
            "| torch wall (ms) | torch CPU (ms) | torch / fast (wall) | torch loss rel. diff |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def ratio(r, prev, key):
        return r[key] / prev[key] if key in r and key in prev else None

    summary = []
    for kind in ("mwt", "moda"):
        kr = [r for r in rows if r["objective"] == kind]
        for i, r in enumerate(kr):
            prev = kr[i - 1] if i else {}
            speedup = r["naive_ms"] / r["fast_ms"] if "naive_ms" in r else None
            cells = [
                kind, r["batch_size"], fmt(r["fast_compile_s"], ".2f"), fmt(r["fast_ms"], ".2f"),
                fmt(r["fast_cpu_ms"], ".1f"), fmt(ratio(r, prev, "fast_cpu_ms"), ".2f"),
                fmt(r.get("naive_compile_s"), ".2f"), fmt(r.get("naive_ms"), ".1f"),
                fmt(r.get("naive_cpu_ms"), ".1f"), fmt(ratio(r, prev, "naive_cpu_ms"), ".2f"),
                fmt(speedup, ".1f"), fmt(r.get("loss_rel_diff"), ".1e"),
                fmt(r.get("torch_ms"), ".1f"), fmt(r.get("torch_cpu_ms"), ".1f"),
                fmt(r["torch_ms"] / r["fast_ms"] if "torch_ms" in r else None, ".1f"),
                fmt(r.get("torch_loss_rel_diff"), ".1e"),
            ]  # fmt: skip
            lines.append("| " + " | ".join(map(str, cells)) + " |")
        bs = [r["batch_size"] for r in kr]
        nb = [r["batch_size"] for r in kr if "naive_ms" in r]
        big = [r for r in kr if r["batch_size"] >= 1024]
        text = [
            (
                f"fast wall B^{growth_exponent(bs, [r['fast_ms'] for r in kr]):.2f} and CPU "
                f"B^{growth_exponent(bs, [r['fast_cpu_ms'] for r in kr]):.2f} over B = {bs[0]}–{bs[-1]}"
            )
        ]
        if len(big) >= 2:
            big_bs = [r["batch_size"] for r in big]
            text.append(
                f"fast CPU B^{growth_exponent(big_bs, [r['fast_cpu_ms'] for r in big]):.2f} "
                "for B ≥ 1024 (past fixed overheads)"
            )
        if len(nb) >= 2:
            naive = [r for r in kr if "naive_ms" in r]
            text.append(
                f"naive wall B^{growth_exponent(nb, [r['naive_ms'] for r in naive]):.2f} and CPU "
                f"B^{growth_exponent(nb, [r['naive_cpu_ms'] for r in naive]):.2f} over "
                f"B = {nb[0]}–{nb[-1]}"
            )
        tb = [r["batch_size"] for r in kr if "torch_ms" in r]
        if len(tb) >= 2:
            tr = [r for r in kr if "torch_ms" in r]
            text.append(
                f"torch wall B^{growth_exponent(tb, [r['torch_ms'] for r in tr]):.2f} and CPU "
                f"B^{growth_exponent(tb, [r['torch_cpu_ms'] for r in tr]):.2f} over "
                f"B = {tb[0]}–{tb[-1]}"
            )
        summary.append(f"- **{kind}**: " + "; ".join(text) + ".")
    lines += [
        "",
        "Growth (least-squares slope of log time vs log B; 1 = linear, 2 = quadratic):",
        "",
        *summary,
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {stem.with_suffix('.md')} and {stem.with_suffix('.csv')}")


def _torch_version():
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        return "(not installed)"
    return torch.__version__


def _torch_threads():
    try:
        import torch  # noqa: PLC0415
    except ImportError:
        return 0
    return torch.get_num_threads()


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_count():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[128 * 2**k for k in range(7)],
        help="batch sizes to time (default: 128 256 ... 8192)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per point (median)")
    parser.add_argument(
        "--naive-cap-s",
        type=float,
        default=3.0,
        help="skip the naive form where its predicted call time (quadratic from the last point) "
        "exceeds this (seconds)",
    )
    parser.add_argument(
        "--naive-cap-gib",
        type=float,
        default=4.0,
        help="skip the naive form when its B×B buffers would exceed this",
    )
    parser.add_argument(
        "--torch-cap-s",
        type=float,
        default=5.0,
        help="skip the PyTorch reference where its predicted call time exceeds this (seconds)",
    )
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    raw = argv if argv is not None else sys.argv[1:]
    args = parser.parse_args(raw)
    args.argv = raw
    print(f"jax {jax.__version__} on {jax.devices()}", flush=True)
    args.load_before = os.getloadavg()[0]
    rows = run(args)
    args.load_after = os.getloadavg()[0]
    write_results(rows, args)


if __name__ == "__main__":
    main()
