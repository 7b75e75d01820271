"""Statistics for results over seeds: spreads, intervals and tests against a baseline.

Small, explicit, and tested against hand-computed cases:

* :func:`describe` — mean, sample standard deviation and a Student-t interval of the mean
  (the seeds of one setting are independent repetitions, so the t-interval is the textbook
  interval for few repetitions of a continuous metric);
* :func:`paired_test` — setting minus baseline per seed (same seed = same data split,
  partition and initialisation, hence paired): paired t-test, its interval of the mean
  difference, and the Wilcoxon signed-rank test as the distribution-free check (with 5
  seeds its smallest two-sided p is 2/2⁵ = 0.0625, so it can never reach 0.05 there);
* :func:`welch_test` — the difference of two independent means with Welch's unequal-variance
  t-test (Welch 1947), e.g. the effect of a setting in one study against its effect in another;
* :func:`wilson_interval` and :func:`two_proportion_z` — for Acc@1 as counts of correctly
  classified attack images pooled over seeds. Pooling treats all images as independent, which
  ignores the variation between seeds; read it beside the paired test, not instead of it.

Student-t quantiles and tail probabilities come from SciPy (a dependency of scikit-learn);
normal ones from the standard library.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats

SIGNIFICANCE = 0.05


def _normal_quantile(level: float) -> float:
    """Two-sided critical value of the standard normal distribution (1.96 for 95 %)."""
    return statistics.NormalDist().inv_cdf(1 - (1 - level) / 2)


def t_quantile(level: float, df: float) -> float:
    """Two-sided critical value of Student's t with ``df`` degrees of freedom (4.303 for 95 %, df 2)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1) (got {level})")
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1 (got {df})")
    return float(scipy_stats.t.ppf(1 - (1 - level) / 2, df))


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    return float(2 * scipy_stats.t.sf(abs(t), df))


@dataclass(frozen=True)
class Summary:
    """Mean of ``n`` values; ``sd`` and the interval are None for fewer than two values."""

    n: int
    mean: float
    sd: float | None
    ci_low: float | None
    ci_high: float | None
    level: float = 0.95


def describe(values: Sequence[float], level: float = 0.95) -> Summary:
    """Mean ± sample sd (n − 1) and the t-interval ``mean ± t(level, n−1)·sd/√n``."""
    if not values:
        raise ValueError("describe() needs at least one value")
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Summary(n, mean, None, None, None, level)
    sd = statistics.stdev(values)
    half = t_quantile(level, n - 1) * sd / math.sqrt(n)
    return Summary(n, mean, sd, mean - half, mean + half, level)


@dataclass(frozen=True)
class PairedTest:
    """Setting minus baseline over ``n`` paired seeds.

    ``p_t`` is None when the t-test is undefined: fewer than two pairs, or identical non-zero
    differences (no spread to scale them by). Identical values in every pair give p = 1.
    """

    n: int
    mean_diff: float
    sd_diff: float | None
    ci_low: float | None
    ci_high: float | None
    t: float | None
    p_t: float | None
    p_wilcoxon: float | None

    @property
    def significant(self) -> bool:
        return self.p_t is not None and self.p_t < SIGNIFICANCE


def paired_test(values: Sequence[float], baseline: Sequence[float], level: float = 0.95) -> PairedTest:
    """Paired t-test (and Wilcoxon signed-rank) of ``values`` against ``baseline``, pair by pair."""
    if len(values) != len(baseline):
        raise ValueError(f"paired samples must have the same length ({len(values)} vs {len(baseline)})")
    if not values:
        raise ValueError("paired_test() needs at least one pair")
    diffs = [a - b for a, b in zip(values, baseline, strict=True)]
    n = len(diffs)
    mean = statistics.fmean(diffs)
    if n < 2:
        return PairedTest(n, mean, None, None, None, None, None, None)
    sd = statistics.stdev(diffs)
    if all(d == 0 for d in diffs):
        return PairedTest(n, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0)
    p_wilcoxon = float(scipy_stats.wilcoxon(diffs).pvalue)
    # 0.7 − 0.6 and 0.8 − 0.7 differ in the last bit: rounding is no spread, and dividing by it
    # would report an absurd t
    if sd <= 1e-9 * max(abs(d) for d in diffs):
        return PairedTest(n, mean, 0.0, mean, mean, None, None, p_wilcoxon)
    se = sd / math.sqrt(n)
    t = mean / se
    half = t_quantile(level, n - 1) * se
    return PairedTest(n, mean, sd, mean - half, mean + half, t, t_two_sided_p(t, n - 1), p_wilcoxon)


@dataclass(frozen=True)
class WelchTest:
    """Mean of ``a`` minus mean of ``b`` for two independent samples. ``p`` and the interval are
    None with fewer than two values on either side; no spread at all gives p = 1 for equal means
    and None otherwise (nothing to scale the difference by)."""

    n_a: int
    n_b: int
    diff: float
    ci_low: float | None
    ci_high: float | None
    df: float | None
    p: float | None

    @property
    def significant(self) -> bool:
        return self.p is not None and self.p < SIGNIFICANCE


def welch_test(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> WelchTest:
    """Welch's t-test (Welch 1947) with the Welch–Satterthwaite degrees of freedom, and the
    t-interval of the difference of the means."""
    if not a or not b:
        raise ValueError("welch_test() needs at least one value on each side")
    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return WelchTest(len(a), len(b), diff, None, None, None, None)
    var_a, var_b = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(var_a + var_b)
    if se <= 1e-12 * max(1.0, abs(diff)):
        return WelchTest(len(a), len(b), diff, diff, diff, None, 1.0 if diff == 0 else None)
    df = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    half = t_quantile(level, df) * se
    return WelchTest(len(a), len(b), diff, diff - half, diff + half, df, t_two_sided_p(diff / se, df))


def wilson_interval(successes: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (stays inside [0, 1], sane at 0 and n successes)."""
    if total < 1 or not 0 <= successes <= total:
        raise ValueError(f"need 0 <= successes <= total and total >= 1 (got {successes}/{total})")
    z = _normal_quantile(level)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    # at 0 or n successes the bound is exactly 0 or 1; rounding must not make it 0.9999999
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == total else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class CountTest:
    """Two pooled proportions ``k1/n1`` (setting) and ``k2/n2`` (baseline), with Wilson intervals
    and the two-sided two-proportion z-test (pooled standard error)."""

    k1: int
    n1: int
    k2: int
    n2: int
    z: float | None
    p: float
    interval1: tuple[float, float]
    interval2: tuple[float, float]

    @property
    def diff(self) -> float:
        return self.k1 / self.n1 - self.k2 / self.n2

    @property
    def significant(self) -> bool:
        return self.p < SIGNIFICANCE


def two_proportion_z(k1: int, n1: int, k2: int, n2: int, level: float = 0.95) -> CountTest:
    """z = (p1 − p2) / √(p̂(1 − p̂)(1/n1 + 1/n2)) with the pooled p̂ = (k1 + k2)/(n1 + n2)."""
    interval1, interval2 = wilson_interval(k1, n1, level), wilson_interval(k2, n2, level)
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:  # both 0 % or both 100 %: no difference to test
        return CountTest(k1, n1, k2, n2, None, 1.0, interval1, interval2)
    z = (k1 / n1 - k2 / n2) / se
    return CountTest(k1, n1, k2, n2, z, math.erfc(abs(z) / math.sqrt(2)), interval1, interval2)
