"""MLP-4×49 (Pan & Rajan's network, METHODS §3.1) on MNIST: P&R dense vs MwT vs MODA.

Run: python -m experiments.compare --config experiments/compare/configs/mlp_mnist.py \
         --data-dir ../shared/datasets --seeds 3
     (~10-20 min for 3 seeds on a 2-core CPU; resumable: rerun the same command)
Recipe: modjax's SGD (0.05, Nesterov, per-epoch cosine, batch 128) for 5 epochs on all 60k
images, for every method; Pan & Rajan decompose the standard network (TI-SNE, CM-RIE); MwT and
MODA cut one module per class at τ = 0.9. DeepArc needs a residual network and is not a row here.
"""


def get_config():
    return dict(
        train=dict(
            model="mlp",
            depth=4,
            dataset="mnist",
            num_epochs=5,
            global_batch_size=128,
            learning_rate=0.05,
            log_every=100,
            checkpoint_every=1000,
        ),
        methods=("standard", "panrajan", "mwt", "moda"),
        tasks=20,
        cut_args={},
    )
