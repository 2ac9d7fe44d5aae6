"""Ignite/MONAI handlers for sharpness-aware training: rho schedules, sharpness statistics, true weights."""

from monai_sam.handlers.rho_schedule import RhoScheduleHandler
from monai_sam.handlers.sharpness_stats import (
    SharpnessStatsHandler,
    explain_negative_sharpness,
    mean_rho,
    sharpness_output_transform,
)
from monai_sam.handlers.true_weights import TrueWeightsHandler

__all__ = [
    "RhoScheduleHandler",
    "SharpnessStatsHandler",
    "TrueWeightsHandler",
    "explain_negative_sharpness",
    "mean_rho",
    "sharpness_output_transform",
]
