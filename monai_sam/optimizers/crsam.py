"""CR-SAM: Wu, Luo, Wunsch, "CR-SAM: Curvature Regularized Sharpness-Aware Minimization" (AAAI 2024)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.base import SharpnessAwareOptimizer
from monai_sam.optimizers.combination import crsam_combine_
from monai_sam.optimizers.functional import scale_by, zero_non_finite_
from monai_sam.optimizers.param_buffers import ParamBuffer

__all__ = ["CRSAM"]


class CRSAM(SharpnessAwareOptimizer):
    """Curvature-regularised SAM, official-code semantics: three passes at ``w``, ``w + e``, ``w - e``.

    ``e = rho * g0 / (||g0|| + eps)``; final gradient ``g+ + gamma * (g+ + g- - 2 g0) + beta * (g+ - g-)``:
    the gradient of ``L(w+e)`` plus a finite-difference curvature term (``~ rho^2 v^T H v``) and a slope
    term (``~ 2 rho ||g0||``). ``gamma = beta = 0`` is SAM. Weights move to ``w - e`` from the backup,
    never by subtracting ``2e``. Peak buffers: weight backup, g0 and g+.

    Args:
        params: parameters or param-group dicts.
        base_optimizer: optimizer class (built with ``base_kwargs``) or a ready instance.
        rho: neighbourhood radius (>= 0).
        gamma: curvature weight (>= 0).
        beta: slope (gradient-norm) weight (>= 0; 0.01 in the official training script, 0.1 in its class).
        eps: added to the norm.
        interval: perturb only every ``interval``-th step.
        start_step: late-phase mode: steps before this one are plain base steps (one pass).
        base_kwargs: keyword arguments of the base optimizer.
    """

    passes_per_step = 3

    non_negative = ("rho", "gamma", "beta")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[Optimizer] | Optimizer = torch.optim.SGD,
        rho: float = 0.1,
        gamma: float = 0.1,
        beta: float = 0.01,
        *,
        eps: float = 1e-12,
        interval: int = 1,
        start_step: int = 0,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(
            params,
            base_optimizer,
            hyperparameters={"rho": rho, "gamma": gamma, "beta": beta},
            eps=eps,
            interval=interval,
            start_step=start_step,
            **base_kwargs,
        )

    #: peak: g+, the gradient at w + e.
    plus_grad = ParamBuffer("crsam_plus_grad")

    def _after_pass(self, k: int, loss: Tensor | None) -> None:
        if k == 0:
            self._ascend(keep_clean=True)
            return
        # Pass 1 (at w + e) done: keep g+, move to w - e with e recomputed from g0 bit-identically.
        params, _ = self._grads()
        self.plus_grad.stash(params)
        for group in self.param_groups:
            members = [p for p in group["params"] if self._weights.holds(p)]
            if not members:
                continue
            e = scale_by(self.clean_grad.of(members), self._ascent_inv_norm * group["rho"])
            zero_non_finite_(e)
            self._weights.move_to_plus(members, e, alpha=-1.0)

    def _combine(self, loss: Tensor | None) -> None:
        params, (clean, plus), minus = self._aligned(self.clean_grad.take(), self.plus_grad.take())
        index = {id(p): i for i, p in enumerate(params)}
        for group in self.param_groups:
            rows = [index[id(p)] for p in group["params"] if id(p) in index]
            if not rows:
                continue
            crsam_combine_(
                [minus[i] for i in rows],
                [plus[i] for i in rows],
                [clean[i] for i in rows],
                group["gamma"],
                group["beta"],
            )
        del self._ascent_inv_norm
