"""Semantic architecture: modules as runs of adjacent similar items, modularity, θ sweep (§8.3)."""

from collections.abc import Sequence
from typing import Any

import numpy as np
from jax.typing import ArrayLike

Module = tuple[int, int]
"""An inclusive interval `(first, last)` of item (block or layer) indices."""

DEFAULT_THRESHOLDS = tuple(round(0.90 + 0.01 * i, 2) for i in range(10))
"""θ ∈ {0.90, …, 0.99}, DeepArc's RQ1 sweep."""


def _check(sim: ArrayLike, threshold: float) -> np.ndarray:
    s = np.asarray(sim, np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] < 1:
        raise ValueError(f"similarity matrix has shape {s.shape}; expected a non-empty [n, n]")
    if not np.isfinite(threshold) or not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold={threshold!r} must be a finite number in [-1, 1]")
    return s


def find_modules(sim: ArrayLike, threshold: float, *, parity: bool = False) -> list[Module]:
    """DeepArc's threshold scan: maximal runs of items whose adjacent similarity exceeds θ.

    Only `sim[i - 1, i]` is read. Item i joins the running module when `sim[i - 1, i] > θ`;
    otherwise the module closes at i − 1 and a new one starts at i.

    Args:
        sim: `[n, n]` similarity (CKA) matrix of items in forward order.
        threshold: θ (DeepArc demo 0.99).
        parity: close the last interval at n, as the reference code does (METHODS §12 quirk 22);
            the default closes it at n − 1.

    Returns:
        Inclusive intervals `(first, last)` covering 0..n − 1 in order.

    Example:
        >>> s = np.eye(5) + np.diag([0.995, 0.2, 0.999, 0.999], 1)
        >>> find_modules(s + s.T - np.eye(5), 0.99)
        [(0, 1), (2, 4)]
    """
    s = _check(sim, threshold)
    n = s.shape[0]
    modules, start = [], 0
    for i in range(1, n):
        if s[i - 1, i] > threshold:
            continue
        modules.append((start, i - 1))
        start = i
    modules.append((start, n if parity else n - 1))
    return modules


def modularity(modules: Sequence[Module], num_items: int, *, parity: bool = False) -> float:
    """The share of items in multi-item modules (METHODS §10.8).

    Default: Σ_{size > 1} size / n. `parity=True` uses the reference code's denominator n + 1
    (paired with its [start, n] last interval, §8.3).

    Example:
        >>> modularity([(0, 1), (2, 2), (3, 5)], 6)
        0.8333333333333334
    """
    if num_items < 1:
        raise ValueError(f"num_items={num_items!r} must be >= 1")
    covered = sum(last - first + 1 for first, last in modules if last > first)
    return covered / (num_items + 1 if parity else num_items)


def redundant(modules: Sequence[Module]) -> list[int]:
    """Compression candidates: the non-first members of multi-item modules (METHODS §8.4).

    Example:
        >>> redundant([(0, 0), (1, 3), (4, 5)])
        [2, 3, 5]
    """
    return [i for first, last in modules for i in range(first + 1, last + 1)]


def sweep(
    sim: ArrayLike, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, *, parity: bool = False
) -> list[dict[str, Any]]:
    """Modules and modularity at each θ: rows `{threshold, modules, num_modules, modularity}`.

    Example:
        >>> [r["num_modules"] for r in sweep(np.ones((3, 3)), [0.5, 1.0])]
        [1, 3]
    """
    n = np.asarray(sim).shape[0]
    rows = []
    for t in thresholds:
        mods = find_modules(sim, float(t), parity=parity)
        rows.append(
            {
                "threshold": float(t),
                "modules": [list(m) for m in mods],
                "num_modules": len(mods),
                "modularity": modularity(mods, n, parity=parity),
            }
        )
    return rows
