"""Training-step throughput: the modjax jitted step vs the same step in plain PyTorch eager.

Both sides train the same small-width SimCNN (METHODS §3.2) on the same random CIFAR-shaped
uint8 batch with SGD (Nesterov momentum 0.9) and cross-entropy, float32, on the CPU. modjax's step
includes on-device augmentation and normalization; the PyTorch step gets pre-normalized float
tensors (its cheapest form). Compile time is reported apart; step times are medians.

Run: python benchmarks/step_throughput.py --width 0.25 --batch-size 128 --steps 30
     (~2 min on a 2-core CPU; needs `pip install torch==2.13.0`)
Writes benchmarks/results/step_throughput_<platform>.md.
"""

import argparse
import pathlib
import platform
import statistics
import time

import jax
import numpy as np

from modjax import data, models, objectives, train

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def time_modjax(width, batch_size, steps, warmup):
    info = data.get_info("cifar10")
    model = models.get_model("simcnn", num_classes=10, width=width)
    tx = train.make_optimizer(learning_rate=0.05, steps_per_epoch=10**6, num_epochs=1)
    state = train.create_train_state(model=model, tx=tx, seed=0, image_shape=(32, 32, 3))
    step = train.make_train_step(
        model=model,
        tx=tx,
        objective=objectives.standard,
        preprocess=data.make_preprocess(info, augment=True),
    )
    rs = np.random.RandomState(0)
    batch = jax.device_put(
        {
            "image": rs.randint(0, 256, (batch_size, 32, 32, 3)).astype(np.uint8),
            "label": rs.randint(0, 10, (batch_size,)).astype(np.int32),
        }
    )
    t0 = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    return compile_s, statistics.median(times), models.count_params(state.params)


def torch_simcnn(width, num_classes=10):
    import torch.nn as tnn

    def w(c):
        return max(1, round(c * width))

    convs = [
        (3, 64),
        (64, 64),
        (64, 128),
        (128, 128),
        (128, 256),
        (256, 256),
        (256, 256),
        (256, 512),
    ] + [(512, 512)] * 5
    layers = []
    for i, (cin, cout) in enumerate(convs):
        layers += [tnn.Conv2d(w(cin) if i else 3, w(cout), 3, padding=1), tnn.ReLU()]
        if i in (1, 3, 6, 9, 12):
            layers.append(tnn.MaxPool2d(2))
    layers += [
        tnn.Flatten(),
        tnn.Dropout(0.5),
        tnn.Linear(w(512), w(512)),
        tnn.ReLU(),
        tnn.Dropout(0.5),
        tnn.Linear(w(512), w(512)),
        tnn.ReLU(),
        tnn.Linear(w(512), num_classes),
    ]
    return tnn.Sequential(*layers)


def time_torch(width, batch_size, steps, warmup):
    import torch

    torch.manual_seed(0)
    net = torch_simcnn(width)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (batch_size,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss.item()  # the sync that eager training loops do to log

    for _ in range(warmup + 1):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), sum(p.numel() for p in net.parameters()), torch.__version__


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=float, default=0.25, help="SimCNN width multiplier")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per framework")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)"
    )
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    compile_s, jax_step, jax_params = time_modjax(
        args.width, args.batch_size, args.steps, args.warmup
    )
    torch_step, torch_params, torch_version = time_torch(
        args.width, args.batch_size, args.steps, args.warmup
    )
    if jax_params != torch_params:
        raise SystemExit(f"parameter counts differ: modjax {jax_params}, torch {torch_params}")
    device = jax.devices()[0]
    rows = [
        ("modjax (jax.jit)", jax_step, args.batch_size / jax_step),
        ("PyTorch eager", torch_step, args.batch_size / torch_step),
    ]
    lines = [
        f"# Training-step throughput: SimCNN width {args.width}, batch {args.batch_size}, float32",
        "",
        f"Device: {device.platform} ({device.device_kind}), {platform.processor() or 'cpu'}, "
        f"{jax.device_count()} JAX device(s); JAX {jax.__version__}, PyTorch {torch_version} "
        f"({torch.get_num_threads()} threads). {jax_params:,} parameters on both sides.",
        f"modjax compile time (first step): {compile_s:.2f} s. Medians over {args.steps} steps "
        f"after {args.warmup} warm-up steps.",
        "",
        "| implementation | step time (ms) | images/s |",
        "|---|---|---|",
        *[f"| {name} | {t * 1e3:.1f} | {ips:.0f} |" for name, t, ips in rows],
        "",
        f"**Ratio** (modjax images/s ÷ PyTorch images/s): {torch_step / jax_step:.2f}×",
        "",
        "modjax's step also augments (random crop + flip) and normalizes on device; the PyTorch "
        "step starts from normalized float tensors.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"step_throughput_{device.platform}.md").write_text(text)


if __name__ == "__main__":
    main()
