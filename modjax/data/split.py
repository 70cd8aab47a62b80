"""Seeded selections of a labelled set: a random subset, and a stratified hold-out split."""

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


def seeded_subset(
    images: np.ndarray, labels: np.ndarray, n: int | None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`n` rows drawn without replacement (seeded), in their original order; all rows when `n`
    is None or not smaller than the set.

    Example:
        >>> seeded_subset(np.arange(5), np.arange(5), 3, seed=0)[1].tolist()
        [2, 3, 4]
    """
    if n is None or n >= len(labels):
        return images, labels
    idx = np.sort(np.random.default_rng(seed).permutation(len(labels))[:n])
    return images[idx], labels[idx]


__all__ = ["seeded_subset", "stratified_split"]
