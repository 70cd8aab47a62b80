"""CIFAR ResNet-20 without BatchNorm (Pan & Rajan ICSE'22's parent, METHODS §3.8) on
Fashion-MNIST at 32 px: P&R CNN decomposition vs MwT vs MODA vs DeepArc, on one network.

Run: python -m experiments.compare --config experiments/compare/configs/resnet20_fmnist.py \
         --data-dir ../shared/datasets --seeds 3
     (CPU scale: width 0.5, a seeded 20k-image training subset, 5 epochs; ~20-30 min per seed
     on 2 cores; resumable: rerun the same command)
Recipe: modjax's SGD (Nesterov 0.9, per-epoch cosine, batch 128) at 0.02 for every method, on
the no-BN ResNet's Fixup-style init (zeroed conv2, conv1 scaled by L^(-1/2); without the scale
the network stalled at 10-22% and died). The standard network reaches ~82% here.
Pan & Rajan decompose the standard network with the CNN method (CM-BLN, up to 1,000 positives
per class) at p > 0.5, not the paper's 0.9: at this scale Fashion-MNIST's shirt class has no
training image the network classifies with p > 0.9. DeepArc removes the best 2 of the
non-first blocks (compression search over 3 subsets).
"""


def get_config():
    return dict(
        train=dict(
            model="resnet20_nobn",
            width=0.5,
            dataset="fashion_mnist",
            image_size=32,
            num_epochs=5,
            train_examples=20_000,
            global_batch_size=128,
            learning_rate=0.02,
            log_every=50,
            checkpoint_every=200,
        ),
        methods=("standard", "panrajan", "mwt", "moda", "deeparc"),
        tasks=10,
        cut_args={
            "panrajan": ("--confidence", "0.5", "--allow-fewer"),
            "deeparc": ("--search", "2", "--subsets", "3", "--examples", "2000"),
        },
    )
