"""A stratified, seeded hold-out split of a labelled set (validation sets for model selection)."""

import numpy as np


def stratified_split(labels, *, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Indices `(train_idx, val_idx)` with `round(fraction * n_c)` of each class c in val.

    Every class with >= 2 samples keeps at least one sample on each side. Deterministic in `seed`;
    both index arrays are sorted and disjoint, and together cover `range(len(labels))`.
    """
    labels = np.asarray(labels)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction={fraction} must be in (0, 1)")
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = round(fraction * len(idx))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        val.append(rng.permutation(idx)[:k])
    val = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val)
    return train_idx, val


__all__ = ["stratified_split"]
