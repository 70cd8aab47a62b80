"""XLA:CPU convolution vs im2col (pad + shifted slices + one matmul), forward and full grad.

Run: python benchmarks/conv_lowering.py   (a few minutes on a 2-core CPU)
Prints median ms per call for 3x3 stride-1 convs, batch 128, over map sizes and channel counts;
`modjax.models.conv.conv_lowering` uses im2col only where it wins (maps of <= 4 pixels).
"""

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


def main():
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
