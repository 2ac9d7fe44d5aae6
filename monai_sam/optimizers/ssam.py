"""SSAM / StableSAM: Tan et al., "Stabilizing Sharpness-aware Minimization Through A Simple Renormalization
Strategy" (JMLR 2025). Not Sparse SAM (Mi et al.), which shares the acronym elsewhere."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.base import SharpnessAwareOptimizer
from monai_sam.optimizers.functional import global_norm, scale_by

__all__ = ["SSAM"]


class SSAM(SharpnessAwareOptimizer):
    """Stable SAM: SAM, then the final gradient is renormalised to the clean gradient's norm.

    ``g = (||g0|| / (||gp|| + eps)) * gp`` with one global scalar for all groups, kept on the device
    (the official code reads ``||g0||`` with ``.item()``, a host sync). Two passes, one peak buffer.

    Args:
        params: parameters or param-group dicts.
        base_optimizer: optimizer class (built with ``base_kwargs``) or a ready instance.
        rho: neighbourhood radius (>= 0).
        eps: added to the norms.
        interval: perturb only every ``interval``-th step.
        start_step: late-phase mode: steps before this one are plain base steps (one pass).
        base_kwargs: keyword arguments of the base optimizer.
    """

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

    def _combine(self, loss: Tensor | None) -> None:
        _, grads = self._grads()
        perturbed_norm = global_norm(grads, device=self._clean_norm.device)
        # max(norm, eps) rather than norm + eps: the ratio is exactly 1 when gp == g0 (rho = 0).
        ratio = self._clean_norm.to(perturbed_norm.dtype) / perturbed_norm.clamp_min(self.eps)
        scale_by(grads, ratio, inplace=True)
