"""Sharpness-aware training inside MONAI engines: iteration function, trainer, events."""

from monai_sam.engines.events import SharpnessEvents, SharpnessKeys
from monai_sam.engines.iteration import SharpnessAwareIteration
from monai_sam.engines.pass_context import BN_POLICIES
from monai_sam.engines.trainer import SharpnessAwareTrainer

__all__ = [
    "BN_POLICIES",
    "SharpnessAwareIteration",
    "SharpnessAwareTrainer",
    "SharpnessEvents",
    "SharpnessKeys",
]
