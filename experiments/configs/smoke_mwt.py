"""Smoke test of MwT: LeNet5 with mask generators on digits resized to 16×16, one epoch.

Run: modjax train --config experiments/configs/smoke_mwt.py --workdir /tmp/smoke_mwt   (~15 s)
Builds on the smoke config (batch, logging, checkpoint cadence, subset size).
"""

from smoke import get_config as smoke_config


def get_config():
    return {**smoke_config(), "model": "lenet5", "depth": None, "method": "mwt", "image_size": 16}
