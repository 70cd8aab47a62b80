"""Smoke test of MwT: LeNet5 with mask generators on digits resized to 16×16, one epoch.

Run: modjax train --config experiments/configs/smoke_mwt.py --workdir /tmp/smoke_mwt   (~15 s)
"""


def get_config():
    return dict(
        model="lenet5", method="mwt", dataset="digits", image_size=16, num_epochs=1,
        global_batch_size=64, log_every=5, checkpoint_every=10, train_examples=512,
    )
