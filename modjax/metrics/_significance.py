"""Is a difference over seeds real? Welch's t-test and the 95% interval of the difference.

Tables that compare methods report, for each pair, the mean difference over seeds, its 95%
confidence interval and Welch's two-sided p-value (unequal variances; the runs of two methods
with the same seed share data order and initialization only loosely, so they are not treated
as paired). With fewer than two seeds on either side there is no variance to test against, and
the comparison says so instead of printing a number.
"""

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

MIN_SEEDS = 2  # per side: a sample variance needs two values


@dataclasses.dataclass(frozen=True)
class Comparison:
    """`a − b` over seeds. `p_value`, `low`, `high` are NaN when `verdict` says why."""

    n_a: int
    n_b: int
    difference: float  # mean(a) − mean(b)
    low: float  # 95% confidence interval of the difference (Welch–Satterthwaite df)
    high: float
    p_value: float  # Welch's two-sided t-test
    verdict: str  # "differ (p < 0.05)", "no significant difference", "too few seeds ..."


def welch_comparison(a: Sequence[float], b: Sequence[float], *, alpha: float = 0.05) -> Comparison:
    """Welch's t-test of mean(a) = mean(b) and the (1 − alpha) interval of mean(a) − mean(b).

    NaN and None values are dropped. Two constant samples with different means differ with
    p = 0 (an exact difference); with equal means, p = 1.

    Example:
        >>> c = welch_comparison([0.90, 0.91, 0.92], [0.80, 0.82, 0.81])
        >>> round(c.difference, 3), c.p_value < 0.01, c.verdict
        (0.1, True, 'differ (p < 0.05)')
        >>> welch_comparison([0.9], [0.8, 0.7]).verdict
        'too few seeds to tell (1 and 2; at least 2 each)'

    Raises:
        ValueError: `alpha` outside (0, 1).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha} must be in (0, 1)")
    x = np.array([v for v in a if v is not None and not math.isnan(v)], np.float64)
    y = np.array([v for v in b if v is not None and not math.isnan(v)], np.float64)
    nan = math.nan
    if len(x) < MIN_SEEDS or len(y) < MIN_SEEDS:
        diff = float(x.mean() - y.mean()) if len(x) and len(y) else nan
        return Comparison(
            len(x),
            len(y),
            diff,
            nan,
            nan,
            nan,
            f"too few seeds to tell ({len(x)} and {len(y)}; at least {MIN_SEEDS} each)",
        )
    diff = float(x.mean() - y.mean())
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(va + vb)
    level = f"p < {alpha:g}"
    if se == 0:  # both constant: the difference is exact
        p = 0.0 if diff != 0 else 1.0
        verdict = f"differ ({level})" if diff != 0 else "no significant difference"
        return Comparison(len(x), len(y), diff, diff, diff, p, verdict)
    from scipy import stats  # here: `import modjax` should not pay for scipy.stats

    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(1 - alpha / 2, df) * se)
    verdict = f"differ ({level})" if p < alpha else "no significant difference"
    return Comparison(len(x), len(y), diff, diff - half, diff + half, p, verdict)


def comparison_cells(c: Comparison, scale: float = 1.0, digits: int = 2) -> list[str]:
    """Markdown cells `[difference, 95% CI, p, verdict]` of a comparison, values × `scale`.

    Example:
        >>> comparison_cells(welch_comparison([0.9, 0.92], [0.8, 0.82]), 100, 1)
        ['+10.0', '[+3.9, +16.1]', '0.019', 'differ (p < 0.05)']
    """
    if math.isnan(c.difference):
        return ["–", "–", "–", c.verdict]
    diff = f"{c.difference * scale:+.{digits}f}"
    if math.isnan(c.p_value):
        return [diff, "–", "–", c.verdict]
    ci = f"[{c.low * scale:+.{digits}f}, {c.high * scale:+.{digits}f}]"
    return [diff, ci, f"{c.p_value:.2g}" if c.p_value >= 1e-4 else "< 1e-4", c.verdict]


__all__ = ["MIN_SEEDS", "Comparison", "comparison_cells", "welch_comparison"]
