"""The bundle's ignite metrics, moved.

Kept so that configs users copied, which name ``monai_sam.bundle.metrics.<name>``, still resolve; new
configs and code import from :mod:`monai_sam.handlers`.
"""

from monai_sam.handlers.classification_metrics import ClassificationReport, ClassificationScore
from monai_sam.handlers.output_transforms import probabilities_and_labels

__all__ = [
    "ClassificationReport",
    "ClassificationScore",
    "probabilities_and_labels",
]
