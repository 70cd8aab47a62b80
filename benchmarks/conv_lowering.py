"""XLA:CPU convolution vs modjax's CPU lowerings, forward and gradients, batch 128.

Run: python benchmarks/conv_lowering.py [--few-channels]   (a few minutes on a 2-core CPU)

Default: 3x3 stride-1 convs over map sizes and channel counts, XLA vs im2col (pad + shifted
slices + one matmul); `conv_lowering` uses im2col only where it wins (maps of <= 4 pixels).
`--few-channels`: first convs (1 or 3 input channels, 32x32 maps, 3x3 pad 1 and 5x5 valid) over
output widths, XLA vs the direct shifted-sum lowering, forward and forward + kernel gradient
(the train step's need: the input gradient of a first conv is never computed), both jitted with
the train step's compiler options and timed in alternating rounds.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from modjax.models import conv

PAD = ((1, 1), (1, 1))
SHAPES = [(1, 512), (2, 512), (2, 256), (4, 256), (4, 512), (8, 128), (8, 256), (16, 64)]


def xla_conv(x, w):
    dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
    return jax.lax.conv_general_dilated(x, w, (1, 1), PAD, dimension_numbers=dn)


def im2col_conv(x, w):
    return conv._im2col_conv(x, w, PAD, None)


def median_ms(fn, *args, rounds=5):
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def _first_conv_fns(k, pad, opts):
    """{(lowering, "fwd" | "grad"): jitted fn(x, w)} for a k×k stride-1 conv with `pad`."""
    pads = ((pad, pad), (pad, pad))

    def xla(x, w):
        dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, conv._NHWC)
        return jax.lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=dn)

    def direct(x, w):
        return conv._direct_conv(x, w, pads, None)

    fns = {}
    for name, f in (("xla", xla), ("direct", direct)):
        loss = jax.value_and_grad(lambda w, x, f=f: jnp.sum(jnp.sin(f(x, w))))
        fns[name, "fwd"] = jax.jit(f, compiler_options=opts)
        fns[name, "grad"] = jax.jit(lambda x, w, g=loss: g(w, x), compiler_options=opts)
    return fns


def few_channels(rounds=12):
    from modjax import train

    print("| kernel | C_in → C_out | fwd XLA ms | fwd direct ms | ratio | fwd+kernel grad XLA ms "
          "| fwd+kernel grad direct ms | ratio |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for k, pad in ((3, 1), (5, 0)):
        fns = _first_conv_fns(k, pad, train.compiler_options())
        for cin in (1, 3):
            for cout in (2, 6, 16, 32, 64):
                rs = np.random.RandomState(0)
                x = jax.device_put(rs.randn(128, 32, 32, cin).astype(np.float32))
                w = jax.device_put((0.1 * rs.randn(k, k, cin, cout)).astype(np.float32))
                times = {key: [] for key in fns}
                for fn in fns.values():
                    jax.block_until_ready(fn(x, w))
                for _ in range(rounds):
                    for key, fn in fns.items():
                        t = time.perf_counter()
                        jax.block_until_ready(fn(x, w))
                        times[key].append(1e3 * (time.perf_counter() - t))
                ms = {key: statistics.median(v) for key, v in times.items()}
                cells = []
                for part in ("fwd", "grad"):
                    a, b = ms["xla", part], ms["direct", part]
                    cells += [f"{a:.1f}", f"{b:.1f}", f"{a / b:.1f}×"]
                print(f"| {k}×{k} | {cin} → {cout} | " + " | ".join(cells) + " |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--few-channels", action="store_true", help="first convs: XLA vs direct")
    if parser.parse_args().few_channels:
        few_channels()
        return
    for hw, c in SHAPES:
        x = jax.random.normal(jax.random.PRNGKey(0), (128, hw, hw, c))
        w = 0.01 * jax.random.normal(jax.random.PRNGKey(1), (3, 3, c, c))
        row = [f"{hw}x{hw} C={c}"]
        for conv_fn in (xla_conv, im2col_conv):
            grad = jax.jit(jax.grad(lambda x, w, f=conv_fn: jnp.sum(f(x, w) ** 2), argnums=(0, 1)))
            row += [f"{median_ms(jax.jit(conv_fn), x, w):.1f}", f"{median_ms(grad, x, w):.1f}"]
        print(
            "{}: forward xla {} ms, grad xla {} ms | forward im2col {} ms, grad im2col {} ms".format(
                *row
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
