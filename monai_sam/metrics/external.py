"""Binary metrics of a classifier on an external test set (another hospital's images).

An external set often has fewer classes than the model: BUS-BRA has benign and malignant lesions, our
models also predict ``normal``. The external task is then *positive versus the other mapped classes*
(malignant versus benign), scored from the model's class probabilities by :func:`binary_score`:

* ``conditional`` (the default): the positive class's probability renormalised over the model classes
  the external set maps to, ``p(malignant) / (p(benign) + p(malignant))``: the model's P(malignant | the
  image shows one of the mapped classes), i.e. P(malignant | a lesion) for BUS-BRA. It ignores how much
  probability the model puts on a class the external set cannot contain (``normal``), so a lesion that
  looks "normal" to the model is not thereby called benign.
* ``raw``: the positive class's probability as it is, ``p(malignant)``. Its ranking differs from the
  conditional one whenever the models put different mass on the unmapped classes.

With every model class mapped both rules agree. :func:`external_validation_metrics` then gives the AUC
with DeLong's interval, sensitivity and specificity at an operating point chosen on *internal* data
(:func:`youden_operating_point`), calibration (ECE, Brier, reliability bins), patient-level bootstrap
intervals (:func:`~monai_sam.metrics.cluster_bootstrap`) and a per-group (e.g. per-scanner) table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from monai_sam.metrics.bootstrap import cluster_bootstrap
from monai_sam.metrics.calibration import (
    DEFAULT_BINS,
    brier_score,
    expected_calibration_error,
    reliability_bins,
)
from monai_sam.metrics.classification import roc_auc_binary, roc_curve
from monai_sam.metrics.delong import delong_interval

__all__ = [
    "SCORE_RULES",
    "OperatingPoint",
    "binary_score",
    "external_validation_metrics",
    "sensitivity_specificity",
    "youden_operating_point",
]

#: How a binary score is made from class probabilities (see the module docstring).
SCORE_RULES: tuple[str, ...] = ("conditional", "raw")

_NAN = float("nan")


def binary_score(probs, positive: int, mapped: Sequence[int], rule: str = "conditional") -> np.ndarray:
    """The positive class's score of every image, from the model's class probabilities.

    Args:
        probs: class probabilities, shape ``(n, C)``.
        positive: the positive class's column (e.g. ``malignant``).
        mapped: the columns of the model classes the external set maps to (``positive`` among them).
        rule: ``conditional``: ``p[positive] / sum(p[mapped])`` (an image whose mapped probabilities
            are all exactly 0 gets 0.5: the model says nothing about it); ``raw``: ``p[positive]``.

    Returns:
        Scores in ``[0, 1]``, shape ``(n,)``.
    """
    if rule not in SCORE_RULES:
        raise ValueError(f"unknown score rule {rule!r}; choose from {SCORE_RULES}")
    p = np.asarray(probs, dtype=np.float64)
    mapped = sorted({int(c) for c in mapped})
    if p.ndim != 2 or positive not in mapped or not all(0 <= c < p.shape[1] for c in mapped):
        raise ValueError(
            f"probs must be (n, C) and positive ({positive}) one of the mapped columns {mapped} "
            f"in range(C); got probs of shape {p.shape}"
        )
    if rule == "raw":
        return p[:, positive].copy()
    total = p[:, mapped].sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, p[:, positive] / safe, 0.5)


def sensitivity_specificity(labels, scores, threshold: float) -> tuple[float, float]:
    """Sensitivity and specificity when ``score >= threshold`` calls an image positive.

    ``nan`` where the class it divides by is absent, or the threshold is ``nan``.
    """
    y = np.asarray(labels).astype(bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if math.isnan(threshold):
        return _NAN, _NAN
    called = s >= threshold
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    sens = float((called & y).sum() / n_pos) if n_pos else _NAN
    spec = float((~called & ~y).sum() / n_neg) if n_neg else _NAN
    return sens, spec


@dataclass(frozen=True)
class OperatingPoint:
    """A decision threshold and where it was chosen (:func:`youden_operating_point`).

    Attributes:
        threshold: images with ``score >= threshold`` are called positive (``nan``: none chosen).
        rule: how it was chosen (``youden``: the maximum of Youden's J = sensitivity + specificity - 1).
        source: the images it was chosen on, e.g. ``internal validation split``; never the external set.
        n, positives: their number and positives.
        sensitivity, specificity: at ``threshold`` on those images.
        note: why no threshold was chosen, or why it calls every image negative (empty otherwise).
    """

    threshold: float
    rule: str
    source: str
    n: int
    positives: int
    sensitivity: float
    specificity: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return asdict(self)


def youden_operating_point(labels, scores, source: str) -> OperatingPoint:
    """The threshold that maximises Youden's J (sensitivity + specificity - 1) on ``labels``/``scores``.

    Call it on internal validation images, never on the set the threshold is then applied to (that
    would make the sensitivity and specificity optimistic). Among ties of J the highest threshold wins
    (the most specific). The threshold lies halfway between the lowest score called positive and the
    next lower score, so it classifies ``scores`` as the cut does while leaving equal room on both
    sides for new images. Without positives or negatives no threshold is chosen (``nan``, with a note);
    when no cut beats chance (J <= 0 everywhere) the threshold is ``+inf`` (every image negative; JSON
    writes it as null), with a note.

    Args:
        labels: 0/1 or booleans, shape ``(n,)``; 1 marks the positive class.
        scores: scores where larger means more positive, shape ``(n,)``.
        source: what the images are, recorded with the threshold.
    """
    y = np.asarray(labels).astype(bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        missing = "positive" if n_pos == 0 else "negative"
        note = f"no operating point: the {source} has no {missing} image of the mapped classes"
        return OperatingPoint(_NAN, "youden", source, int(y.size), n_pos, _NAN, _NAN, note)
    fpr, tpr, thresholds = roc_curve(y, s)
    best = int(np.argmax(tpr - fpr))  # first maximum: the highest threshold among ties
    threshold = thresholds[best] if best in (0, thresholds.size - 1) else thresholds[best : best + 2].mean()
    note = ""
    if best == 0:
        note = f"Youden's J is at most 0 on the {source}: every image is called negative (threshold +inf)"
    return OperatingPoint(
        float(threshold), "youden", source, int(y.size), n_pos, tpr[best], 1.0 - fpr[best], note
    )


def _check_both_classes(y: np.ndarray) -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        only = "positive" if n_pos else "negative"
        raise ValueError(
            f"the AUC is undefined: all {y.size} images are {only}; an external set needs images of the "
            "positive class and of at least one other mapped class"
        )


def _group_row(name: str, y: np.ndarray, s: np.ndarray, threshold: float, confidence: float) -> dict:
    """n, positives, AUC with DeLong's interval (n/a with one class), sensitivity, specificity."""
    n_pos = int(y.sum())
    auc, low, high, note = _NAN, _NAN, _NAN, ""
    if 0 < n_pos < y.size:
        auc = roc_auc_binary(y, s)
        if min(n_pos, y.size - n_pos) >= 2:
            interval = delong_interval(y, s, confidence)
            low, high = interval.low, interval.high
    else:
        note = "one class only: AUC undefined"
    sens, spec = sensitivity_specificity(y, s, threshold)
    return {
        "group": name,
        "n": int(y.size),
        "positives": n_pos,
        "negatives": int(y.size) - n_pos,
        "auc": auc,
        "auc_ci_low": low,
        "auc_ci_high": high,
        "sensitivity": sens,
        "specificity": spec,
        "note": note,
    }


def external_validation_metrics(
    labels,
    scores,
    operating_point: OperatingPoint,
    cases: Sequence | None = None,
    groups: Sequence | None = None,
    *,
    confidence: float = 0.95,
    n_bins: int = DEFAULT_BINS,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Everything reported for one external set, as a JSON-ready dict (NaN for undefined values).

    * ``auc`` (Mann-Whitney) with ``auc_se`` and ``auc_ci`` (DeLong, Wald interval clipped to [0, 1];
      images treated as independent);
    * ``sensitivity`` and ``specificity`` at ``operating_point`` (chosen on internal data), which is
      included;
    * ``ece`` (``n_bins`` equal-width bins), ``brier`` and the ``reliability`` bins;
    * ``bootstrap``: percentile intervals of AUC, sensitivity, specificity, ECE and Brier from resampling
      ``cases`` (patients) with replacement, all images of a drawn case together (each image its own
      case when ``cases`` is None);
    * ``groups``: one row per group (e.g. scanner): n, positives, AUC with DeLong's interval (``nan``
      and a note for a group with one class), sensitivity, specificity.

    Args:
        labels: 0/1 or booleans, shape ``(n,)``; 1 marks the positive class.
        scores: binary scores in [0, 1] (:func:`binary_score`), shape ``(n,)``.
        operating_point: the threshold and its source.
        cases: patient id of every image (``None``: images are independent).
        groups: group name of every image (``None``: no per-group table).
        confidence: level of every interval.
        n_bins: bins of the ECE and the reliability diagram.
        n_resamples: patient-bootstrap resamples.
        seed: patient-bootstrap seed (deterministic).

    Raises:
        ValueError: the images hold one class only (the AUC is undefined), or lengths differ.
    """
    y = np.asarray(labels).astype(bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    for name, values in (("scores", s), ("cases", cases), ("groups", groups)):
        if values is not None and len(values) != y.size:
            raise ValueError(f"{name} has {len(values)} entries for {y.size} labels")
    _check_both_classes(y)
    threshold = operating_point.threshold
    sens, spec = sensitivity_specificity(y, s, threshold)

    def statistic(idx: np.ndarray) -> dict[str, float]:
        yi, si = y[idx], s[idx]
        boot_sens, boot_spec = sensitivity_specificity(yi, si, threshold)
        return {
            "auc": roc_auc_binary(yi, si),
            "sensitivity": boot_sens,
            "specificity": boot_spec,
            "ece": expected_calibration_error(yi, si, n_bins),
            "brier": brier_score(yi, si),
        }

    clusters = list(cases) if cases is not None else list(range(y.size))
    boot = cluster_bootstrap(clusters, statistic, n_resamples, confidence, seed)
    delong = delong_interval(y, s, confidence) if min(y.sum(), (~y).sum()) >= 2 else None
    group_rows = []
    if groups is not None:
        names = np.asarray([str(g) for g in groups])
        for name in sorted(set(names)):
            member = names == name
            group_rows.append(_group_row(name, y[member], s[member], threshold, confidence))
    return {
        "n": int(y.size),
        "positives": int(y.sum()),
        "negatives": int((~y).sum()),
        "auc": boot.estimates["auc"],
        "auc_se": delong.se if delong else _NAN,
        "auc_ci": [delong.low, delong.high] if delong else [_NAN, _NAN],
        "auc_ci_method": "DeLong (Wald, clipped to [0, 1]; images independent)",
        "confidence": confidence,
        "operating_point": operating_point.to_dict(),
        "sensitivity": sens,
        "specificity": spec,
        "ece": boot.estimates["ece"],
        "ece_bins": n_bins,
        "brier": boot.estimates["brier"],
        "reliability": reliability_bins(y, s, n_bins).to_list(),
        "bootstrap": {
            "unit": "case (patient)" if cases is not None else "image (no case ids)",
            "clusters": boot.n_clusters,
            "resamples": n_resamples,
            "seed": seed,
            "intervals": {k: list(v) for k, v in boot.intervals.items()},
            "valid_resamples": boot.valid,
        },
        "groups": group_rows,
    }
