"""The run-wide decisions of a sharpness-aware iteration, resolved once into a frozen :class:`StepPlan`.

Precision, the DDP mode and the optimizer's kind hold for a whole run; :class:`SharpnessAwareIteration
<monai_sam.engines.SharpnessAwareIteration>` resolves them on the first iteration and again only when a
setting they were resolved from changes, so an iteration only reads them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from monai_sam.engines.distributed import all_reduce_mean, no_sync
from monai_sam.engines.precision import PrecisionPlan
from monai_sam.optimizers.base import SharpnessAwareOptimizer

__all__ = ["DDP_LAST_PASS", "DDP_LOCAL", "DDP_SYNCED", "PassScopes", "StepPlan"]

# DDP modes: where the passes all-reduce (docs/monai.md; a method declares its own in the registry).
DDP_SYNCED = "synced"  # every pass synchronised by DDP: one global perturbation
DDP_LAST_PASS = "last_pass"  # passes before the last inside no_sync; final gradient == last pass gradient
DDP_LOCAL = "local"  # every pass inside no_sync, then one all-reduce of the combined gradient


@dataclass(frozen=True)
class StepPlan:
    """What every iteration of a run does the same way.

    Attributes:
        settings: the engine's, the optimizer's and the iteration's settings it was resolved from; a
            change in any of them resolves a new plan.
        precision: autocast and GradScaler of the passes.
        sharpness_aware: the optimizer is a monai-sam method (else MONAI's single pass runs).
        ddp: the ``DistributedDataParallel`` module behind the network, or None.
        ddp_mode: where the passes all-reduce (:data:`DDP_SYNCED`, :data:`DDP_LAST_PASS`,
            :data:`DDP_LOCAL`); None without DDP.
    """

    settings: tuple[Any, ...]
    precision: PrecisionPlan
    sharpness_aware: bool
    ddp: DistributedDataParallel | None = None
    ddp_mode: str | None = None

    def pass_scopes(self, optimizer: SharpnessAwareOptimizer) -> PassScopes:
        """The DDP scopes of the passes of the optimizer's coming step.

        Args:
            optimizer: the method (its ``num_passes`` now, and whether it consumes the passes' losses).
        """
        return PassScopes(self.ddp, self.ddp_mode, optimizer)


class PassScopes:
    """Where the passes of one step all-reduce under DDP (see the DDP section of docs/monai.md).

    Args:
        module: the DDP module, or None.
        mode: the plan's DDP mode.
        optimizer: the method; its ``num_passes`` is read now, for this step.
    """

    def __init__(
        self, module: DistributedDataParallel | None, mode: str | None, optimizer: SharpnessAwareOptimizer
    ) -> None:
        self.module = module
        self.mode = mode
        self.num_passes = int(optimizer.num_passes)
        self._average_losses = mode == DDP_SYNCED and optimizer.needs_loss

    def pass_scope(self, k: int) -> contextlib.AbstractContextManager[Any]:
        """``no_sync()`` around pass ``k`` (forward and backward) when that pass must stay local.

        Args:
            k: the pass index.
        """
        local = self.mode == DDP_LOCAL or (self.mode == DDP_LAST_PASS and k < self.num_passes - 1)
        return no_sync(self.module, local)

    def loss_for_optimizer(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss handed to perturb/unperturb: averaged over ranks when the passes are synchronised.

        Args:
            loss: this rank's detached loss of the pass just done.
        """
        if not self._average_losses or self.module is None:
            return loss
        return all_reduce_mean(loss, self.module.process_group)
