"""Tests for modjax.metrics value- and edge-based weight Jaccard (Pan & Rajan)."""

import math

import numpy as np
import pytest

from modjax import metrics

# ----------------------------------------------------------------------------- Pan & Rajan JI


def test_value_vs_edge_jaccard_hand():
    a = {"d0": np.array([[0.0, 0.5], [0.0, 0.0]])}
    b = {"d0": np.array([[0.0, 0.0], [0.0, 0.5]])}
    # Value-based: sets {0, .5} and {0, .5}: |∩| = 2; lengths 4 + 4 -> 2 / 6.
    assert metrics.value_jaccard(a, b) == pytest.approx(1 / 3)
    # Position-based: non-zero edges (0,1) vs (1,1) are disjoint.
    assert metrics.edge_jaccard(a, b) == 0.0
    c = {"d0": np.array([[0.0, 0.7], [0.0, 0.5]])}
    assert metrics.edge_jaccard(a, c) == pytest.approx(1 / 2)
    # value: {0, .5} ∩ {0, .5, .7} = 2; 4 + 4 - 2 = 6.
    assert metrics.value_jaccard(a, c) == pytest.approx(2 / 6)
    assert math.isnan(metrics.edge_jaccard({"d0": np.zeros(2)}, {"d0": np.zeros(2)}))


def test_jaccard_weights_errors():
    with pytest.raises(ValueError, match="weights_a has no weights"):
        metrics.value_jaccard([], [np.ones(2)])
    with pytest.raises(ValueError, match="shape"):
        metrics.edge_jaccard([np.ones(2)], [np.ones(3)])
