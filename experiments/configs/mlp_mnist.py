"""Pan & Rajan MLP (4 hidden layers of 49 ReLU units) on MNIST, standard training.

Run: modjax train --config experiments/configs/mlp_mnist.py --data-dir ../shared/datasets \
         --workdir runs/mlp4_mnist   (~1 min on a 2-core CPU)
Variants: --depth 1, --dataset fashion_mnist. METHODS §7.1 trains with Adam for 50 epochs; this
config uses the modjax SGD recipe for a few epochs.
"""


def get_config():
    return dict(
        model="mlp",
        depth=4,
        dataset="mnist",
        num_epochs=5,
        global_batch_size=128,
        learning_rate=0.05,
        log_every=100,
        checkpoint_every=1000,
    )
