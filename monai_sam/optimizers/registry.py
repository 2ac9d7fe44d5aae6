"""The one declared registry of monai-sam's optimizers: a frozen record per sharpness-aware method.

Everything that builds or drives a method by name reads it: :func:`~monai_sam.optimizers.create_optimizer`
(which keyword goes to the method, which to the base optimizer), :func:`~monai_sam.optimizers.wrap_optimizer`
(what a bundle may pass as ``sam_hyperparameters``), ``monai-sam overlay`` (the default ``rho``) and
:func:`~monai_sam.optimizers.available_optimizers`. Adding a method means its file and one record here;
``tests/optimizers/test_registry.py`` checks every record against what its class does.

The traits describe a method built with its default options; two WSAM options change them on the instance
(``decouple=False`` makes its DDP mode ``"local"``, ``max_norm`` makes it inexact under a GradScaler), so a
driver holding an instance reads the instance (``optimizer.supports_grad_scaler``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import torch
from torch.optim import Optimizer

from monai_sam.optimizers.asam import ASAM
from monai_sam.optimizers.base import SharpnessAwareOptimizer
from monai_sam.optimizers.bsam import BSAM
from monai_sam.optimizers.crsam import CRSAM
from monai_sam.optimizers.detsam import DetSAM
from monai_sam.optimizers.frobsam import FrobSAM
from monai_sam.optimizers.fsam import FSAM
from monai_sam.optimizers.gcsam import GCSAM
from monai_sam.optimizers.gsam import GSAM
from monai_sam.optimizers.looksam import LookSAM
from monai_sam.optimizers.msam import MSAM
from monai_sam.optimizers.sam import SAM
from monai_sam.optimizers.ssam import SSAM
from monai_sam.optimizers.wsam import WSAM

__all__ = [
    "METHOD_REGISTRY",
    "PLAIN_OPTIMIZERS",
    "SHARED_KEYWORDS",
    "DDPMode",
    "MethodInfo",
    "canonical_name",
    "find_method",
]

#: Where the passes of one step all-reduce under DistributedDataParallel (docs/monai.md):
#: ``"last_pass"``: only the last pass (its gradient is the final one); ``"local"``: every pass stays on
#: its rank, then one all-reduce of the combined gradient; ``"synced"``: the method needs every pass
#: synchronised (``sync_perturbation=True``), because part of its update lives inside the optimizer.
DDPMode = Literal["last_pass", "local", "synced"]

#: options every method takes through the base class (SAM-ON: ``perturb="norm", model=net``).
SHARED_KEYWORDS = frozenset({"perturb", "model"})

#: the step options of the base class that a method's constructor names (LookSAM's ``k`` is its interval).
_STEP_OPTIONS = ("eps", "interval", "start_step")

#: plain torch optimizers, usable as names and as ``base``.
PLAIN_OPTIMIZERS: Mapping[str, type[Optimizer]] = MappingProxyType(
    {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
)


def canonical_name(name: str) -> str:
    """The form every optimizer name is compared in: lower case, without ``-`` and ``_``.

    Args:
        name: a method or optimizer name as a user writes it (``"CR-SAM"``, ``"cr_sam"``, ``"crsam"``).
    """
    return name.lower().replace("-", "").replace("_", "")


@dataclass(frozen=True)
class MethodInfo:
    """What one sharpness-aware method is and needs, declared once.

    Attributes:
        name: canonical name, as :func:`~monai_sam.optimizers.create_optimizer` takes it.
        cls: the optimizer class.
        default_rho: the constructor's default neighbourhood size.
        hyperparameters: the per-group keys the method writes into every param group (schedulers may
            change them per group).
        options: the constructor's other named keywords (not the base optimizer's).
        passes: forward/backward passes of a full step with the default options (1 on skipped steps).
        buffers: parameter-sized buffers beyond ``.grad`` and the base optimizer's state, as
            ``(peak, persistent)`` (docs/optimizers.md).
        aliases: other names that select it, in canonical form (spellings that differ only in case,
            ``-`` and ``_`` need none).
        needs_base_optimizer: False when the method has its own update and wraps nothing (bSAM).
        needs_model: True when the constructor needs the network itself; every method needs it only for
            ``perturb="norm"`` (SAM-ON).
        grad_scaler_exact: exact with gradients scaled by a GradScaler (never unscaled between passes).
        ddp_mode: where the passes all-reduce under DDP without ``sync_perturbation`` (:data:`DDPMode`).
        rests_at_true_weights: the parameters hold the true weights ``w`` between steps (MSAM rests at its
            ascent point instead: evaluate and save inside ``optimizer.true_weights()``).
    """

    name: str
    cls: type[SharpnessAwareOptimizer]
    default_rho: float
    hyperparameters: tuple[str, ...]
    options: tuple[str, ...]
    passes: int
    buffers: tuple[int, int]
    aliases: tuple[str, ...] = ()
    needs_base_optimizer: bool = True
    needs_model: bool = False
    grad_scaler_exact: bool = True
    ddp_mode: DDPMode = "local"
    rests_at_true_weights: bool = True

    @property
    def keywords(self) -> frozenset[str]:
        """The keywords the constructor names itself (hyperparameters and options)."""
        return frozenset(self.hyperparameters) | frozenset(self.options)

    @property
    def accepted_keywords(self) -> frozenset[str]:
        """Every keyword the method takes, including the shared SAM-ON ones."""
        return self.keywords | SHARED_KEYWORDS


def _record(
    cls: type[SharpnessAwareOptimizer],
    default_rho: float,
    hyperparameters: tuple[str, ...],
    passes: int,
    buffers: tuple[int, int],
    options: tuple[str, ...] = (),
    **traits: Any,
) -> MethodInfo:
    """A record whose canonical name is the class name's, with the base class's step options."""
    return MethodInfo(
        name=canonical_name(cls.__name__),
        cls=cls,
        default_rho=default_rho,
        hyperparameters=("rho", *hyperparameters),
        options=(*options, *_STEP_OPTIONS),
        passes=passes,
        buffers=buffers,
        **traits,
    )


#: every sharpness-aware method, in the order :func:`available_optimizers` lists them.
METHOD_REGISTRY: tuple[MethodInfo, ...] = (
    _record(SAM, 0.05, (), passes=2, buffers=(1, 0), ddp_mode="last_pass"),
    _record(ASAM, 0.5, ("eta",), passes=2, buffers=(1, 0), options=("adaptive",), ddp_mode="last_pass"),
    _record(GSAM, 0.05, ("alpha",), passes=2, buffers=(2, 0)),
    _record(
        WSAM, 0.05, ("gamma",), passes=2, buffers=(2, 0), options=("decouple", "max_norm"), ddp_mode="synced"
    ),
    _record(CRSAM, 0.1, ("gamma", "beta"), passes=3, buffers=(3, 0)),
    _record(SSAM, 0.05, (), passes=2, buffers=(1, 0)),
    _record(FrobSAM, 0.005, ("lam",), passes=3, buffers=(4, 0), options=("n_samples", "generator")),
    _record(
        DetSAM, 1.0, ("lam",), passes=2, buffers=(2, 0), options=("n_samples", "half_cube_len", "generator")
    ),
    MethodInfo(
        name="looksam",
        cls=LookSAM,
        default_rho=0.1,
        hyperparameters=("rho", "alpha"),
        options=("k", "eps", "start_step"),  # k is its interval
        passes=2,
        buffers=(2, 1),
    ),
    _record(
        MSAM,
        0.3,
        (),
        passes=1,
        buffers=(1, 1),
        options=("momentum_key",),
        ddp_mode="last_pass",
        rests_at_true_weights=False,
    ),
    _record(GCSAM, 0.05, (), passes=2, buffers=(1, 0), options=("norm",), ddp_mode="last_pass"),
    _record(
        FSAM,
        0.05,
        ("sigma", "lmbda"),
        passes=2,
        buffers=(3, 1),
        ddp_mode="last_pass",
        grad_scaler_exact=False,
    ),
    MethodInfo(
        name="bsam",
        cls=BSAM,
        default_rho=0.05,
        hyperparameters=("rho",),
        # its own Adam-like update's settings, then the base class's options it names itself
        options=(
            "num_data",
            "lr",
            "betas",
            "weight_decay",
            "damping",
            "s_init",
            "generator",
            *_STEP_OPTIONS,
            "perturb",
            "model",
        ),
        passes=3,
        buffers=(3, 0),
        needs_base_optimizer=False,
        grad_scaler_exact=False,
        ddp_mode="synced",
    ),
)

_BY_NAME: Mapping[str, MethodInfo] = MappingProxyType(
    {key: info for info in METHOD_REGISTRY for key in (info.name, *info.aliases)}
)


def find_method(name: str) -> MethodInfo | None:
    """The record of the sharpness-aware method ``name`` (any spelling or alias); None for other names.

    Args:
        name: a method name (``"sam"``, ``"CR-SAM"``, ...).
    """
    return _BY_NAME.get(canonical_name(name))
