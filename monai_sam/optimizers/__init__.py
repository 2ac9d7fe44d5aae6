"""Sharpness-aware optimizers as real ``torch.optim.Optimizer`` s.

All methods wrap a base optimizer (SGD, Adam, AdamW, ...) and share its param groups and state, so LR
schedulers, checkpointing and per-group settings work as with any torch optimizer. See ``docs/optimizers.md``.
"""

from monai_sam.optimizers.asam import ASAM
from monai_sam.optimizers.base import SharpnessAwareOptimizer
from monai_sam.optimizers.bsam import BSAM, BSAMUpdate
from monai_sam.optimizers.crsam import CRSAM
from monai_sam.optimizers.detsam import DetSAM
from monai_sam.optimizers.factory import available_optimizers, create_optimizer
from monai_sam.optimizers.frobsam import FrobSAM
from monai_sam.optimizers.fsam import FSAM
from monai_sam.optimizers.gcsam import GCSAM
from monai_sam.optimizers.gsam import GSAM
from monai_sam.optimizers.looksam import LookSAM
from monai_sam.optimizers.msam import MSAM
from monai_sam.optimizers.perturbation_set import norm_parameters
from monai_sam.optimizers.registry import METHOD_REGISTRY, MethodInfo, canonical_name, find_method
from monai_sam.optimizers.rho_schedule import GSAMRhoScheduler
from monai_sam.optimizers.sam import SAM
from monai_sam.optimizers.ssam import SSAM
from monai_sam.optimizers.wrapping import wrap_optimizer
from monai_sam.optimizers.wsam import WSAM

__all__ = [
    "ASAM",
    "BSAM",
    "CRSAM",
    "FSAM",
    "GCSAM",
    "GSAM",
    "METHOD_REGISTRY",
    "MSAM",
    "SAM",
    "SSAM",
    "WSAM",
    "BSAMUpdate",
    "DetSAM",
    "FrobSAM",
    "GSAMRhoScheduler",
    "LookSAM",
    "MethodInfo",
    "SharpnessAwareOptimizer",
    "available_optimizers",
    "canonical_name",
    "create_optimizer",
    "find_method",
    "norm_parameters",
    "wrap_optimizer",
]
