"""Calibration metrics against hand-worked values and an independent per-bin computation."""

import numpy as np
import pytest

from monai_sam.metrics import brier_score, expected_calibration_error, reliability_bins


def test_hand_worked_ece_and_brier():
    # bins of width 0.1: [0.05] y=0 -> gap 0.05; [0.15, 0.15] y=(0, 1) -> frac 0.5, gap 0.35;
    # [0.85] y=1 -> gap 0.15; [0.95] y=1 -> gap 0.05. ECE = (0.05 + 2 * 0.35 + 0.15 + 0.05) / 5 = 0.19
    y = [0, 0, 1, 1, 1]
    p = [0.05, 0.15, 0.15, 0.85, 0.95]
    assert expected_calibration_error(y, p) == pytest.approx(0.19)
    # Brier: (0.05^2 + 0.15^2 + 0.85^2 + 0.15^2 + 0.05^2) / 5 = 0.7725 / 5
    assert brier_score(y, p) == pytest.approx(0.1545)
    bins = reliability_bins(y, p)
    assert bins.counts.tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 1, 1]
    assert bins.fraction_positive[1] == 0.5 and np.isnan(bins.mean_probability[4])
    rows = bins.to_list()
    assert rows[1] == {"low": 0.1, "high": 0.2, "n": 2, "mean_probability": 0.15, "fraction_positive": 0.5}


def test_bin_edges_and_bin_count():
    # 1.0 belongs to the last bin; k / B opens bin k
    bins = reliability_bins([1, 0, 1], [1.0, 0.3, 0.0], n_bins=10)
    assert bins.counts[9] == 1 and bins.counts[3] == 1 and bins.counts[0] == 1
    # one bin: ECE is |mean label - mean probability|
    assert expected_calibration_error([1, 0, 0, 0], [0.9, 0.1, 0.2, 0.2], n_bins=1) == pytest.approx(0.1)


def test_ece_matches_an_independent_loop_and_detects_miscalibration():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    y = rng.uniform(0, 1, 20000) < p  # calibrated by construction
    assert expected_calibration_error(y, p) < 0.02
    skewed = p**3  # under-confident for positives
    reference = 0.0
    for k in range(15):
        inside = (skewed >= k / 15) & ((skewed < (k + 1) / 15) if k < 14 else (skewed <= 1))
        if inside.any():
            reference += inside.sum() / p.size * abs(y[inside].mean() - skewed[inside].mean())
    assert expected_calibration_error(y, skewed, n_bins=15) == pytest.approx(reference)
    assert reference > 0.15
    assert brier_score(y, skewed) > brier_score(y, p)


def test_bad_probabilities_are_named():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([0, 1], [0.2, 1.3])
    with pytest.raises(ValueError, match="differ in length"):
        brier_score([0, 1, 1], [0.2, 0.3])
    assert np.isnan(expected_calibration_error([], []))
