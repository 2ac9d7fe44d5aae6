"""Evaluation metrics that work on plain numpy arrays (no torch, no scikit-learn)."""

from monai_sam.metrics.classification import (
    accuracy,
    balanced_accuracy,
    class_index,
    classification_metrics,
    confusion_matrix,
    cross_entropy,
    macro_f1,
    macro_roc_auc,
    malignant_sensitivity_specificity,
    per_class_sensitivity_specificity,
    roc_auc_binary,
    roc_curve,
)

__all__ = [
    "accuracy",
    "balanced_accuracy",
    "class_index",
    "classification_metrics",
    "confusion_matrix",
    "cross_entropy",
    "macro_f1",
    "macro_roc_auc",
    "malignant_sensitivity_specificity",
    "per_class_sensitivity_specificity",
    "roc_auc_binary",
    "roc_curve",
]
