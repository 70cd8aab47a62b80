"""Shared cases for the metrics tests."""

import numpy as np

# 3 classes × 6 kernels, used throughout.
U3 = np.array(
    [
        [1, 1, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [1, 0, 0, 0, 0, 1],
    ],
    bool,
)
