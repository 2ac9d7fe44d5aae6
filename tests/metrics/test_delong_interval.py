"""DeLong's interval of one AUC against its definition, a hand-worked case and a coverage simulation."""

import math

import numpy as np
import pytest
from scipy import stats

from monai_sam.metrics import delong_interval


def _definition(y, s):
    """AUC and DeLong SE from the O(m n) kernel: V10, V01 placements and their sample variances."""
    pos, neg = s[y == 1], s[y == 0]
    kernel = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = kernel.mean(axis=1), kernel.mean(axis=0)
    return v10.mean(), math.sqrt(v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size)


def test_hand_worked_interval_is_clipped():
    # positives (0.35, 0.8), negatives (0.1, 0.4): V10 = (1/2, 1), V01 = (1, 1/2);
    # se^2 = var(1/2, 1) / 2 + var(1, 1/2) / 2 = 0.125; 0.75 + 1.96 * 0.354 > 1 is clipped
    res = delong_interval([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert res.auc == pytest.approx(0.75) and res.se == pytest.approx(math.sqrt(0.125))
    assert res.low == pytest.approx(0.75 - stats.norm.ppf(0.975) * math.sqrt(0.125))
    assert res.high == 1.0 and (res.n, res.positives) == (4, 2)


def test_matches_definition_and_mann_whitney_with_ties():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 90)
    s = np.round(y * 0.8 + rng.normal(0, 1, 90), 1)  # rounding makes ties
    res = delong_interval(y, s, confidence=0.9)
    auc, se = _definition(y, s)
    assert res.auc == pytest.approx(auc) and res.se == pytest.approx(se)
    u = stats.mannwhitneyu(s[y == 1], s[y == 0]).statistic
    assert res.auc == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()))
    z = stats.norm.ppf(0.95)
    assert (res.low, res.high) == pytest.approx((auc - z * se, auc + z * se))


def test_coverage_of_a_known_auc():
    # binormal scores with unit variances and mean gap d: the true AUC is Phi(d / sqrt(2))
    d, true_auc, covered = 1.0, stats.norm.cdf(1.0 / math.sqrt(2)), 0
    for seed in range(300):
        r = np.random.default_rng(seed)
        y = np.repeat([0, 1], 60)
        res = delong_interval(y, r.normal(0, 1, 120) + d * y)
        covered += res.low <= true_auc <= res.high
    assert 0.90 <= covered / 300 <= 0.99  # 95 % nominal; binomial sd 1.3 %


def test_needs_two_images_per_class():
    with pytest.raises(ValueError, match="at least two images of each class"):
        delong_interval([0, 1, 1], [0.1, 0.5, 0.7])
    with pytest.raises(ValueError, match=r"\(n,\)"):
        delong_interval([0, 0, 1, 1], [0.1, 0.5, 0.7])
