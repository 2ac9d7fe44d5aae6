"""Figures of classification results as PNG files (matplotlib on the Agg backend).

Drawing lives outside the handlers and the metrics, as MONAI keeps it in ``monai.visualize``: the
functions draw from numpy arrays and :mod:`monai_sam.metrics` results, so the bundles' handlers, the
external evaluation and scripts share them. ``training_curves``: losses and the validation metric per
epoch; ``roc``: per-class and binary ROC curves; ``confusion``: the confusion matrix; ``reliability``: the
reliability diagram. matplotlib is imported on the first drawing, not on import.
"""

from monai_sam.visualize.confusion import plot_confusion_matrix
from monai_sam.visualize.reliability import plot_reliability
from monai_sam.visualize.roc import plot_binary_roc, plot_roc_curves
from monai_sam.visualize.training_curves import plot_training_curves

__all__ = [
    "plot_binary_roc",
    "plot_confusion_matrix",
    "plot_reliability",
    "plot_roc_curves",
    "plot_training_curves",
]
