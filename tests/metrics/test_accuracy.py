"""Tests for modjax.metrics accuracy helpers."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from modjax import metrics

# ----------------------------------------------------------------------------- accuracy


def test_accuracy_helpers():
    assert metrics.accuracy_from_sums(jnp.int32(45), jnp.int32(50)) == 0.9
    np.testing.assert_allclose(
        metrics.per_class_accuracy(np.array([9, 5, 0]), np.array([10, 10, 4])), [0.9, 0.5, 0.0]
    )
    acc = metrics.per_class_accuracy(np.array([3, 0]), np.array([4, 0]), allow_empty=True)
    assert acc[0] == 0.75 and math.isnan(acc[1])


def test_accuracy_errors():
    with pytest.raises(ValueError, match="count=0 must be positive"):
        metrics.accuracy_from_sums(0, 0)
    with pytest.raises(ValueError, match="correct=5 must lie"):
        metrics.accuracy_from_sums(5, 4)
    with pytest.raises(ValueError, match=r"classes \[1\] have no examples"):
        metrics.per_class_accuracy(np.array([3, 0]), np.array([4, 0]))
    with pytest.raises(ValueError, match="same shape"):
        metrics.per_class_accuracy(np.array([3, 0]), np.array([4, 0, 1]))
    with pytest.raises(ValueError, match="per_class_correct <= per_class_count"):
        metrics.per_class_accuracy(np.array([5]), np.array([4]))
