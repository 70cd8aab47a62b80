"""Welch's t-test and the 95% interval of a difference over seeds, against SciPy's own."""

import math

import numpy as np
import pytest
from scipy import stats

from modjax import metrics


@pytest.mark.parametrize(
    "a, b",
    [
        ([0.90, 0.91, 0.92], [0.80, 0.82, 0.81]),
        ([0.71, 0.74], [0.70, 0.75, 0.72, 0.69]),
        ([0.5, 0.9, 0.1], [0.52, 0.48, 0.51]),
    ],
)
def test_matches_scipy_welch(a, b):
    c = metrics.welch_comparison(a, b)
    want = stats.ttest_ind(a, b, equal_var=False)
    ci = want.confidence_interval(0.95)
    assert c.p_value == pytest.approx(want.pvalue, rel=1e-9)
    assert (c.low, c.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert c.difference == pytest.approx(np.mean(a) - np.mean(b))
    assert c.verdict == ("differ (p < 0.05)" if want.pvalue < 0.05 else "no significant difference")


def test_too_few_seeds_and_degenerate_samples():
    c = metrics.welch_comparison([0.9], [0.8, 0.7])
    assert math.isnan(c.p_value) and c.difference == pytest.approx(0.15)
    assert c.verdict == "too few seeds to tell (1 and 2; at least 2 each)"
    assert metrics.comparison_cells(c, 100, 1) == ["+15.0", "–", "–", c.verdict]
    # NaN/None are dropped before counting.
    assert metrics.welch_comparison([0.9, math.nan], [0.8, None, 0.7]).n_a == 1
    assert metrics.comparison_cells(metrics.welch_comparison([], [0.1, 0.2]))[0] == "–"
    exact = metrics.welch_comparison([0.5, 0.5], [0.4, 0.4])
    assert exact.p_value == 0.0 and exact.verdict == "differ (p < 0.05)"
    assert metrics.welch_comparison([0.5, 0.5], [0.5, 0.5]).p_value == 1.0
    with pytest.raises(ValueError, match=r"alpha=1.5 must be in \(0, 1\)"):
        metrics.welch_comparison([1, 2], [3, 4], alpha=1.5)
