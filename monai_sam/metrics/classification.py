"""Multi-class classification metrics on numpy arrays.

Every function takes integer labels ``y_true`` of shape ``(n,)`` and either integer predictions
``y_pred`` of shape ``(n,)`` or class probabilities ``probs`` of shape ``(n, C)``. The definitions
follow scikit-learn's (so numbers are comparable with published tables) without depending on it:

* balanced accuracy is the mean recall over the classes present in ``y_true``;
* macro F1 averages the per-class F1 over the classes present in ``y_true`` or ``y_pred``;
* ROC AUC is the Mann-Whitney statistic with tied scores counted as one half; the macro one-vs-rest
  AUC averages the classes whose AUC is defined. A class absent from ``y_true`` (or the only class
  present) has an undefined AUC: it is reported as ``nan`` with a warning instead of raising, because
  small test folds of imbalanced data do lose a class now and then.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata


def _labels(y_true: Sequence[int] | np.ndarray, name: str = "y_true") -> np.ndarray:
    """Return ``y_true`` as a 1-D int64 array, rejecting non-integer or multi-dimensional input."""
    arr = np.asarray(y_true)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one integer label per sample), got shape {arr.shape}")
    if arr.size and not np.all(np.equal(np.mod(arr, 1), 0)):
        raise ValueError(f"{name} must hold integer class indices")
    return arr.astype(np.int64)


def _check_pair(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> None:
    """Check matching lengths and that every label lies in ``[0, num_classes)``."""
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.shape} vs {y_pred.shape}")
    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} holds labels outside [0, {num_classes}): {np.unique(arr).tolist()}")


def _probabilities(probs: np.ndarray, n: int) -> np.ndarray:
    """Return ``probs`` as a float64 ``(n, C)`` array, with a clear error for the wrong shape."""
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"probs must have shape (n_samples={n}, n_classes), got {arr.shape}")
    return arr


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Confusion matrix ``cm[i, j]`` = number of samples of true class ``i`` predicted as ``j``.

    Args:
        y_true: integer labels, shape ``(n,)``.
        y_pred: integer predictions, shape ``(n,)``.
        num_classes: number of classes ``C``; the result is ``(C, C)``.
    """
    y_true, y_pred = _labels(y_true), _labels(y_pred, "y_pred")
    _check_pair(y_true, y_pred, num_classes)
    flat = y_true * num_classes + y_pred
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy(y_true, y_pred) -> float:
    """Fraction of correct predictions (``nan`` for an empty input)."""
    y_true, y_pred = _labels(y_true), _labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.shape} vs {y_pred.shape}")
    return float(np.mean(y_true == y_pred)) if y_true.size else float("nan")


def per_class_sensitivity_specificity(y_true, y_pred, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest sensitivity (recall) and specificity of every class.

    Args:
        y_true: integer labels, shape ``(n,)``.
        y_pred: integer predictions, shape ``(n,)``.
        num_classes: number of classes ``C``.

    Returns:
        Two arrays of shape ``(C,)``. A class with no positive (negative) samples has a ``nan``
        sensitivity (specificity).
    """
    cm = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    tp = np.diag(cm)
    positives = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    negatives = cm.sum() - positives
    tn = negatives - (predicted - tp)
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = np.where(positives > 0, tp / positives, np.nan)
        specificity = np.where(negatives > 0, tn / negatives, np.nan)
    return sensitivity, specificity


def balanced_accuracy(y_true, y_pred, num_classes: int) -> float:
    """Mean recall over the classes present in ``y_true``."""
    sensitivity, _ = per_class_sensitivity_specificity(y_true, y_pred, num_classes)
    present = ~np.isnan(sensitivity)
    return float(sensitivity[present].mean()) if present.any() else float("nan")


def macro_f1(y_true, y_pred, num_classes: int) -> float:
    """Unweighted mean F1 over the classes present in ``y_true`` or ``y_pred``."""
    cm = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    tp = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # (tp + fp) + (tp + fn)
    present = denom > 0
    if not present.any():
        return float("nan")
    return float(np.mean(2.0 * tp[present] / denom[present]))


def roc_auc_binary(y_binary, scores) -> float:
    """Area under the ROC curve for a binary problem, ``nan`` when one class is missing.

    Computed as the Mann-Whitney U statistic divided by ``n_pos * n_neg`` with average ranks, so
    tied scores count one half, exactly like the trapezoidal ROC area.

    Args:
        y_binary: booleans or 0/1, shape ``(n,)``; ``1`` marks the positive class.
        scores: scores where larger means more positive, shape ``(n,)``.
    """
    pos = np.asarray(y_binary).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if pos.shape != scores.shape or pos.ndim != 1:
        raise ValueError(
            f"y_binary and scores must be 1-D of equal length, got {pos.shape} and {scores.shape}"
        )
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    u_stat = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_stat / (n_pos * n_neg))


def roc_curve(y_binary, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve of a binary problem: false and true positive rates at every distinct threshold.

    The points run from ``(0, 0)`` (threshold above every score) to ``(1, 1)``; tied scores form one
    diagonal step, so the trapezoidal area equals :func:`roc_auc_binary`.

    Args:
        y_binary: booleans or 0/1, shape ``(n,)``; ``1`` marks the positive class.
        scores: scores where larger means more positive, shape ``(n,)``.

    Returns:
        ``(fpr, tpr, thresholds)``; ``thresholds[0]`` is ``inf``. Rates are ``nan`` when a class is missing.
    """
    pos = np.asarray(y_binary).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if pos.shape != scores.shape or pos.ndim != 1:
        raise ValueError(
            f"y_binary and scores must be 1-D of equal length, got {pos.shape} and {scores.shape}"
        )
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_pos = scores[order], pos[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_scores) != 0), sorted_scores.size - 1]
    tps = np.r_[0, np.cumsum(sorted_pos)[last_of_tie]].astype(np.float64)
    fps = np.r_[0, np.cumsum(~sorted_pos)[last_of_tie]].astype(np.float64)
    thresholds = np.r_[np.inf, sorted_scores[last_of_tie]]
    with np.errstate(invalid="ignore", divide="ignore"):
        return fps / fps[-1], tps / tps[-1], thresholds


