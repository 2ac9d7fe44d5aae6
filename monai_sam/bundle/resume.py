"""Resuming a bundle training run, moved.

Kept so that configs users copied, which name ``monai_sam.bundle.resume.<name>``, still resolve; new configs
and code import from :mod:`monai_sam.handlers`.
"""

from monai_sam.handlers.resume import CHECKPOINT_PATTERN, ResumeHandler, find_resume_checkpoint
from monai_sam.handlers.resume_state import RandomStreams, ValidationState
from monai_sam.handlers.stop_at_epoch import StopAtEpoch

__all__ = [
    "CHECKPOINT_PATTERN",
    "RandomStreams",
    "ResumeHandler",
    "StopAtEpoch",
    "ValidationState",
    "find_resume_checkpoint",
]
