"""Seconds: the comparison on the embedded digits with a 2-layer MLP, one epoch (tests, demos).

Run: python -m experiments.compare --config experiments/compare/configs/smoke.py --seeds 1 \
         --workdir /tmp/compare_smoke --results /tmp/compare_smoke/results
"""


def get_config():
    return dict(
        train=dict(
            model="mlp",
            depth=2,
            dataset="digits",
            num_epochs=1,
            global_batch_size=64,
            learning_rate=0.05,
            log_every=10,
            checkpoint_every=1000,
        ),
        methods=("standard", "panrajan", "moda"),
        tasks=3,
        cut_args={"panrajan": ("--allow-fewer",)},
    )
