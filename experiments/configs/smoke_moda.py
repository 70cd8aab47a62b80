"""Smoke test of MODA: a 2-hidden-layer MLP on digits, one epoch.

Run: modjax train --config experiments/configs/smoke_moda.py --workdir /tmp/smoke_moda   (~10 s)
"""


def get_config():
    return dict(
        model="mlp", depth=2, method="moda", dataset="digits", num_epochs=1,
        global_batch_size=64, log_every=5, checkpoint_every=10, train_examples=512,
    )
