"""fedls.stats against hand-computed cases (closed forms, not the library under test)."""

from __future__ import annotations

import math

import pytest

from fedls.stats import describe, paired_test, t_quantile, two_proportion_z, welch_test, wilson_interval


def t2_two_sided_p(t: float) -> float:
    """Student's t with 2 degrees of freedom has the closed-form CDF 1/2 + t / (2√(2 + t²))."""
    return 1 - abs(t) / math.sqrt(2 + t * t)


def t2_quantile(level: float) -> float:
    """Its inverse: q/√(2 + q²) = level  ⇒  q = √(2·level² / (1 − level²))."""
    return math.sqrt(2 * level**2 / (1 - level**2))


def test_t_quantile_matches_closed_form_and_table():
    assert t_quantile(0.95, 2) == pytest.approx(t2_quantile(0.95), rel=1e-9)
    assert t_quantile(0.95, 2) == pytest.approx(4.303, abs=1e-3)  # printed t tables
    assert t_quantile(0.95, 4) == pytest.approx(2.776, abs=1e-3)
    with pytest.raises(ValueError):
        t_quantile(0.95, 0)


def test_describe_mean_sd_and_t_interval():
    s = describe([1.0, 2.0, 3.0])
    assert (s.n, s.mean, s.sd) == (3, 2.0, 1.0)
    half = t2_quantile(0.95) / math.sqrt(3)
    assert (s.ci_low, s.ci_high) == pytest.approx((2 - half, 2 + half))
    single = describe([0.7])
    assert single.sd is None and single.ci_low is None and single.mean == 0.7


def test_paired_t_hand_computed():
    # differences 0.10, 0.05, 0.08: mean 0.07667, sd 0.025166, se 0.014530, t = 5.2766 on 2 df
    test = paired_test([0.80, 0.85, 0.90], [0.70, 0.80, 0.82])
    assert test.n == 3
    assert test.mean_diff == pytest.approx(0.076667, abs=1e-6)
    assert test.sd_diff == pytest.approx(0.025166, abs=1e-6)
    assert test.t == pytest.approx(5.2766, abs=1e-4)
    assert test.p_t == pytest.approx(t2_two_sided_p(5.276562), rel=1e-5)
    assert test.p_t == pytest.approx(0.0341, abs=1e-4) and test.significant
    half = t2_quantile(0.95) * 0.025166 / math.sqrt(3)
    assert (test.ci_low, test.ci_high) == pytest.approx((0.076667 - half, 0.076667 + half), abs=1e-5)
    # the order matters: setting minus baseline
    assert paired_test([0.70, 0.80, 0.82], [0.80, 0.85, 0.90]).mean_diff == pytest.approx(-0.076667, abs=1e-6)


def test_paired_t_not_significant_and_wilcoxon_floor():
    # differences 0, 0, 1: mean 1/3, sd 0.57735, t = 1 on 2 df → p = 1 − 1/√3
    test = paired_test([1.0, 2.0, 3.0], [1.0, 2.0, 2.0])
    assert test.p_t == pytest.approx(1 - 1 / math.sqrt(3)) and not test.significant
    # all five differences positive: the exact two-sided signed-rank p is 2 / 2⁵
    five = paired_test([1.0, 2.2, 3.1, 3.9, 5.3], [0.0, 1.0, 2.0, 3.0, 4.0])
    assert five.p_wilcoxon == pytest.approx(2 / 32)
    assert five.significant  # the t-test can be, the signed-rank test cannot with 5 seeds


def test_paired_degenerate_cases():
    same = paired_test([0.5, 0.6], [0.5, 0.6])
    assert same.p_t == 1.0 and same.mean_diff == 0.0 and not same.significant
    shifted = paired_test([0.6, 0.7, 0.8], [0.5, 0.6, 0.7])  # identical non-zero differences
    assert shifted.p_t is None and shifted.mean_diff == pytest.approx(0.1)
    one = paired_test([0.9], [0.8])
    assert one.p_t is None and one.mean_diff == pytest.approx(0.1)
    with pytest.raises(ValueError, match="same length"):
        paired_test([1.0, 2.0], [1.0])


def t4_two_sided_p(t: float) -> float:
    """Student's t with 4 degrees of freedom: CDF 1/2 + (3/4)·x·(1 − x²/3) with x = t/√(4 + t²)."""
    x = abs(t) / math.sqrt(4 + t * t)
    return 2 * (0.5 - 0.75 * x * (1 - x * x / 3))


def test_welch_hand_computed():
    # equal sizes and variances: se² = 1/3 + 1/3, Welch–Satterthwaite df = (2/3)² / (2 · (1/3)² / 2) = 4
    test = welch_test([1.0, 2.0, 3.0], [3.0, 4.0, 5.0])
    assert (test.n_a, test.n_b, test.diff) == (3, 3, -2.0)
    assert test.df == pytest.approx(4.0)
    assert test.p == pytest.approx(t4_two_sided_p(2 / math.sqrt(2 / 3)), rel=1e-9)
    half = 2.776445 * math.sqrt(2 / 3)  # t table, 4 df, 95 %
    assert (test.ci_low, test.ci_high) == pytest.approx((-2 - half, -2 + half), abs=1e-5)
    assert not test.significant
    # unequal variances: fewer degrees of freedom than n_a + n_b − 2 (the pooled test's)
    uneven = welch_test([0.0, 0.1, -0.1, 0.05], [1.0, 3.0, 0.0, 4.0, 2.0])
    assert 3 <= uneven.df < 7 and uneven.diff == pytest.approx(-1.9875)


def test_welch_degenerate_cases():
    assert welch_test([0.5, 0.5], [0.5, 0.5]).p == 1.0
    apart = welch_test([0.5, 0.5], [0.7, 0.7])  # no spread: nothing to scale the difference by
    assert apart.p is None and apart.diff == pytest.approx(-0.2)
    few = welch_test([0.9], [0.1, 0.3])
    assert few.p is None and few.ci_low is None and few.diff == pytest.approx(0.7)
    with pytest.raises(ValueError):
        welch_test([], [1.0])


def test_wilson_interval_published_values():
    # 8/10 at 95 %: 0.4902–0.9433 (Wilson 1927; e.g. Newcombe 1998, Table I)
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.2775, abs=1e-4)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_two_proportion_z_hand_computed():
    # 80/100 vs 60/100: pooled 0.7, se = √(0.7·0.3·(1/100 + 1/100)) = 0.064807, z = 3.0861
    test = two_proportion_z(80, 100, 60, 100)
    assert test.z == pytest.approx(0.2 / math.sqrt(0.7 * 0.3 * 0.02))
    assert test.z == pytest.approx(3.0861, abs=1e-4)
    assert test.p == pytest.approx(0.002028, abs=1e-6) and test.significant
    assert test.diff == pytest.approx(0.2)
    close = two_proportion_z(62, 100, 60, 100)
    assert close.p > 0.5 and not close.significant
    assert two_proportion_z(0, 50, 0, 50).p == 1.0