def macro_roc_auc(y_true, probs, class_names: Sequence[str] | None = None) -> tuple[float, np.ndarray]:
    """Macro one-vs-rest ROC AUC and the per-class AUCs.

    Args:
        y_true: integer labels, shape ``(n,)``.
        probs: class probabilities or scores, shape ``(n, C)``.
        class_names: optional names used in the warning about undefined classes.

    Returns:
        ``(macro_auc, per_class_auc)``. A class absent from ``y_true`` (or the only class present)
        gets ``nan`` and a ``RuntimeWarning``; the macro mean is over the defined classes, and is
        ``nan`` if none is defined.
    """
    y_true = _labels(y_true)
    probs = _probabilities(probs, y_true.size)
    num_classes = probs.shape[1]
    _check_pair(y_true, y_true, num_classes)
    per_class = np.array([roc_auc_binary(y_true == c, probs[:, c]) for c in range(num_classes)])
    undefined = np.flatnonzero(np.isnan(per_class))
    if undefined.size:
        names = [class_names[i] if class_names else str(i) for i in undefined]
        warnings.warn(
            f"ROC AUC undefined for class(es) {names}: absent from y_true or the only class present; "
            "macro AUC averages the remaining classes",
            RuntimeWarning,
            stacklevel=2,
        )
    defined = per_class[~np.isnan(per_class)]
    return (float(defined.mean()) if defined.size else float("nan")), per_class


def cross_entropy(y_true, probs, eps: float = 1e-12) -> float:
    """Mean negative log-probability of the true class (probabilities clipped to ``[eps, 1]``)."""
    y_true = _labels(y_true)
    probs = _probabilities(probs, y_true.size)
    _check_pair(y_true, y_true, probs.shape[1])
    if not y_true.size:
        return float("nan")
    p_true = np.clip(probs[np.arange(y_true.size), y_true], eps, 1.0)
    return float(-np.log(p_true).mean())


def class_index(class_names: Sequence[str], name: str) -> int | None:
    """Index of ``name`` in ``class_names`` (case-insensitive), or ``None`` if absent."""
    lowered = [c.lower() for c in class_names]
    return lowered.index(name.lower()) if name.lower() in lowered else None


def malignant_sensitivity_specificity(
    y_true, y_pred, class_names: Sequence[str], positive: str = "malignant"
) -> tuple[float, float]:
    """Sensitivity and specificity of ``positive`` (by name) against all other classes pooled.

    Benign and normal images wrongly called malignant lower the specificity; a malignant image
    called benign or normal lowers the sensitivity, which is the clinically costly error.

    Raises:
        ValueError: if ``positive`` is not one of ``class_names``.
    """
    idx = class_index(class_names, positive)
    if idx is None:
        raise ValueError(f"class {positive!r} not in class_names {list(class_names)}")
    sensitivity, specificity = per_class_sensitivity_specificity(y_true, y_pred, len(class_names))
    return float(sensitivity[idx]), float(specificity[idx])


def classification_metrics(y_true, probs, class_names: Sequence[str]) -> dict[str, float]:
    """All study metrics from labels and class probabilities, as a flat JSON-friendly dict.

    Args:
        y_true: integer labels, shape ``(n,)``.
        probs: class probabilities, shape ``(n, C)`` with ``C == len(class_names)``; the predicted
            class is the arg-max.
        class_names: class names in label order; if one is ``"malignant"`` (any case), the
            malignant-versus-rest sensitivity and specificity are included.

    Returns:
        ``n``, ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``macro_auc``, ``cross_entropy``,
        ``malignant_sensitivity`` and ``malignant_specificity`` (``nan`` without a malignant class)
        and, per class ``k``, ``sensitivity_k``, ``specificity_k`` and ``auc_k``.
    """
    y_true = _labels(y_true)
    probs = _probabilities(probs, y_true.size)
    if probs.shape[1] != len(class_names):
        raise ValueError(f"probs has {probs.shape[1]} columns but class_names has {len(class_names)} names")
    num_classes = len(class_names)
    y_pred = probs.argmax(axis=1) if y_true.size else y_true
    macro_auc, per_auc = macro_roc_auc(y_true, probs, class_names)
    sens, spec = per_class_sensitivity_specificity(y_true, y_pred, num_classes)
    out: dict[str, float] = {
        "n": float(y_true.size),
        "accuracy": accuracy(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred, num_classes),
        "macro_f1": macro_f1(y_true, y_pred, num_classes),
        "macro_auc": macro_auc,
        "cross_entropy": cross_entropy(y_true, probs),
    }
    mal = class_index(class_names, "malignant")
    out["malignant_sensitivity"] = float(sens[mal]) if mal is not None else float("nan")
    out["malignant_specificity"] = float(spec[mal]) if mal is not None else float("nan")
    for k, name in enumerate(class_names):
        out[f"sensitivity_{name}"] = float(sens[k])
        out[f"specificity_{name}"] = float(spec[k])
        out[f"auc_{name}"] = float(per_auc[k])
    return out
