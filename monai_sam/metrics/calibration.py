"""Calibration of a binary probability: reliability bins, expected calibration error and Brier score.

A probability ``p`` of the positive class is calibrated when, among images scored ``p``, a fraction ``p``
is positive. :func:`reliability_bins` groups the images into ``n_bins`` equal-width bins of ``p`` (bin
``k`` holds ``k / B <= p < (k + 1) / B``, the last bin includes 1); the expected calibration error
(Naeini et al., AAAI 2015; Guo et al., ICML 2017) is the image-weighted mean gap between each bin's
fraction of positives and its mean probability, ``ECE = sum_k n_k / n * |frac_k - mean_k|``. It
depends on the binning (10 bins here by default) and is biased upwards for small sets. The Brier score
``mean((p - y)**2)`` needs no bins: 0 is perfect, 0.25 is what ``p = 0.5`` for every image scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ReliabilityBins", "brier_score", "expected_calibration_error", "reliability_bins"]

#: Bins of the reliability diagram and the ECE unless a caller says otherwise.
DEFAULT_BINS = 10


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width probability bins (:func:`reliability_bins`).

    Attributes:
        edges: ``n_bins + 1`` bin edges from 0 to 1.
        counts: images per bin.
        mean_probability: mean predicted probability per bin (``nan`` for an empty bin).
        fraction_positive: fraction of positive images per bin (``nan`` for an empty bin).
    """

    edges: np.ndarray
    counts: np.ndarray
    mean_probability: np.ndarray
    fraction_positive: np.ndarray

    def to_list(self) -> list[dict[str, float]]:
        """Per bin: ``low``, ``high``, ``n``, ``mean_probability`` and ``fraction_positive`` (JSON-ready)."""
        return [
            {
                "low": float(self.edges[k]),
                "high": float(self.edges[k + 1]),
                "n": int(self.counts[k]),
                "mean_probability": float(self.mean_probability[k]),
                "fraction_positive": float(self.fraction_positive[k]),
            }
            for k in range(self.counts.size)
        ]


def _binary(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` as 0/1 floats and ``probs`` as floats in [0, 1], both ``(n,)``."""
    y = np.asarray(labels).astype(bool).astype(np.float64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"labels and probabilities differ in length: {y.size} vs {p.size}")
    if p.size and (np.isnan(p).any() or p.min() < 0.0 or p.max() > 1.0):
        raise ValueError("probabilities must lie in [0, 1] (no NaN)")
    return y, p


def reliability_bins(labels, probs, n_bins: int = DEFAULT_BINS) -> ReliabilityBins:
    """Group the images into ``n_bins`` equal-width bins of the predicted probability.

    Args:
        labels: 0/1 or booleans, shape ``(n,)``; 1 marks the positive class.
        probs: predicted probabilities of the positive class, shape ``(n,)``.
        n_bins: number of bins on ``[0, 1]``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    y, p = _binary(labels, probs)
    index = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(index, weights=p, minlength=n_bins) / counts
        frac = np.bincount(index, weights=y, minlength=n_bins) / counts
    return ReliabilityBins(np.linspace(0.0, 1.0, n_bins + 1), counts, mean_p, frac)


def expected_calibration_error(labels, probs, n_bins: int = DEFAULT_BINS) -> float:
    """``sum_k n_k / n * |frac_k - mean_k|`` over equal-width bins (``nan`` without images).

    Args:
        labels: 0/1 or booleans, shape ``(n,)``.
        probs: predicted probabilities of the positive class, shape ``(n,)``.
        n_bins: number of equal-width bins on ``[0, 1]``.
    """
    bins = reliability_bins(labels, probs, n_bins)
    n = int(bins.counts.sum())
    if n == 0:
        return float("nan")
    filled = bins.counts > 0
    gaps = np.abs(bins.fraction_positive[filled] - bins.mean_probability[filled])
    return float((bins.counts[filled] * gaps).sum() / n)


def brier_score(labels, probs) -> float:
    """Mean squared difference between the predicted probability and the 0/1 label (``nan`` if empty)."""
    y, p = _binary(labels, probs)
    return float(np.mean((p - y) ** 2)) if y.size else float("nan")
