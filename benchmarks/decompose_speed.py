"""Speed of the vectorized Pan & Rajan decomposition vs the literal per-sample reference.

Run: nice -n 10 python -m benchmarks.decompose_speed [MODEL.npz]   (~3 min on a shared 2-core CPU)

Decomposes all 10 classes of MNIST-4 (TI-SNE + CM-RIE: 1,000 positives and 990 negatives per
class) with `make_decompose` (one jitted, vmapped call) and with the literal NumPy loop of
`benchmarks/panrajan_ref/dense.py` (the reference code's per-sample, per-edge rules). The literal
loop is timed on one class and multiplied by 10 (it is linear in classes). The model is the one
`python -m experiments.panrajan fse20 --stage train` trains (default path below); without it a
randomly initialized MLP-4×49 is used with confidence 0. Writes `results/decompose_speed_cpu.md`.
"""

import os
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.panrajan_ref import dense as ref
from experiments.panrajan import fse20_train as stage
from modjax import decompose as dc
from modjax import models

ROOT = pathlib.Path(__file__).parents[1]

DEFAULT = pathlib.Path("/work/panrajan_work/models/MNIST-4")


def main(model_path: pathlib.Path) -> None:
    data_dir = os.environ.get("MODJAX_DATA_DIR", str(ROOT.parent / "shared" / "datasets"))
    x, y = stage.load("mnist", "train", data_dir=data_dir)
    if model_path.with_suffix(".npz").exists():
        params, confidence, source = stage.load_params(model_path), 0.9, str(model_path)
    else:
        model = models.get_model("mlp", depth=4)
        params = model.init(jax.random.key(0), jnp.ones((1, 784)))["params"]
        confidence, source = 0.0, "random init (no trained MNIST-4 found)"
    probs = dc.dense.pipeline.parent_probs(params, x)
    s = dc.samples.select_samples(
        x, y, probs, num_positives=1000, negatives_per_class=110, confidence=confidence
    )
    pos, neg = jnp.asarray(s.positives), jnp.asarray(s.negatives)
    fn = dc.dense.decompose.make_decompose(ti="sne", cm="rie")
    t0 = time.perf_counter()
    jax.block_until_ready(fn(params, pos, neg))
    compile_s = time.perf_counter() - t0
    runs = []
    for _ in range(7):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(params, pos, neg))
        runs.append(time.perf_counter() - t0)
    fast = statistics.median(runs)

    layers = dc.dense.parent.to_layers(params)
    ws = [np.asarray(w, np.float64) for w, _ in layers]
    bs = [np.asarray(b, np.float64) for _, b in layers]
    t0 = time.perf_counter()
    D, d = ref.identify(ws, bs, s.positives[0], s.negatives[0], ti_out_threshold=0.5)
    D, d = ref.remove_irrelevant(D, d, 0, parity=False)
    ref.channel(D, d, 0, parity=False)
    one_class = time.perf_counter() - t0
    literal = 10 * one_class
    lines = [
        "# Pan & Rajan decomposition speed (CPU)",
        "",
        "`benchmarks/decompose_speed.py`: all 10 classes of MNIST-4 (MLP-4×49), TI-SNE + CM-RIE,",
        (
            f"1,000 positives and 990 negatives per class. Parent: {source}. Device: "
            f"{jax.devices()[0].device_kind} (shared 2-core machine, load varies)."
        ),
        "",
        "| Implementation | seconds (10 classes) |",
        "|---|---|",
        f"| `make_decompose` (closed form, vmap over classes, one jit), median of 7 | {fast:.4f} |",
        f"| same, first call incl. compilation | {compile_s:.2f} |",
        f"| literal per-sample NumPy reference (1 class × 10) | {literal:.1f} |",
        "",
        f"Speed-up after compilation: {literal / fast:,.0f}×.",
    ]
    out = ROOT / "benchmarks" / "results" / "decompose_speed_cpu.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
