"""SAM: Foret et al., "Sharpness-Aware Minimization for Efficiently Improving Generalization" (ICLR 2021)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.base import SharpnessAwareOptimizer

__all__ = ["SAM"]


class SAM(SharpnessAwareOptimizer):
    """Sharpness-Aware Minimization.

    Pass 0 gives ``g0``; the weights move to ``w + rho * g0 / (||g0|| + eps)`` (one global norm over every
    parameter with a gradient, all groups); pass 1 gives ``gp``; ``w`` is restored by copy and the base
    optimizer steps with ``gp``. Two passes; one peak parameter-sized buffer (the weight backup).

    Args:
        params: parameters or param-group dicts.
        base_optimizer: optimizer class (built with ``base_kwargs``) or a ready instance.
        rho: neighbourhood radius (>= 0); per group, so a scheduler may change it.
        eps: added to the norm in ``rho / (norm + eps)``.
        interval: perturb only every ``interval``-th step; the other steps take one pass.
        start_step: late-phase mode: steps before this one are plain base steps (one pass).
        base_kwargs: keyword arguments of the base optimizer (``lr``, ``momentum``, ...).

    Example::

        opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
        def closure():
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss
        loss = opt.step(closure)
    """

    final_grad_is_last_pass = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[Optimizer] | Optimizer = torch.optim.SGD,
        rho: float = 0.05,
        *,
        eps: float = 1e-12,
        interval: int = 1,
        start_step: int = 0,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(
            params,
            base_optimizer,
            hyperparameters={"rho": rho},
            eps=eps,
            interval=interval,
            start_step=start_step,
            **base_kwargs,
        )
