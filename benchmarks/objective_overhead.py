"""What the modular objective adds to a train step: modjax only, two steps A/B in one process.

Run: python benchmarks/objective_overhead.py [--models ...] [--methods mwt moda] [--rounds 12]

For each (model, method), two jitted train steps of the same model (MwT: with mask generators)
at batch 128, width 0.25, 32×32×3: the method's objective and cross-entropy alone. They run in
alternating rounds (order swapped every round); the overhead is the median over rounds of the
per-round time ratio, minus 1. `compare_torch.py` reports the same figure beside three other
sides per round; this is the two-side check.
"""

import argparse
import statistics
import time

import jax
import numpy as np

from modjax import models, objectives, train

OBJECTIVES = {"mwt": objectives.mwt_objective, "moda": objectives.moda_objective}


def _step(name, method, objective, batch):
    model = models.get_model(name, num_classes=10, width=0.25, mask_generators=method == "mwt")
    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=10**6, num_epochs=1)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=(32, 32, 3))
    step = train.make_train_step(
        model=model, tx=tx, objective=objective, preprocess=lambda x, rng: x
    )
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    return [step, state]


def overhead(name, method, rounds):
    rs = np.random.RandomState(0)
    batch = jax.device_put({
        "image": rs.randn(128, 32, 32, 3).astype(np.float32),
        "label": (np.arange(128) % 10).astype(np.int32),
    })  # fmt: skip
    sides = {
        "modular": _step(name, method, OBJECTIVES[method](num_classes=10), batch),
        "ce": _step(name, method, objectives.standard, batch),
    }
    times = {k: [] for k in sides}
    for r in range(rounds):
        for k in list(sides)[:: 1 if r % 2 == 0 else -1]:
            step, state = sides[k]
            t = time.perf_counter()
            sides[k][1], metrics = step(state, batch)
            jax.block_until_ready(metrics)
            times[k].append(1e3 * (time.perf_counter() - t))
    ratio = statistics.median(a / b for a, b in zip(times["modular"], times["ce"], strict=True))
    return statistics.median(times["modular"]), statistics.median(times["ce"]), ratio - 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["lenet5", "simcnn", "vgg16"])
    parser.add_argument("--methods", nargs="+", default=["mwt", "moda"], choices=OBJECTIVES)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error(f"--rounds={args.rounds}: need at least 3 for a median")
    print("| model | method | modular step ms | CE-only step ms | overhead |")
    print("|---|---|---:|---:|---:|")
    for name in args.models:
        for method in args.methods:
            mod, ce, over = overhead(name, method, args.rounds)
            print(f"| {name} | {method} | {mod:.1f} | {ce:.1f} | {over:+.1%} |", flush=True)


if __name__ == "__main__":
    main()
