"""Ignite/MONAI handlers, one per module as in ``monai.handlers``.

Sharpness-aware training: ``rho_schedule``, ``sharpness_stats``, ``true_weights``. The bundles' results:
``metrics_json_writer``, ``prediction_writer``, ``classification_plots``, ``training_curves``,
``progress_bar``; their ignite metrics: ``classification_metrics``; resuming and stopping:
``resume``, ``resume_state`` (state objects for a checkpoint's ``save_dict``), ``stop_at_epoch``; the test
evaluation after training: ``evaluation_after_training``. ``output_transforms``: what they read from
``engine.state.output``.
"""

from monai_sam.handlers.classification_metrics import ClassificationReport, ClassificationScore
from monai_sam.handlers.classification_plots import ClassificationPlots
from monai_sam.handlers.evaluation_after_training import TestAfterTraining
from monai_sam.handlers.metrics_json_writer import MetricsJSONWriter
from monai_sam.handlers.output_transforms import probabilities_and_labels, training_scalars
from monai_sam.handlers.prediction_writer import PredictionWriter
from monai_sam.handlers.progress_bar import EpochProgressBar
from monai_sam.handlers.resume import ResumeHandler, find_resume_checkpoint
from monai_sam.handlers.resume_state import RandomStreams, ValidationState
from monai_sam.handlers.rho_schedule import RhoScheduleHandler
from monai_sam.handlers.sharpness_stats import (
    SharpnessStatsHandler,
    explain_negative_sharpness,
    mean_rho,
    sharpness_output_transform,
)
from monai_sam.handlers.stop_at_epoch import StopAtEpoch
from monai_sam.handlers.training_curves import TrainingCurves
from monai_sam.handlers.true_weights import TrueWeightsHandler

__all__ = [
    "ClassificationPlots",
    "ClassificationReport",
    "ClassificationScore",
    "EpochProgressBar",
    "MetricsJSONWriter",
    "PredictionWriter",
    "RandomStreams",
    "ResumeHandler",
    "RhoScheduleHandler",
    "SharpnessStatsHandler",
    "StopAtEpoch",
    "TestAfterTraining",
    "TrainingCurves",
    "TrueWeightsHandler",
    "ValidationState",
    "explain_negative_sharpness",
    "find_resume_checkpoint",
    "mean_rho",
    "probabilities_and_labels",
    "sharpness_output_transform",
    "training_scalars",
]
