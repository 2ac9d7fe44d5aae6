"""Ignite/MONAI handlers for sharpness-aware training: rho schedules and sharpness statistics."""

from monai_sam.handlers.rho_schedule import RhoScheduleHandler
from monai_sam.handlers.sharpness_stats import (
    SharpnessStatsHandler,
    explain_negative_sharpness,
    mean_rho,
    sharpness_output_transform,
)

__all__ = [
    "RhoScheduleHandler",
    "SharpnessStatsHandler",
    "explain_negative_sharpness",
    "mean_rho",
    "sharpness_output_transform",
]
