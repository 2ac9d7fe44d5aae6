"""F-SAM (Friendly SAM): Li et al., "Friendly Sharpness-Aware Minimization" (CVPR 2024)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.base import SharpnessAwareOptimizer, check_range
from monai_sam.optimizers.functional import all_finite, global_norm
from monai_sam.optimizers.param_buffers import ParamBuffer

__all__ = ["FSAM"]

MOMENTUM = "fsam_momentum"  # the key of m in method_state and in checkpoints


class FSAM(SharpnessAwareOptimizer):
    """Friendly SAM: the ascent direction is the clean gradient minus ``sigma`` times its moving average.

    As in the official code (nblt/F-SAM ``utils.py``): on the first step ``m = g0`` and the ascent uses
    ``g0``; afterwards the ascent uses ``d = g0 - sigma * m`` with the OLD ``m``, then
    ``m <- lmbda * m + (1 - lmbda) * g0``. ``e = rho * d / (||d|| + eps)`` (one global norm); the base
    optimizer steps with the perturbed gradient ``gp``. ``sigma = 0`` is SAM, ``rho = 0`` the base optimizer.

    The new ``m`` is committed when the step's last pass is consumed (:meth:`unperturb`), so a step abandoned
    with :meth:`end_passes`, or refused because a gradient was not finite, leaves ``m`` untouched. ``m`` is
    part of :meth:`state_dict`. Two passes; one
    persistent buffer (``m``) and two peak buffers (weight backup, the new ``m``). ``m`` collects gradients
    in the units they arrive in, so a GradScaler, whose scale changes, is not supported; under DDP ``m`` is
    per rank (the clean pass is local, as for SAM).

    Args:
        params: parameters or param-group dicts.
        base_optimizer: optimizer class (built with ``base_kwargs``) or a ready instance.
        rho: neighbourhood radius (>= 0; official CIFAR value 0.2 with SGD).
        sigma: weight of the moving average subtracted from g0 (>= 0; official default 1).
        lmbda: decay of the moving average, in [0, 1] (official class default 0.9; run.sh uses 0.6/0.95).
        eps: added to the norm in ``rho / (norm + eps)``.
        interval: perturb only every ``interval``-th step; the other steps take one pass (``m`` unchanged).
        start_step: late-phase mode: steps before this one are plain base steps (one pass).
        base_kwargs: keyword arguments of the base optimizer (``lr``, ``momentum``, ...).
    """

    final_grad_is_last_pass = True
    supports_grad_scaler = False
    non_negative = ("rho", "sigma")
    #: persistent: m, the moving average of past clean gradients.
    momentum = ParamBuffer(MOMENTUM, persistent=True)
    #: peak: this step's new m, committed when the step's passes complete.
    pending_momentum = ParamBuffer("fsam_pending_momentum")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[Optimizer] | Optimizer = torch.optim.SGD,
        rho: float = 0.05,
        sigma: float = 1.0,
        lmbda: float = 0.9,
        *,
        eps: float = 1e-12,
        interval: int = 1,
        start_step: int = 0,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(
            params,
            base_optimizer,
            hyperparameters={"rho": rho, "sigma": sigma, "lmbda": lmbda},
            eps=eps,
            interval=interval,
            start_step=start_step,
            **base_kwargs,
        )

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        check_range("lmbda", group["lmbda"], 0.0, 1.0)

    def _ascent_direction_(
        self, per_group: list[tuple[dict[str, Any], list[Tensor], list[Tensor]]], norm: Tensor
    ) -> Tensor:
        changed = False
        kept, pending_of = self.momentum, self.pending_momentum
        for group, params, grads in per_group:
            old = [(p, g) for p, g in zip(params, grads) if p in kept]
            for p, g in zip(params, grads):
                if p not in kept:  # first step of this parameter: m = g0
                    pending_of[p] = g.clone()
            if not old:
                continue
            changed = True
            members = [p for p, _ in old]
            clean = [g for _, g in old]
            momentum = kept.of(members)
            lmbda = group["lmbda"]
            # the new m = lmbda * m + (1 - lmbda) * g0 (official order), before g0 is overwritten
            pending = torch._foreach_mul(momentum, lmbda)
            torch._foreach_add_(pending, clean, alpha=1.0 - lmbda)
            for p, value in zip(members, pending):
                pending_of[p] = value
            # the direction d = g0 - sigma * (old m), in the gradient buffers
            if group["sigma"] != 0:
                torch._foreach_add_(clean, momentum, alpha=-group["sigma"])
        if not changed:
            return norm
        return global_norm([g for _, _, gs in per_group for g in gs], device=norm.device)

    def _combine(self, loss: Tensor | None) -> None:
        # A step whose g0 or gp is not finite (base_step refuses it) keeps the old m (zeros on a first
        # step): m never holds inf/NaN nor moves on a step not taken. No foreach select: one where per tensor.
        finite = ~self.last_perturbation_skipped & all_finite(
            self._grads()[1], device=self.last_grad_norm.device
        )
        kept = self.momentum
        for p, value in self.pending_momentum.take().items():
            old = kept.get(p)
            torch.where(finite, value, old if old is not None else value.new_zeros(()), out=value)
            kept[p] = value
