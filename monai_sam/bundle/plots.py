"""The bundle's figures, moved.

Kept so that configs users copied, which name ``monai_sam.bundle.plots.<name>``, still resolve; new configs
and code import from :mod:`monai_sam.handlers` (the handlers) and :mod:`monai_sam.visualize` (the drawing).
"""

from monai_sam.handlers.classification_plots import ClassificationPlots
from monai_sam.handlers.training_curves import TrainingCurves
from monai_sam.visualize import (
    plot_binary_roc,
    plot_confusion_matrix,
    plot_reliability,
    plot_roc_curves,
    plot_training_curves,
)

__all__ = [
    "ClassificationPlots",
    "TrainingCurves",
    "plot_binary_roc",
    "plot_confusion_matrix",
    "plot_reliability",
    "plot_roc_curves",
    "plot_training_curves",
]
