"""Block-level CKA speed: one compiled accumulation per minibatch vs a literal NumPy pair loop.

Run: nice -n 10 python benchmarks/cka_speed.py [--width 0.25] [--minibatches 6]
         [--data-dir ../shared/datasets]   (a few minutes on a shared 2-core CPU)

DeepArc's protocol (METHODS §8.2) on a ResNet-56 (54 block outputs): 10 passes of 256-image
minibatches over the 10k CIFAR-10 test images = 390 minibatches. Both implementations see the
same minibatches of the same (randomly initialized) model:
- **modjax**: `similarity.make_hsic_step`, the forward pass, U-centring, stacking and
  `H += G Gᵀ` as one jitted function (compiled once, reused for every minibatch);
- **literal**: the jitted forward, then NumPy per layer (Gram, U-centring) and a Python loop
  over all 54 × 55 / 2 layer pairs (⟨K̃_a, K̃_b⟩), as the reference notebooks do.
Both are timed on `--minibatches` minibatches (medians) and extrapolated to 390; the two H
matrices are compared. With `--full`, modjax's whole protocol also runs end to end through
`similarity.layer_cka` (all 390 minibatches), timed, with the number of XLA compilations it
triggered (one: no recompilation per minibatch). Writes `results/cka_speed_cpu.md`.
"""

import argparse
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from modjax import data, models
from modjax.deeparc import block_names, cka_from_hsic, similarity

ROOT = pathlib.Path(__file__).parents[1]
FULL_MINIBATCHES = 390  # 10 passes × ⌊10000 / 256⌋


def literal_update(h: np.ndarray, acts: list[np.ndarray]) -> np.ndarray:
    """The NumPy reference: per-layer Gram and U-centring, then a loop over layer pairs."""
    grams = []
    for x in acts:
        x = x.reshape(len(x), -1)
        k = x @ x.T
        n = len(k)
        np.fill_diagonal(k, 0.0)
        mu = k.sum(0) / (n - 2)
        mu = mu - mu.sum() / (2 * (n - 1))
        k = k - mu[:, None] - mu[None, :]
        np.fill_diagonal(k, 0.0)
        grams.append(k)
    h = h.copy()
    for a in range(len(grams)):
        for b in range(a, len(grams)):
            h[a, b] += np.sum(grams[a] * grams[b])
            h[b, a] = h[a, b]
    return h


def _full_protocol(model, variables, images, layers, preprocess, args) -> dict:
    """Times `similarity.layer_cka` end to end and counts the XLA compilations it triggers."""
    compiles = []

    def listener(event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    t0 = time.perf_counter()
    matrix = similarity.layer_cka(
        model=model,
        variables=variables,
        images=images,
        layers=layers,
        preprocess=preprocess,
        batch_size=args.batch_size,
        passes=10,
    )
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "compiles": len(compiles),
        "compile_s": float(sum(compiles)),
        "diag": float(np.mean(np.diag(matrix))),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--minibatches", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/cka_speed_cpu.md"))
    parser.add_argument(
        "--full", action="store_true", help="also run modjax's whole protocol (390 minibatches)"
    )
    parser.add_argument("--note", default="", help="a sentence on the machine's load")
    args = parser.parse_args()

    model = models.get_model("resnet56", width=args.width)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    layers = block_names(model)
    try:
        images, _ = data.load("cifar10", "test", data_dir=args.data_dir)
        source = "CIFAR-10 test (JPEG copy)"
    except Exception:  # noqa: BLE001 (no data on disk: synthetic images of the same shape)
        images = np.random.default_rng(0).integers(0, 256, (10_000, 32, 32, 3), np.uint8)
        source = "synthetic uint8 images"
    preprocess = data.make_preprocess(data.get_info("cifar10"), augment=False)
    batches = list(
        similarity.minibatches(len(images), batch_size=args.batch_size, passes=10, seed=0)
    )[: args.minibatches]

    step = similarity.make_hsic_step(model=model, layers=layers, preprocess=preprocess)
    forward = jax.jit(lambda v, x: model.apply(v, preprocess(x, jax.random.key(0)))[1])
    h = jnp.zeros((len(layers), len(layers)), jnp.float32)
    t0 = time.perf_counter()
    h = jax.block_until_ready(step(h, variables, images[batches[0]]))
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(forward(variables, images[batches[0]]))
    h = jnp.zeros_like(h)
    fast, slow, fwd = [], [], []
    h_ref = np.zeros((len(layers), len(layers)), np.float64)
    for idx in batches:
        batch = images[np.sort(idx)]
        t0 = time.perf_counter()
        h = jax.block_until_ready(step(h, variables, batch))
        fast.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        acts = jax.device_get(forward(variables, batch))
        t1 = time.perf_counter()
        h_ref = literal_update(h_ref, [np.asarray(acts[n], np.float32) for n in layers])
        fwd.append(t1 - t0)
        slow.append(time.perf_counter() - t0)
    diff = np.abs(cka_from_hsic(h) - cka_from_hsic(h_ref)).max()
    full = _full_protocol(model, variables, images, layers, preprocess, args) if args.full else None
    f, s, fw = (statistics.median(v) for v in (fast, slow, fwd))
    lines = [
        "# Block-level CKA speed (DeepArc protocol, CPU)",
        "",
        (
            f"ResNet-56 at width {args.width} (54 block outputs), {args.batch_size}-image minibatches "
            f"of {source}; {len(batches)} minibatches timed (medians), extrapolated to the "
            f"protocol's {FULL_MINIBATCHES} (10 passes over 10k images). "
            f"{platform.processor() or platform.machine()}, {jax.device_count()} CPU device, JAX "
            f"{jax.__version__}, 2-core machine. {args.note}"
        ),
        "",
        "| implementation | s / minibatch | protocol (390 minibatches), s |",
        "|---|---|---|",
        f"| modjax: one jitted forward + accumulation | {f:.3f} | {f * FULL_MINIBATCHES:.0f} |",
        f"| literal: jitted forward + NumPy pair loop | {s:.3f} | {s * FULL_MINIBATCHES:.0f} |",
        f"| (forward alone, inside the literal row) | {fw:.3f} | {fw * FULL_MINIBATCHES:.0f} |",
        "",
        (
            f"Speed-up {s / f:.1f}× per minibatch (CKA part alone: literal {s - fw:.3f} s vs "
            f"modjax {max(f - fw, 0.0):.3f} s beyond the forward). Compile once: {compile_s:.1f} s. "
            f"Max |CKA difference| between the two: {diff:.2e}."
        ),
        "",
    ]
    if full is not None:
        lines += [
            "## The whole protocol, measured",
            "",
            (
                f"`similarity.layer_cka` over all {FULL_MINIBATCHES} minibatches (10 passes over "
                f"the {len(images)} images): **{full['seconds']:.0f} s** wall, "
                f"{full['seconds'] / FULL_MINIBATCHES:.3f} s per minibatch, including "
                f"{full['compiles']} XLA compilation(s) ({full['compile_s']:.1f} s) in all, the same for any number of minibatches: one "
                "compiled step serves every minibatch. Mean diagonal CKA "
                f"{full['diag']:.3f} (1 by definition)."
            ),
            "",
        ]
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
