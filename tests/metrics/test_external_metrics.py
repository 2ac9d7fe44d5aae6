"""Binary score rules, the internal operating point and the external-set metrics (AUC, intervals, groups)."""

import math

import numpy as np
import pytest
from scipy import stats

from monai_sam.metrics import (
    OperatingPoint,
    binary_score,
    brier_score,
    delong_interval,
    expected_calibration_error,
    external_validation_metrics,
    sensitivity_specificity,
    youden_operating_point,
)


def test_score_rules():
    probs = np.array([[0.2, 0.6, 0.2], [0.1, 0.1, 0.8], [0.0, 0.0, 1.0]])  # benign, malignant, normal
    conditional = binary_score(probs, positive=1, mapped=[0, 1])
    assert conditional[:2] == pytest.approx([0.75, 0.5])  # 0.6 / 0.8 and 0.1 / 0.2: P(malignant | lesion)
    assert conditional[2] == 0.5  # no mass on a mapped class: uninformative
    assert binary_score(probs, 1, [0, 1], rule="raw") == pytest.approx([0.6, 0.1, 0.0])
    # every class mapped: the rules agree
    assert binary_score(probs, 1, [0, 1, 2]) == pytest.approx(binary_score(probs, 1, [0, 1, 2], "raw"))
    with pytest.raises(ValueError, match="unknown score rule"):
        binary_score(probs, 1, [0, 1], rule="softmax")
    with pytest.raises(ValueError, match="positive"):
        binary_score(probs, 2, [0, 1])


def test_youden_threshold_sits_between_scores_and_prefers_specificity():
    op = youden_operating_point([0, 0, 1, 1], [0.1, 0.3, 0.35, 0.8], "internal validation split")
    assert op.threshold == pytest.approx(0.325) and (op.sensitivity, op.specificity) == (1.0, 1.0)
    assert (op.rule, op.source, op.n, op.positives) == ("youden", "internal validation split", 4, 2)
    # J ties: cut above 0.9 (sens 1/2, spec 1) and above 0.2 (sens 1, spec 1/2) both give J = 1/2
    tie = youden_operating_point([1, 0, 1, 0], [0.9, 0.5, 0.3, 0.1], "val")
    assert tie.threshold == pytest.approx(0.7) and tie.specificity == 1.0 and tie.sensitivity == 0.5
    # J computed independently over every midpoint threshold
    rng = np.random.default_rng(0)
    y, s = rng.integers(0, 2, 60), rng.uniform(size=60)
    best = max(
        (sum(s[y == 1] >= t) / sum(y) + sum(s[y == 0] < t) / sum(y == 0) - 1, t)
        for t in np.r_[(np.sort(s)[1:] + np.sort(s)[:-1]) / 2]
    )
    op = youden_operating_point(y, s, "val")
    assert op.sensitivity + op.specificity - 1 == pytest.approx(best[0])


def test_no_operating_point_without_both_classes():
    op = youden_operating_point([1, 1], [0.2, 0.9], "internal validation split")
    assert math.isnan(op.threshold) and "no negative image" in op.note
    assert all(math.isnan(v) for v in sensitivity_specificity([0, 1], [0.1, 0.9], op.threshold))


def test_sensitivity_specificity_at_a_given_threshold():
    y, s = [1, 1, 1, 0, 0], [0.9, 0.6, 0.4, 0.6, 0.1]
    assert sensitivity_specificity(y, s, 0.6) == pytest.approx((2 / 3, 1 / 2))  # >= calls positive
    assert sensitivity_specificity(y, s, 0.61) == pytest.approx((1 / 3, 1.0))


