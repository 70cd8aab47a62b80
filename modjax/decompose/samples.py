"""The samples a decomposition monitors: confident positives and per-class negatives (§7.2)."""

from typing import NamedTuple

import numpy as np


class Samples(NamedTuple):
    """Per-class monitoring samples, stacked on a leading class axis.

    Attributes:
        positives: `[C, P, ...]`: the first P training images of class c the parent
            classifies with p_c > confidence, in dataset order.
        negatives: `[C, (C−1)·k, ...]`: the first k images of every other class, class by class
            (TI's result does not depend on their order, so the reference shuffle is dropped).
        num_confident: `[C]` how many confident positives each class had in all.
        valid: `[C, P]` bool, False for padding rows (only with `allow_fewer`).
    """

    positives: np.ndarray
    negatives: np.ndarray
    num_confident: np.ndarray
    valid: np.ndarray


def select_samples(
    images: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    *,
    num_positives: int,
    negatives_per_class: int,
    confidence: float = 0.9,
    allow_fewer: bool = False,
) -> Samples:
    """Picks CI positives and TI negatives for every class.

    Args:
        images: `[N, ...]` training images (already preprocessed).
        labels: `[N]` int labels in [0, C).
        probs: `[N, C]` the parent's softmax outputs on `images`.
        num_positives: P, positives per class (1000 in the paper).
        negatives_per_class: k, negatives from each other class.
        confidence: a positive needs p_c > confidence (0.9 in the paper).
        allow_fewer: take the confident positives there are when a class has fewer than P
            (the reference code's `digit[0:1000]`), padding with rows marked invalid.

    Returns:
        `Samples`.

    Raises:
        ValueError: a class with fewer than P confident positives (any, with `allow_fewer`)
            or k images, naming the class and the count found.

    Example:
        >>> x = np.arange(6.0)[:, None]
        >>> s = select_samples(x, np.array([0, 1, 0, 1, 0, 1]), np.full((6, 2), 0.95),
        ...                    num_positives=2, negatives_per_class=1)
        >>> s.positives[:, :, 0].tolist(), s.negatives[:, :, 0].tolist()
        ([[0.0, 2.0], [1.0, 3.0]], [[1.0], [0.0]])
    """
    labels = np.asarray(labels)
    num_classes = probs.shape[1]
    if num_positives < 1 or negatives_per_class < 0:
        raise ValueError(
            f"num_positives={num_positives} must be >= 1 and negatives_per_class="
            f"{negatives_per_class} >= 0"
        )
    pos, neg, found, valid = [], [], [], []
    for c in range(num_classes):
        ok = np.flatnonzero((labels == c) & (probs[:, c] > confidence))
        found.append(ok.size)
        if ok.size < num_positives and not (allow_fewer and ok.size > 0):
            raise ValueError(
                f"class {c} has {ok.size} training samples classified with p > {confidence}; "
                f"the method needs {num_positives}. Lower the bar with confidence=... "
                "(--confidence), num_positives=... (--positives) or allow_fewer=True "
                "(--allow-fewer, the reference code's behaviour)"
            )
        take = images[ok[:num_positives]]
        pad = num_positives - take.shape[0]
        pos.append(np.concatenate([take, np.zeros((pad, *images.shape[1:]), images.dtype)]))
        valid.append(np.arange(num_positives) < take.shape[0])
        rows = []
        for k in range(num_classes):
            if k == c:
                continue
            idx = np.flatnonzero(labels == k)[:negatives_per_class]
            if idx.size < negatives_per_class:
                raise ValueError(
                    f"class {k} has {idx.size} samples; TI needs {negatives_per_class} per class"
                )
            rows.append(images[idx])
        neg.append(np.concatenate(rows) if rows else images[:0])
    return Samples(np.stack(pos), np.stack(neg), np.asarray(found), np.stack(valid))
