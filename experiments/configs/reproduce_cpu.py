"""CPU scale of `experiments/reproduce.py`: a reduced recipe that converges on a 2-core CPU.

CIFAR-10 cannot reach the 80% bar for a standard model within the ~3 h per table on 2 cores
(ResNet-20/VGG16 at width 0.125–0.5 stay at 50–60% after the epochs that fit), so the CPU scale
is the Fashion-MNIST equivalent: the same zoo models and objectives on Fashion-MNIST resized to
32×32 (1 channel), width 0.125, a seeded 20k-image training subset, 4 epochs (8 for VGG16 (a)), batch 128, SGD 0.05
Nesterov with per-epoch cosine (the papers' optimizer, §9). Rows run VGG16 only (the one model in
both papers' tables: variant (a) for MwT, (b) `vgg16_moda` for MODA, as in §3.4); `--models`
adds the others.

`row(model, method)` returns one training run's settings (`modjax.runs.config.TrainConfig`
fields, without seed and data_dir).
"""

MODELS = {"mwt": ("vgg16",), "mwt_reuse": ("vgg16",), "moda": ("vgg16_moda",)}


def row(model: str, method: str) -> dict:
    return dict(
        model=model,
        method=method,
        dataset="fashion_mnist",
        image_size=32,
        width=0.125,
        # VGG16 (a)'s dropout-0.5 classifier at width 0.125 (64 units, N(0, 0.01) init) starts
        # slowly: after 4 epochs one standard seed was at 74.5% and still climbing
        # (benchmarks/results/reproduce_mwt_cpu_4ep.md), so variant (a) gets 8 epochs.
        num_epochs=8 if model == "vgg16" else 4,
        train_examples=20000,
        global_batch_size=128,
        learning_rate=0.05,
        log_every=50,
        checkpoint_every=100,
    )
