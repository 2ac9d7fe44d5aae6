"""Study statistics against scipy and closed forms."""

import math

import numpy as np
import pytest
from scipy import stats

from monai_sam.study.statistics import holm, min_wilcoxon_p, paired_bootstrap_ci, t_interval, wilcoxon_paired


def test_t_interval_matches_scipy():
    values = [0.81, 0.84, 0.79, 0.88, 0.83]
    mean, low, high = t_interval(values, 0.95)
    ref = stats.t.interval(0.95, df=4, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values))
    assert (low, high) == pytest.approx(ref)


def test_t_interval_small_and_nan():
    mean, low, high = t_interval([0.5, float("nan")])
    assert mean == 0.5 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in t_interval([]))


def test_wilcoxon_exact_matches_scipy():
    a = np.array([0.90, 0.85, 0.88, 0.80, 0.91, 0.87, 0.86])
    b = np.array([0.86, 0.86, 0.80, 0.75, 0.84, 0.84, 0.88])  # |d| = 4, 1, 8, 5, 7, 3, 2 (x0.01)
    res = wilcoxon_paired(a, b)
    ref = stats.wilcoxon(a - b, method="exact")
    assert res.method == "exact"
    assert res.p_value == pytest.approx(ref.pvalue)
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.n == 7 and res.n_nonzero == 7


def test_wilcoxon_all_one_sign_reaches_min_p():
    diffs = np.arange(1, 6) / 100  # 5 positive, distinct differences
    res = wilcoxon_paired(diffs, np.zeros(5))
    assert res.p_value == pytest.approx(2 / 2**5)
    assert res.min_p == pytest.approx(min_wilcoxon_p(5)) == pytest.approx(0.0625)


def test_wilcoxon_zero_differences_and_ties():
    res = wilcoxon_paired([1, 1, 1], [1, 1, 1])
    assert res.p_value == 1.0 and res.n_nonzero == 0
    tied = wilcoxon_paired([0.1, 0.2, 0.1, 0.3, 0.0], [0, 0, 0, 0, 0])  # one zero, ties in |d|
    rounded = wilcoxon_paired([0.91, 0.88, 0.5], [0.87, 0.84, 0.2])  # 0.04 twice, up to float rounding
    assert rounded.method == "approx"
    assert tied.method == "approx" and tied.n_nonzero == 4
    ref = stats.wilcoxon([0.1, 0.2, 0.1, 0.3], method="approx")
    assert tied.p_value == pytest.approx(ref.pvalue)


def test_holm_hand_example():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    out = holm([0.2, float("nan"), 0.6])
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.4, 0.6])
    assert holm([0.9, 0.8]).max() <= 1.0


def test_holm_controls_like_bonferroni_for_smallest():
    p = np.array([0.001, 0.2, 0.5, 0.03])
    assert holm(p)[0] == pytest.approx(0.001 * 4)


def test_bootstrap_deterministic_and_sane():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1, 1, 12), rng.normal(0.5, 1, 12)
    first = paired_bootstrap_ci(a, b, n_resamples=2000, seed=3)
    again = paired_bootstrap_ci(a, b, n_resamples=2000, seed=3)
    other = paired_bootstrap_ci(a, b, n_resamples=2000, seed=4)
    assert first == again
    assert first != other
    mean, low, high = first
    assert mean == pytest.approx(np.mean(a - b))
    assert low < mean < high
    diffs = a - b
    assert diffs.min() <= low and high <= diffs.max()


def test_bootstrap_constant_difference_and_single_pair():
    mean, low, high = paired_bootstrap_ci([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])
    assert (mean, low, high) == pytest.approx((0.5, 0.5, 0.5))
    mean, low, high = paired_bootstrap_ci([1.0, 2.0], [0.0, 0.5])
    assert mean == 1.25 and math.isnan(low) and math.isnan(high)
