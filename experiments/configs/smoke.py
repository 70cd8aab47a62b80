"""Smoke test: a 2-hidden-layer MLP on the embedded digits, one epoch. Used by the tests.

Run: modjax train --config experiments/configs/smoke.py --workdir /tmp/smoke   (~10 s on a CPU)
"""


def get_config():
    return dict(
        model="mlp",
        depth=2,
        dataset="digits",
        num_epochs=1,
        global_batch_size=64,
        log_every=5,
        checkpoint_every=10,
        train_examples=512,
    )
