"""Evaluation metrics that work on plain numpy arrays (no torch, no scikit-learn).

``classification``: multi-class metrics from probabilities; ``delong``: DeLong's AUC interval and paired
test; ``calibration``: ECE, Brier score, reliability bins; ``bootstrap``: the patient-level (cluster)
bootstrap; ``external``: the binary score, operating point and metrics of an external test set.
"""

from monai_sam.metrics.bootstrap import ClusterBootstrap, cluster_bootstrap
from monai_sam.metrics.calibration import (
    ReliabilityBins,
    brier_score,
    expected_calibration_error,
    reliability_bins,
)
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
from monai_sam.metrics.delong import DeLongInterval, DeLongResult, delong_interval, delong_paired
from monai_sam.metrics.external import (
    SCORE_RULES,
    OperatingPoint,
    binary_score,
    external_validation_metrics,
    sensitivity_specificity,
    youden_operating_point,
)

__all__ = [
    "SCORE_RULES",
    "ClusterBootstrap",
    "DeLongInterval",
    "DeLongResult",
    "OperatingPoint",
    "ReliabilityBins",
    "accuracy",
    "balanced_accuracy",
    "binary_score",
    "brier_score",
    "class_index",
    "classification_metrics",
    "cluster_bootstrap",
    "confusion_matrix",
    "cross_entropy",
    "delong_interval",
    "delong_paired",
    "expected_calibration_error",
    "external_validation_metrics",
    "macro_f1",
    "macro_roc_auc",
    "malignant_sensitivity_specificity",
    "per_class_sensitivity_specificity",
    "reliability_bins",
    "roc_auc_binary",
    "roc_curve",
    "sensitivity_specificity",
    "youden_operating_point",
]
