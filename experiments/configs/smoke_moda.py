"""Smoke test of MODA: the smoke config (a 2-hidden-layer MLP on digits, one epoch) with MODA.

Run: modjax train --config experiments/configs/smoke_moda.py --workdir /tmp/smoke_moda   (~10 s)
"""

from smoke import get_config as smoke_config


def get_config():
    return {**smoke_config(), "method": "moda"}
