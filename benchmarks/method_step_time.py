"""Cost of modular training: the jitted train step of standard vs MwT vs MODA, side by side.

The three steps are timed in interleaved rounds in one process (standard, MwT, MODA, standard,
...), so load changes on a shared machine hit all three alike; the table reports median step
times and their ratios to standard training. The papers report MwT at 1.64–2.84× standard
wall-clock and MODA 22–29% faster than MwT (METHODS §13.1–13.2).

Run: python benchmarks/method_step_time.py --model vgg16 --width 0.25 --batch-size 128
     (~3 min on a 2-core CPU). Writes benchmarks/results/method_step_time_<platform>.md.
"""

import argparse
import pathlib
import statistics
import time

import jax
import numpy as np

from modjax import data, models, objectives, train

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
METHODS = ("standard", "mwt", "moda")


def build_step(method, *, model_name, width, num_classes, image_shape, info):
    model = models.get_model(
        model_name, num_classes=num_classes, width=width, mask_generators=method == "mwt"
    )
    objective = {
        "standard": objectives.standard,
        "mwt": objectives.mwt_objective(num_classes=num_classes),
        "moda": objectives.moda_objective(num_classes=num_classes),
    }[method]
    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=10**6, num_epochs=1)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=image_shape)
    step = train.make_train_step(
        model=model, tx=tx, objective=objective, preprocess=data.make_preprocess(info, augment=True)
    )
    return state, step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vgg16", choices=models.MODEL_NAMES)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per method per round")
    args = parser.parse_args()

    info = data.get_info("cifar10")
    rs = np.random.RandomState(0)
    batch = jax.device_put(
        {
            "image": rs.randint(0, 256, (args.batch_size, *info.image_shape)).astype(np.uint8),
            "label": rs.randint(0, 10, (args.batch_size,)).astype(np.int32),
        }
    )
    states, steps, compile_s = {}, {}, {}
    for method in METHODS:
        states[method], steps[method] = build_step(
            method,
            model_name=args.model,
            width=args.width,
            num_classes=10,
            image_shape=info.image_shape,
            info=info,
        )
        t0 = time.perf_counter()
        states[method], metrics = steps[method](states[method], batch)
        jax.block_until_ready(metrics)
        compile_s[method] = time.perf_counter() - t0
    times = {m: [] for m in METHODS}
    for _ in range(args.rounds):
        for method in METHODS:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                states[method], metrics = steps[method](states[method], batch)
            jax.block_until_ready(metrics)
            times[method].append((time.perf_counter() - t0) / args.steps)
    med = {m: statistics.median(v) for m, v in times.items()}
    device = jax.devices()[0]
    saving = 100 * (1 - med["moda"] / med["mwt"])
    lines = [
        f"# Train-step cost of standard, MwT and MODA: {args.model} width {args.width}, "
        f"batch {args.batch_size}, CIFAR-shaped input",
        "",
        f"Device: {device.platform} ({device.device_kind}), JAX {jax.__version__}. Median over "
        f"{args.rounds} interleaved rounds of {args.steps} steps (after a compile step); each "
        "step includes on-device augmentation, forward, loss terms, backward and the SGD update.",
        "",
        "| method | step (ms) | images/s | × standard | compile (s) |",
        "|---|---|---|---|---|",
        *[
            f"| {m} | {med[m] * 1e3:.1f} | {args.batch_size / med[m]:.0f} | "
            f"{med[m] / med['standard']:.2f} | {compile_s[m]:.1f} |"
            for m in METHODS
        ],
        "",
        f"MODA vs MwT: {abs(saving):.1f}% {'less' if saving >= 0 else 'more'} time per step.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    name = f"method_step_time_{args.model}_{device.platform}.md"
    (RESULTS / name).write_text(text)


if __name__ == "__main__":
    main()
