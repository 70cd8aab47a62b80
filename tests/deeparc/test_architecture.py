"""Threshold scan, modularity and the θ sweep (METHODS §8.3, §10.8)."""

import numpy as np
import pytest

from modjax.deeparc import architecture


def _chain(adjacent):
    """A similarity matrix with the given adjacent values (others 0)."""
    n = len(adjacent) + 1
    s = np.eye(n)
    for i, v in enumerate(adjacent):
        s[i, i + 1] = s[i + 1, i] = v
    return s


def test_scan_uses_adjacent_pairs_only():
    s = _chain([0.995, 0.2, 0.999, 0.999, 0.5])
    s[0, 5] = s[5, 0] = 1.0  # far pairs are ignored
    assert architecture.find_modules(s, 0.99) == [(0, 1), (2, 4), (5, 5)]
    assert architecture.find_modules(s, 0.99, parity=True) == [(0, 1), (2, 4), (5, 6)]
    assert architecture.find_modules(s, 0.0) == [(0, 5)]
    assert architecture.find_modules(s, 1.0) == [(i, i) for i in range(6)]
    assert architecture.find_modules(np.ones((1, 1)), 0.5) == [(0, 0)]


def test_strictly_greater_than_threshold():
    assert architecture.find_modules(_chain([0.99]), 0.99) == [(0, 0), (1, 1)]


def test_demo_modules_give_the_expected_modularity():
    # DeepArc demo (METHODS §13.6), 55 blocks with the code's [start, n] end.
    adjacent = np.full(54, 0.5)
    for first, last in ((5, 9), (22, 35), (38, 49), (53, 54)):
        adjacent[first:last] = 0.999
    mods = architecture.find_modules(_chain(adjacent), 0.99)
    assert [m for m in mods if m[1] > m[0]] == [(5, 9), (22, 35), (38, 49), (53, 54)]
    assert architecture.modularity(mods, 55) == pytest.approx((5 + 14 + 12 + 2) / 55)
    assert architecture.modularity(mods, 55, parity=True) == pytest.approx(33 / 56)
    assert architecture.redundant(mods)[:4] == [6, 7, 8, 9]
    assert len(architecture.redundant(mods)) == 33 - 4


def test_sweep_is_monotone_in_theta():
    rng = np.random.default_rng(0)
    s = _chain(rng.uniform(0.85, 1.0, size=20))
    rows = architecture.sweep(s)
    assert [r["threshold"] for r in rows] == list(architecture.DEFAULT_THRESHOLDS)
    counts = [r["num_modules"] for r in rows]
    assert counts == sorted(counts)
    assert rows[0]["modularity"] >= rows[-1]["modularity"]
    assert set(rows[0]) == {"threshold", "modules", "num_modules", "modularity"}


def test_errors():
    with pytest.raises(ValueError, match="threshold=1.5"):
        architecture.find_modules(np.eye(3), 1.5)
    with pytest.raises(ValueError, match="shape \\(2, 3\\)"):
        architecture.find_modules(np.ones((2, 3)), 0.9)
    with pytest.raises(ValueError, match="num_items=0"):
        architecture.modularity([], 0)
