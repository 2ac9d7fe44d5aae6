"""DeLong's variance of ROC AUCs: the interval of one AUC and the test of two correlated AUCs.

* :func:`delong_interval`: a binary AUC with its DeLong standard error and a Wald confidence interval.
* :func:`delong_paired`: DeLong's test of the difference of two correlated ROC AUCs on the same images
  (binary, or the macro one-vs-rest AUC of several classes), with Sun and Xu's mid-rank algorithm.

Both treat the images as independent draws given their class (DeLong's two-sample design); images of
one patient are not, so with several images per patient the intervals are somewhat too narrow (a
patient-level bootstrap, :func:`monai_sam.metrics.cluster_bootstrap`, is not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["DeLongInterval", "DeLongResult", "delong_interval", "delong_paired"]

_NAN = float("nan")


@dataclass(frozen=True)
class DeLongResult:
    """Outcome of :func:`delong_paired`.

    Attributes:
        n: number of images.
        auc_a, auc_b: the two AUCs (macro one-vs-rest for several classes).
        difference: ``auc_a - auc_b``.
        se: DeLong standard error of the difference.
        statistic: ``difference / se``.
        p_value: two-sided normal p-value (1.0 when both score sets rank the images identically).
    """

    n: int
    auc_a: float
    auc_b: float
    difference: float
    se: float
    statistic: float
    p_value: float


@dataclass(frozen=True)
class DeLongInterval:
    """Outcome of :func:`delong_interval`.

    Attributes:
        n: number of images.
        positives: images of the positive class.
        auc: the ROC AUC (Mann-Whitney, ties count one half).
        se: DeLong standard error of the AUC.
        low, high: the Wald interval ``auc -+ z * se``, clipped to ``[0, 1]``.
        confidence: the interval's confidence level.
    """

    n: int
    positives: int
    auc: float
    se: float
    low: float
    high: float
    confidence: float


def _placements(scores: np.ndarray, positive: np.ndarray) -> tuple[float, np.ndarray]:
    """AUC of ``scores`` for ``positive`` and each image's DeLong placement value.

    Sun and Xu (IEEE SPL 21, 2014): with mid-ranks over all images (``r``), over positives only
    and over negatives only, a positive's placement ``V10 = (r - r_pos) / n_neg`` is the fraction
    of negatives it outranks (ties count half) and a negative's ``V01 = 1 - (r - r_neg) / n_pos``
    the fraction of positives that outrank it.
    """
    pos, neg = scores[positive], scores[~positive]
    m, k = pos.size, neg.size
    ranks = stats.rankdata(scores)
    placement = np.empty(scores.size)
    placement[positive] = (ranks[positive] - stats.rankdata(pos)) / k
    placement[~positive] = 1.0 - (ranks[~positive] - stats.rankdata(neg)) / m
    return float(placement[positive].mean()), placement


def _auc_influence(labels: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> tuple[float, np.ndarray]:
    """(macro) AUC and each image's first-order contribution to it (DeLong's structural components).

    For class ``c`` against the rest, a positive contributes ``(V10 - auc_c) / n_pos`` and a
    negative ``(V01 - auc_c) / n_neg``; the macro AUC's contribution is the mean over classes.
    """
    if scores.ndim == 1:
        auc, place = _placements(scores, labels == classes[-1])
        positive = labels == classes[-1]
        return auc, np.where(positive, (place - auc) / positive.sum(), (place - auc) / (~positive).sum())
    aucs, influence = [], np.zeros(labels.size)
    for c in classes:
        positive = labels == c
        auc, place = _placements(scores[:, c], positive)
        aucs.append(auc)
        influence += np.where(positive, (place - auc) / positive.sum(), (place - auc) / (~positive).sum())
    return float(np.mean(aucs)), influence / len(classes)


def _stratified_variance(contributions: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> float:
    """``sum_c n_c / (n_c - 1) * sum((psi - mean_c(psi))**2)`` over the images of each class ``c``.

    For one AUC this is DeLong's ``S10 / m + S01 / n``; images are independent given their class.
    """
    variance = 0.0
    for c in classes:
        group = contributions[labels == c]
        variance += group.size / (group.size - 1) * float(((group - group.mean()) ** 2).sum())
    return max(variance, 0.0)


def delong_interval(labels, scores, confidence: float = 0.95) -> DeLongInterval:
    """Binary ROC AUC with DeLong's standard error and a Wald interval (DeLong et al., Biometrics 1988).

    ``se**2 = S10 / m + S01 / n``, with ``S10`` the sample variance of the ``m`` positives' placement
    values (the fraction of negatives each outranks, ties one half) and ``S01`` that of the ``n``
    negatives'. The interval is ``auc -+ z * se`` clipped to ``[0, 1]`` (as pROC's ``ci.auc``).

    Args:
        labels: 0/1 or booleans, shape ``(n,)``; 1 marks the positive class.
        scores: scores where larger means more positive, shape ``(n,)``.
        confidence: the interval's two-sided confidence level.

    Raises:
        ValueError: shapes differ, or either class has fewer than two images (no variance).
    """
    y = np.asarray(labels).astype(bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != y.shape:
        raise ValueError(f"labels and scores must both be (n,), got {y.shape} and {s.shape}")
    if min(y.sum(), (~y).sum()) < 2:
        raise ValueError(
            f"DeLong's interval needs at least two images of each class; got {int(y.sum())} positive(s) "
            f"and {int((~y).sum())} negative(s)"
        )
    classes = np.array([False, True])
    auc, influence = _auc_influence(y, s, classes)
    se = math.sqrt(_stratified_variance(influence, y, classes))
    half = float(stats.norm.ppf(0.5 + confidence / 2.0)) * se
    return DeLongInterval(
        int(y.size), int(y.sum()), auc, se, max(auc - half, 0.0), min(auc + half, 1.0), confidence
    )


def delong_paired(labels, scores_a, scores_b) -> DeLongResult:
    """DeLong's test for the difference of two correlated AUCs measured on the same images.

    Binary (DeLong, DeLong and Clarke-Pearson, Biometrics 44, 1988): ``scores_*`` are ``(n,)``
    scores of the positive class (the larger label). The variance of ``auc_a - auc_b`` is
    ``S10 / m + S01 / n`` of the paired placement values, which is computed here as the
    class-stratified variance of each image's contribution to the difference.

    Multi-class macro AUC: ``scores_*`` are ``(n, C)`` class probabilities and the AUC is the mean
    of the C one-vs-rest AUCs. Every image enters every one-vs-rest AUC (as a positive for its own
    class, a negative for the others); its contribution to the macro difference is the mean of its
    per-class contributions, and the variance is the sum over classes of
    ``n_c / (n_c - 1) * sum((psi - mean_c(psi))**2)`` over the images of class ``c`` (images are
    independent given their class, as DeLong's two-sample design assumes). With two classes and
    probabilities summing to one this equals the binary test.

    Args:
        labels: integer labels ``(n,)``; every class (0..C-1 for the macro version) needs at least
            two images.
        scores_a, scores_b: scores of the two models on the same images, in the same order.

    Raises:
        ValueError: shapes differ, or a class has fewer than two images.
    """
    y = np.asarray(labels).reshape(-1)
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape or a.shape[0] != y.size or a.ndim not in (1, 2):
        raise ValueError(f"scores must both be (n,) or (n, C) with n = {y.size}, got {a.shape} and {b.shape}")
    classes = np.unique(y) if a.ndim == 1 else np.arange(a.shape[1])
    counts = np.array([(y == c).sum() for c in classes])
    if (a.ndim == 1 and classes.size != 2) or (counts < 2).any():
        raise ValueError(
            f"every class needs at least two images (binary: exactly two classes); counts {counts}"
        )
    auc_a, infl_a = _auc_influence(y, a, classes)
    auc_b, infl_b = _auc_influence(y, b, classes)
    diff = auc_a - auc_b
    se = math.sqrt(_stratified_variance(infl_a - infl_b, y, classes))
    if se < 1e-15:
        return DeLongResult(int(y.size), auc_a, auc_b, diff, se, _NAN, 1.0 if abs(diff) < 1e-15 else 0.0)
    z = diff / se
    return DeLongResult(int(y.size), auc_a, auc_b, diff, se, z, float(2.0 * stats.norm.sf(abs(z))))