def _synthetic(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    scores = 1 / (1 + np.exp(-(1.2 * (2 * y - 1) + rng.normal(0, 1.3, n))))
    cases = [f"c{i // 2}" for i in range(n)]
    groups = np.where(np.arange(n) % 3 == 0, "scanner A", "scanner B").astype(object)
    return y, scores, cases, groups


def test_external_metrics_agree_with_independent_computations():
    y, s, cases, groups = _synthetic()
    groups[:4] = "tiny"  # make one group single-class below
    y[:4] = 1
    op = OperatingPoint(0.62, "youden", "internal validation split", 50, 20, 0.8, 0.7)
    out = external_validation_metrics(y, s, op, cases, groups, n_resamples=300, seed=1)
    u = stats.mannwhitneyu(s[y == 1], s[y == 0]).statistic
    assert out["auc"] == pytest.approx(u / (y.sum() * (1 - y).sum()))
    ref = delong_interval(y, s)
    assert out["auc_ci"] == pytest.approx([ref.low, ref.high]) and out["auc_se"] == pytest.approx(ref.se)
    # the operating point is applied as given, not re-chosen on the external images
    assert out["sensitivity"] == pytest.approx(np.mean(s[y == 1] >= 0.62))
    assert out["specificity"] == pytest.approx(np.mean(s[y == 0] < 0.62))
    assert out["operating_point"]["source"] == "internal validation split"
    assert out["ece"] == pytest.approx(expected_calibration_error(y, s)) and out["ece_bins"] == 10
    assert out["brier"] == pytest.approx(brier_score(y, s))
    assert sum(b["n"] for b in out["reliability"]) == len(y)
    boot = out["bootstrap"]
    assert boot["unit"] == "case (patient)" and boot["clusters"] == 100 and boot["resamples"] == 300
    for key in ("auc", "sensitivity", "specificity", "ece", "brier"):
        low, high = boot["intervals"][key]
        assert low <= out[key] <= high, key
    rows = {r["group"]: r for r in out["groups"]}
    assert set(rows) == {"scanner A", "scanner B", "tiny"}
    assert math.isnan(rows["tiny"]["auc"]) and "one class" in rows["tiny"]["note"]
    a = rows["scanner A"]
    member = groups == "scanner A"
    assert a["n"] == member.sum() and a["positives"] == y[member].sum()
    assert a["auc_ci_low"] < a["auc"] < a["auc_ci_high"]
    assert a["auc"] == pytest.approx(
        stats.mannwhitneyu(s[member & (y == 1)], s[member & (y == 0)]).statistic
        / (y[member].sum() * (1 - y[member]).sum())
    )
    again = external_validation_metrics(y, s, op, cases, groups, n_resamples=300, seed=1)
    assert again["bootstrap"] == boot  # deterministic for the seed


def test_patient_bootstrap_is_wider_than_the_image_bootstrap_for_duplicated_images():
    # every patient contributes two identical images: the image bootstrap thinks it has twice the data
    y, s, _, _ = _synthetic(n=120, seed=3)
    y2, s2 = np.repeat(y, 2), np.repeat(s, 2)
    cases = np.repeat(np.arange(120), 2)
    op = OperatingPoint(0.5, "fixed", "test", 0, 0, math.nan, math.nan)
    patient = external_validation_metrics(y2, s2, op, cases, n_resamples=1000)["bootstrap"]["intervals"][
        "auc"
    ]
    image = external_validation_metrics(y2, s2, op, None, n_resamples=1000)["bootstrap"]["intervals"]["auc"]
    assert (patient[1] - patient[0]) > 1.2 * (image[1] - image[0])  # about sqrt(2) wider


def test_one_class_external_set_is_an_error():
    op = OperatingPoint(0.5, "youden", "val", 4, 2, 1.0, 1.0)
    with pytest.raises(ValueError, match="AUC is undefined: all 3 images are positive"):
        external_validation_metrics([1, 1, 1], [0.2, 0.5, 0.9], op)
    with pytest.raises(ValueError, match="cases has 2 entries for 3 labels"):
        external_validation_metrics([1, 0, 1], [0.2, 0.5, 0.9], op, cases=["a", "b"])
