"""CR-SAM: Wu, Luo, Wunsch, "CR-SAM: Curvature Regularized Sharpness-Aware Minimization" (AAAI 2024)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.base import BACKUP, CLEAN_GRAD, SharpnessAwareOptimizer
from monai_sam.optimizers.functional import scale_by, zero_non_finite_

__all__ = ["CRSAM"]

PLUS_GRAD = "crsam_plus_grad"  # peak: g+ = grad at w + e


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

    def _after_pass(self, k: int, loss: Tensor | None) -> None:
        if k == 0:
            self._ascend(keep_clean=True)
            return
        # Pass 1 (at w + e) done: keep g+, move to w - e with e recomputed from g0 bit-identically.
        params, _ = self._grads()
        self._stash(PLUS_GRAD, params)
        for group in self.param_groups:
            members = [p for p in group["params"] if BACKUP in self.method_state.get(p, {})]
            if not members:
                continue
            e = scale_by(
                [self.method_state[p][CLEAN_GRAD] for p in members], self._ascent_inv_norm * group["rho"]
            )
            zero_non_finite_(e)
            self._move_to_backup_plus(members, e, alpha=-1.0)

    def _combine(self, loss: Tensor | None) -> None:
        params, (clean, plus), minus = self._aligned(self._take(CLEAN_GRAD), self._take(PLUS_GRAD))
        index = {id(p): i for i, p in enumerate(params)}
        for group in self.param_groups:
            rows = [index[id(p)] for p in group["params"] if id(p) in index]
            if not rows:
                continue
            gamma, beta = group["gamma"], group["beta"]
            out = [minus[i] for i in rows]
            # (1 + gamma + beta) g+ + (gamma - beta) g- - 2 gamma g0, written into the g- buffer.
            torch._foreach_mul_(out, gamma - beta)
            torch._foreach_add_(out, [plus[i] for i in rows], alpha=1.0 + gamma + beta)
            torch._foreach_add_(out, [clean[i] for i in rows], alpha=-2.0 * gamma)
        del self._ascent_inv_norm
