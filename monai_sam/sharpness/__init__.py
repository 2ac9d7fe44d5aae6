"""Sharpness measures and loss-landscape plots for trained MONAI networks.

All measures evaluate the same loss ``L(w)`` (see :mod:`monai_sam.sharpness.objective`) on a data
loader or one batch, in eval mode by default, and leave the model exactly as they found it.
"""

from monai_sam.sharpness.directions import filter_normalized_direction, normalize_filters
from monai_sam.sharpness.hessian import (
    HessianEigenResult,
    HessianTraceResult,
    hessian_top_eigenvalue,
    hessian_trace,
)
from monai_sam.sharpness.landscape import Landscape1D, Landscape2D, loss_landscape_1d, loss_landscape_2d
from monai_sam.sharpness.model_state import ModelStateGuard
from monai_sam.sharpness.objective import LossObjective, ObjectiveOptions
from monai_sam.sharpness.plotting import plot_landscape_1d, plot_landscape_2d
from monai_sam.sharpness.worst_case import (
    SharpnessResult,
    adaptive_sharpness,
    sam_sharpness,
    worst_case_sharpness,
)

__all__ = [
    "HessianEigenResult",
    "HessianTraceResult",
    "Landscape1D",
    "Landscape2D",
    "LossObjective",
    "ModelStateGuard",
    "ObjectiveOptions",
    "SharpnessResult",
    "adaptive_sharpness",
    "filter_normalized_direction",
    "hessian_top_eigenvalue",
    "hessian_trace",
    "loss_landscape_1d",
    "loss_landscape_2d",
    "normalize_filters",
    "plot_landscape_1d",
    "plot_landscape_2d",
    "sam_sharpness",
    "worst_case_sharpness",
]
