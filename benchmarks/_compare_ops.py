"""Per-convolution cost of the train step: modjax's conv vs torch's, forward + both gradients.

Run by `compare_torch.py --profile-ops` in a worker pinned to the requested cores. For every
conv layer of each model (its input shape at the benchmark batch), one forward and the input
and weight gradients are timed on both sides in alternating rounds: modjax's dispatcher
(`modjax.models.conv.conv_general_dilated`, NHWC, jitted with the train step's compiler
options) and `torch.nn.functional.conv2d` (NCHW, autograd). The gap per layer names the ops
that limit modjax where its step is slower.
"""

import statistics
import time

import jax
import numpy as np
import torch

from benchmarks import torch_ref
from modjax import train
from modjax.models.conv import conv_general_dilated


def conv_shapes(name, width, batch):
    """[(layer, input NCHW shape, conv module)] of the reference model's convs, in order."""
    model = torch_ref.get_model(name, width=width)
    found = []
    hooks = [
        m.register_forward_pre_hook(
            lambda mod, inp, n=n: found.append((n, tuple(inp[0].shape), mod))
        )
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    with torch.no_grad():
        model(torch.zeros(batch, 3, 32, 32))
    for h in hooks:
        h.remove()
    return [(n.replace("convs.", "").replace(".conv", ""), s, m) for n, s, m in found]


def _modjax_fn(conv, shape):
    s, p = conv.stride[0], conv.padding[0]

    def f(x, w):
        # The ConvDimensionNumbers that nn.Conv passes: the dispatcher matches on them.
        dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
        return conv_general_dilated(x, w, (s, s), ((p, p), (p, p)), dimension_numbers=dn)

    def fwd_bwd(x, w, g):
        y, vjp = jax.vjp(f, x, w)
        return y, vjp(g)

    b, c, h, w_ = shape
    rs = np.random.RandomState(0)
    x = rs.randn(b, h, w_, c).astype(np.float32)
    k = conv.weight.detach().numpy().transpose(2, 3, 1, 0).copy()
    y = jax.eval_shape(f, x, k)
    g = rs.randn(*y.shape).astype(np.float32)
    fn = jax.jit(fwd_bwd, compiler_options=train.compiler_options())
    args = jax.device_put((x, k, g))
    jax.block_until_ready(fn(*args))

    def run(n):
        for _ in range(n):
            out = fn(*args)
        jax.block_until_ready(out)

    return run


def _torch_fn(conv, shape):
    x = torch.randn(*shape, requires_grad=True)
    w = conv.weight.detach().clone().requires_grad_(True)
    s, p = conv.stride, conv.padding
    g = torch.randn_like(torch.nn.functional.conv2d(x, w, None, s, p))

    def run(n):
        for _ in range(n):
            x.grad = w.grad = None
            torch.nn.functional.conv2d(x, w, None, s, p).backward(g)

    run(1)
    return run


def profile(names, width, batch, rounds=5, reps=3):
    """Rows `{model, layer, input, kernel, modjax_ms, torch_ms}` (medians over rounds)."""
    rows = []
    for name in names:
        for layer, shape, conv in conv_shapes(name, width, batch):
            fns = {"modjax": _modjax_fn(conv, shape), "torch": _torch_fn(conv, shape)}
            times = {k: [] for k in fns}
            for r in range(rounds):
                for k in list(fns)[r % 2 :] + list(fns)[: r % 2]:
                    t0 = time.perf_counter()
                    fns[k](reps)
                    times[k].append((time.perf_counter() - t0) / reps)
            rows.append({
                "model": name, "layer": layer, "input": f"{shape[2]}×{shape[3]}×{shape[1]}",
                "kernel": f"{conv.kernel_size[0]}×{conv.kernel_size[1]} {conv.in_channels}→"
                          f"{conv.out_channels} s{conv.stride[0]} p{conv.padding[0]}",
                "modjax_ms": 1e3 * statistics.median(times["modjax"]),
                "torch_ms": 1e3 * statistics.median(times["torch"]),
                "ratio": statistics.median(a / b for a, b in zip(times["torch"], times["modjax"])),
            })  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def write(rows, info, path):
    lines = [
        "# Per-convolution cost: modjax vs torch (forward + input and weight gradients)",
        "",
        f"- Machine: {info['machine']['cpu']}, {info['machine']['cores']} cores; "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
        + f"; {info['threads']} thread(s); batch {info['batch']}, width {info['width']}.",
        "- Each conv alone (bias-free), its input shape as in the model's train step; modjax "
        "through the zoo's dispatcher (im2col on ≤ 2×2 maps) with the train step's compiler "
        "options, torch "
        "`F.conv2d` + autograd. Medians of alternating rounds; torch/modjax > 1: modjax faster.",
        f"- 1-min load average {info['load'][0]:.1f} on {info['machine']['cores']} cores "
        "(other jobs): absolute times pessimistic, ratios from alternating rounds.",
        "",
        "| model | layer | input H×W×C | kernel | modjax ms | torch ms | torch/modjax "
        "| gap ms (modjax − torch) |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['layer']} | {r['input']} | {r['kernel']} | "
            f"{r['modjax_ms']:.2f} | {r['torch_ms']:.2f} | {r['ratio']:.2f} | "
            f"{r['modjax_ms'] - r['torch_ms']:+.2f} |"
        )
    lines += ["", "Per model (sum over convs; the largest gaps name the limiting ops):", ""]
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == name]
        top = sorted(rs, key=lambda r: r["torch_ms"] - r["modjax_ms"])[:3]
        lines.append(
            f"- **{name}**: convs {sum(r['modjax_ms'] for r in rs):.1f} ms modjax vs "
            f"{sum(r['torch_ms'] for r in rs):.1f} ms torch; largest gaps: "
            + ", ".join(
                f"{r['layer']} ({r['input']}, {r['modjax_ms']:.2f} vs {r['torch_ms']:.2f} ms)"
                for r in top
            )
            + "."
        )
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
