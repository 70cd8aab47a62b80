"""XLA:CPU convolution vs im2col (pad + shifted slices + one matmul), forward and full grad.

Run: python benchmarks/conv_lowering.py   (a few minutes on a 2-core CPU)
Prints median ms per call for 3x3 stride-1 convs, batch 128, over map sizes and channel counts;
`modjax.models.layers.conv_lowering` uses im2col only where it wins (maps of <= 4 pixels).
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def conv_ref(x, w, pad):
    return lax.conv_general_dilated(x, w, (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv_im2col(x, w, pad):
    kh, kw, ci, co = w.shape
    (pt, pb), (pl, pr) = pad
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    H = xp.shape[1] - kh + 1
    W = xp.shape[2] - kw + 1
    cols = [xp[:, i : i + H, j : j + W, :] for i in range(kh) for j in range(kw)]
    patches = jnp.concatenate(cols, axis=-1)  # [B,H,W,kh*kw*ci]
    return jnp.einsum("bhwk,ko->bhwo", patches, w.reshape(kh * kw * ci, co))


def bench(f, *a, n=5):
    f(*a)
    jax.block_until_ready(f(*a))
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        jax.block_until_ready(f(*a))
        ts.append(time.perf_counter() - t)
    return np.median(ts) * 1e3


for hw, c in [(1, 512), (2, 512), (2, 256), (4, 256), (4, 512), (8, 128), (8, 256), (16, 64)]:
    x = jax.random.normal(jax.random.PRNGKey(0), (128, hw, hw, c))
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, c, c)) * 0.01
    pad = ((1, 1), (1, 1))
    res = {}
    for name, fn in [("ref", conv_ref), ("i2c", conv_im2col)]:
        loss = lambda x, w: jnp.sum(fn(x, w, pad) ** 2)
        g = jax.jit(jax.grad(loss, argnums=(0, 1)))
        fw = jax.jit(lambda x, w: fn(x, w, pad))
        res[name] = (bench(fw, x, w), bench(g, x, w))
    print(
        hw,
        c,
        "fwd ref %.1f i2c %.1f | grad ref %.1f i2c %.1f"
        % (res["ref"][0], res["i2c"][0], res["ref"][1], res["i2c"][1]),
        flush=True,
    )
