"""GSAM: Zhuang et al., "Surrogate Gap Guided Sharpness-Aware Minimization" (ICLR 2022)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.base import SharpnessAwareOptimizer
from monai_sam.optimizers.combination import gsam_combine_
from monai_sam.optimizers.functional import global_dot, joint_norm, with_fp64_fallback

__all__ = ["GSAM"]


class GSAM(SharpnessAwareOptimizer):
    """Surrogate-gap guided SAM: final gradient ``gp - alpha * g_perp``.

    ``g_perp = g0 - cos(g0, gp) * ||g0|| * gp / (||gp|| + eps)`` is the part of the clean gradient
    orthogonal to the perturbed one, with ``cos = <g0, gp> / (||g0|| ||gp|| + eps)`` (the eps placements of
    the official PyTorch port). ``alpha = 0`` is SAM. The rho schedule (rho proportional to the learning
    rate) is :class:`~monai_sam.optimizers.GSAMRhoScheduler`; without it rho is constant. Two passes;
    peak buffers: weight backup and g0.

    Args:
        params: parameters or param-group dicts.
        base_optimizer: optimizer class (built with ``base_kwargs``) or a ready instance.
        rho: neighbourhood radius (>= 0).
        alpha: weight of the surrogate-gap term (>= 0; per group).
        eps: added to the norms.
        interval: perturb only every ``interval``-th step.
        start_step: late-phase mode: steps before this one are plain base steps (one pass).
        base_kwargs: keyword arguments of the base optimizer.
    """

    non_negative = ("rho", "alpha")
    keeps_clean_grad = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[Optimizer] | Optimizer = torch.optim.SGD,
        rho: float = 0.05,
        alpha: float = 0.4,
        *,
        eps: float = 1e-12,
        interval: int = 1,
        start_step: int = 0,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(
            params,
            base_optimizer,
            hyperparameters={"rho": rho, "alpha": alpha},
            eps=eps,
            interval=interval,
            start_step=start_step,
            **base_kwargs,
        )

    def _combine(self, loss: Tensor | None) -> None:
        params, (clean,), perturbed = self._aligned(self.clean_grad.take())
        if not params:
            return
        # g_par = parallel * gp; in fp64 where the fp32 products overflow (gradients above ~1e19)
        parallel = with_fp64_fallback(lambda dtype: self._parallel(clean, perturbed, dtype))
        # gp - alpha * (g0 - parallel * gp) = (1 + alpha * parallel) gp - alpha g0, in .grad: no temporary
        lookup = {id(p): g0 for p, g0 in zip(params, clean)}
        for group in self.param_groups:
            members = [p for p in group["params"] if id(p) in lookup]
            gsam_combine_(
                [p.grad for p in members], [lookup[id(p)] for p in members], group["alpha"], parallel
            )

    def _parallel(self, clean: list[Tensor], perturbed: list[Tensor], dtype: torch.dtype | None) -> Tensor:
        """``cos(g0, gp) * ||g0|| / (||gp|| + eps)``, reduced in ``dtype`` (default: at least fp32)."""
        device = self.last_grad_norm.device
        clean_norm = joint_norm(clean, device, dtype)
        perturbed_norm = joint_norm(perturbed, device, dtype)
        cosine = global_dot(clean, perturbed, device, dtype) / (clean_norm * perturbed_norm + self.eps)
        return cosine * clean_norm / (perturbed_norm + self.eps)
