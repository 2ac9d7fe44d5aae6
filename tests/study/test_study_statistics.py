"""Study statistics against scipy and closed forms."""

import math

import numpy as np
import pytest
from scipy import stats

from monai_sam.study.statistics import (
    corrected_resampled_ttest,
    delong_paired,
    holm,
    min_wilcoxon_p,
    minimal_detectable_difference,
    paired_bootstrap_ci,
    t_interval,
    wilcoxon_paired,
)


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


# ---------------------------------------------------------------- corrected resampled t-test


def test_corrected_ttest_matches_formula_and_scipy():
    d = np.array([0.02, -0.01, 0.03, 0.015, 0.0, 0.025, 0.01, -0.005, 0.02, 0.012])
    ratio = 0.25  # 5-fold: n_test / n_train = 1/4
    res = corrected_resampled_ttest(d, ratio)
    se = d.std(ddof=1) * math.sqrt(
        1 / d.size + ratio
    )  # Nadeau & Bengio (2003), eq. for the corrected variance
    t = d.mean() / se
    assert res.statistic == pytest.approx(t) and res.df == 9
    assert res.p_value == pytest.approx(2 * stats.t.sf(abs(t), 9))
    # without the correction term it is scipy's one-sample t-test; the correction only widens
    plain = corrected_resampled_ttest(d, 0.0)
    ref = stats.ttest_1samp(d, 0.0)
    assert plain.statistic == pytest.approx(ref.statistic) and plain.p_value == pytest.approx(ref.pvalue)
    assert res.p_value > plain.p_value


def test_corrected_ttest_degenerate():
    assert math.isnan(corrected_resampled_ttest([0.1], 0.25).p_value)
    assert corrected_resampled_ttest([0.0, 0.0, 0.0], 0.25).p_value == 1.0
    with pytest.raises(ValueError, match="test_train_ratio"):
        corrected_resampled_ttest([0.1, 0.2], -1)


def test_minimal_detectable_difference_has_the_power():
    std, n, ratio, alpha = 0.03, 10, 0.25, 0.05 / 10
    mdd = minimal_detectable_difference(std, n, ratio, alpha, power=0.8)
    se = std * math.sqrt(1 / n + ratio)
    # exact power of the two-sided t-test at that true difference (noncentral t, scipy)
    crit = stats.t.ppf(1 - alpha / 2, n - 1)
    power = stats.nct.sf(crit, n - 1, mdd / se) + stats.nct.cdf(-crit, n - 1, mdd / se)
    assert power == pytest.approx(0.8, abs=0.03)
    assert minimal_detectable_difference(std, n, ratio, 0.05) < mdd  # a looser level detects less
    assert math.isnan(minimal_detectable_difference(std, 1, ratio))


# ---------------------------------------------------------------- DeLong


def _delong_definition(y, a, b):
    """DeLong, DeLong & Clarke-Pearson (1988) from their definitions: O(m n) kernel, covariance matrices."""
    psi = lambda x, yy: (x > yy) + 0.5 * (x == yy)  # noqa: E731
    pos, neg = [s[y == 1] for s in (a, b)], [s[y == 0] for s in (a, b)]
    v10 = np.array([[psi(x, neg[k]).mean() for x in pos[k]] for k in range(2)])
    v01 = np.array([[psi(pos[k], x).mean() for x in neg[k]] for k in range(2)])
    contrast = np.array([1.0, -1.0])
    var = contrast @ np.cov(v10) @ contrast / v10.shape[1] + contrast @ np.cov(v01) @ contrast / v01.shape[1]
    diff = v10[0].mean() - v10[1].mean()
    return v10.mean(axis=1), math.sqrt(var), 2 * stats.norm.sf(abs(diff) / math.sqrt(var))


def test_delong_hand_worked_example():
    # positives scored (0.35, 0.8) and negatives (0.1, 0.4) by A; B ranks them perfectly.
    # A: V10 = (1/2, 1), V01 = (1, 1/2), AUC 0.75; B: all placements 1, AUC 1.
    # var = var(-1/2, 0)/2 + var(0, -1/2)/2 = 0.125, z = -0.25 / sqrt(0.125) = -0.7071
    y = np.array([0, 0, 1, 1])
    res = delong_paired(y, [0.1, 0.4, 0.35, 0.8], [0.1, 0.2, 0.3, 0.4])
    assert (res.auc_a, res.auc_b) == pytest.approx((0.75, 1.0))
    assert res.se == pytest.approx(math.sqrt(0.125))
    assert res.statistic == pytest.approx(-0.25 / math.sqrt(0.125))
    assert res.p_value == pytest.approx(2 * stats.norm.sf(0.25 / math.sqrt(0.125)))


