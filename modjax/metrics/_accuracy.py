"""Top-1 and per-class accuracy from the eval step's summed counts (METHODS §10.6)."""

import math

import numpy as np
from jax.typing import ArrayLike


def accuracy_from_sums(correct: ArrayLike, count: ArrayLike) -> float:
    """Top-1 accuracy from the eval step's summed `correct` and `count` (METHODS §10.6).

    Args:
        correct: scalar int, correctly classified valid examples.
        count: scalar int, valid examples.

    Returns:
        `correct / count`.

    Raises:
        ValueError: if `count` is 0 or `correct` is outside `[0, count]`.

    Example:
        >>> accuracy_from_sums(np.int32(45), 50)
        0.9
    """
    correct, count = int(np.asarray(correct)), int(np.asarray(count))
    if count <= 0:
        raise ValueError(f"count={count} must be positive: no examples were evaluated")
    if not 0 <= correct <= count:
        raise ValueError(f"correct={correct} must lie in [0, count={count}]")
    return correct / count


def per_class_accuracy(
    per_class_correct: ArrayLike, per_class_count: ArrayLike, *, allow_empty: bool = False
) -> np.ndarray:
    """Accuracy of every class from the eval step's per-class sums.

    Args:
        per_class_correct: `[N]` int, correct examples of each class.
        per_class_count: `[N]` int, examples of each class.
        allow_empty: give classes with no examples NaN instead of raising (e.g. a sub-task test
            set that holds only the classes of T).

    Returns:
        `[N]` float64 accuracies.

    Raises:
        ValueError: for mismatched shapes, negative or inconsistent counts, or an empty class
        unless `allow_empty`.

    Example:
        >>> per_class_accuracy(np.array([9, 5]), np.array([10, 10])).tolist()
        [0.9, 0.5]
    """
    correct = np.asarray(per_class_correct)
    count = np.asarray(per_class_count)
    if correct.ndim != 1 or correct.shape != count.shape:
        raise ValueError(
            f"per_class_correct {correct.shape} and per_class_count {count.shape} must be "
            "[num_classes] vectors of the same shape"
        )
    if np.any(count < 0) or np.any(correct < 0) or np.any(correct > count):
        raise ValueError("per-class sums must satisfy 0 <= per_class_correct <= per_class_count")
    empty = count == 0
    if empty.any() and not allow_empty:
        raise ValueError(
            f"classes {np.flatnonzero(empty).tolist()} have no examples (empty classes); "
            "pass allow_empty=True to get NaN for them"
        )
    safe = np.where(empty, 1, count)
    return np.where(empty, math.nan, correct / safe)