def test_delong_matches_definition_and_mann_whitney():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 80)
    a = np.round(y + rng.normal(0, 1, 80), 1)  # rounding makes ties, which count half
    b = np.round(y + rng.normal(0, 1.5, 80), 1)
    res = delong_paired(y, a, b)
    aucs, se, p = _delong_definition(y, a, b)
    assert (res.auc_a, res.auc_b) == pytest.approx(tuple(aucs))
    assert res.se == pytest.approx(se) and res.p_value == pytest.approx(p)
    u = stats.mannwhitneyu(a[y == 1], a[y == 0]).statistic  # AUC = U / (m n)
    assert res.auc_a == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()))


def test_delong_macro_reduces_to_binary_and_is_calibrated():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 60)
    pa, pb = 1 / (1 + np.exp(-(y + rng.normal(0, 1, 60)))), 1 / (1 + np.exp(-(y + rng.normal(0, 2, 60))))
    binary = delong_paired(y, pa, pb)
    macro = delong_paired(y, np.stack([1 - pa, pa], 1), np.stack([1 - pb, pb], 1))
    assert macro.difference == pytest.approx(binary.difference) and macro.se == pytest.approx(binary.se)
    # three classes, two equally good models: about alpha of the tests reject at alpha
    rejections = 0
    for seed in range(200):
        r = np.random.default_rng(seed)
        labels = np.repeat([0, 1, 2], 30)
        logits = [np.eye(3)[labels] + r.normal(0, 1.2, (90, 3)) for _ in range(2)]
        probs = [np.exp(z) / np.exp(z).sum(1, keepdims=True) for z in logits]
        rejections += delong_paired(labels, probs[0], probs[1]).p_value < 0.05
    assert 3 <= rejections <= 20  # 10 expected; binomial(200, 0.05) is within [3, 20] with p > 0.99


def test_delong_bad_input():
    with pytest.raises(ValueError, match="at least two images"):
        delong_paired([0, 1, 1], [0.1, 0.5, 0.7], [0.2, 0.3, 0.9])
    with pytest.raises(ValueError, match="scores"):
        delong_paired([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3])


def test_delong_macro_standard_error_matches_simulation():
    # correlated models (shared per-image noise), 30 images per class: the empirical spread of the
    # macro-AUC difference over simulated data sets is what the DeLong standard error estimates
    diffs, ses = [], []
    labels = np.repeat([0, 1, 2], 30)
    for seed in range(300):
        r = np.random.default_rng(seed)
        shared = r.normal(0, 1.0, (90, 3))
        za = 1.5 * np.eye(3)[labels] + shared + r.normal(0, 0.5, (90, 3))
        zb = 1.0 * np.eye(3)[labels] + shared + r.normal(0, 0.5, (90, 3))
        res = delong_paired(labels, za, zb)  # any scores work, not only probabilities
        diffs.append(res.difference)
        ses.append(res.se)
    assert np.mean(ses) == pytest.approx(np.std(diffs, ddof=1), rel=0.12)


def test_delong_macro_variance_centres_within_class():
    # Model A confuses class 1 with class 0, model B class 2 with class 0: the images of one class
    # then shift the macro-AUC difference in one direction (as negatives of class 0), so each class's
    # contributions have a non-zero mean that the variance must remove. The class-stratified bootstrap
    # of the same difference (resampling images within their class, AUCs from the Mann-Whitney rank
    # sum) is the independent reference; without the centring the DeLong SE is about 15 % too large.
    labels = np.repeat([0, 1, 2], 40)
    r = np.random.default_rng(0)
    shared = r.normal(0, 1.0, (120, 3))
    onehot = np.eye(3)[labels]
    za = onehot * np.array([3.0, 0.5, 0.5]) + shared + r.normal(0, 0.5, (120, 3))
    zb = onehot * np.array([0.5, 0.5, 3.0]) + shared + r.normal(0, 0.5, (120, 3))
    za[:, 0] += 2.0 * (labels == 1)
    zb[:, 0] += 2.0 * (labels == 2)
    res = delong_paired(labels, za, zb)

    def macro(y, z):
        aucs = []
        for c in range(3):
            m, n = (y == c).sum(), (y != c).sum()
            aucs.append((stats.rankdata(z[:, c])[y == c].sum() - m * (m + 1) / 2) / (m * n))
        return np.mean(aucs)

    by_class = [np.flatnonzero(labels == c) for c in range(3)]
    diffs = []
    for _ in range(2000):
        take = np.concatenate([r.choice(i, i.size) for i in by_class])
        diffs.append(macro(labels[take], za[take]) - macro(labels[take], zb[take]))
    assert res.difference == pytest.approx(macro(labels, za) - macro(labels, zb), abs=1e-12)
    assert res.se == pytest.approx(np.std(diffs, ddof=1), rel=0.05)
