"""LookSAM: Liu et al., "Towards Efficient and Scalable Sharpness-Aware Minimization" (CVPR 2022)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.base import SharpnessAwareOptimizer, check_step_option
from monai_sam.optimizers.combination import looksam_orthogonal_
from monai_sam.optimizers.functional import (
    global_dot,
    global_norm,
    joint_norm,
    with_fp64_fallback,
)
from monai_sam.optimizers.param_buffers import ParamBuffer

__all__ = ["LookSAM"]


class LookSAM(SharpnessAwareOptimizer):
    """LookSAM: full SAM every ``k`` steps, ONE pass in between reusing the stored direction.

    On a SAM step the base optimizer gets ``gp`` and ``gv = gp - (<g0, gp> / ||g0||^2) g0`` is kept
    (global vectors, as in the paper). On the other steps it gets ``g0 + alpha * (||g0|| / ||gv||) * gv``.
    A SAM step whose ``gv`` is not finite (skipped by a GradScaler) keeps the previous ``gv``.
    Average cost ``(k + 1) / k`` passes per step; ``k = 1`` is SAM. One persistent buffer (gv).

    Args:
        params: parameters or param-group dicts.
        base_optimizer: optimizer class (built with ``base_kwargs``) or a ready instance.
        rho: neighbourhood radius (>= 0).
        k: a SAM step every ``k`` steps (>= 1).
        alpha: weight of the reused direction (>= 0).
        eps: added to the norms.
        start_step: plain base-optimizer steps (one pass) before the first LookSAM step.
        base_kwargs: keyword arguments of the base optimizer.
    """

    non_negative = ("rho", "alpha")
    #: persistent: gv, the part of gp orthogonal to g0, from the last SAM step.
    orthogonal = ParamBuffer("looksam_gv", persistent=True)
    keeps_clean_grad = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[Optimizer] | Optimizer = torch.optim.SGD,
        *,
        rho: float = 0.1,
        k: int = 5,
        alpha: float = 0.7,
        eps: float = 1e-12,
        start_step: int = 0,
        **base_kwargs: Any,
    ) -> None:
        check_step_option("k", k, 1)
        super().__init__(
            params,
            base_optimizer,
            hyperparameters={"rho": rho, "alpha": alpha},
            eps=eps,
            interval=k,
            start_step=start_step,
            **base_kwargs,
        )
        self._gv_norm: Tensor | None = None

    def _combine(self, loss: Tensor | None) -> None:
        params, (clean,), perturbed = self._aligned(self.clean_grad.take())
        if not params:
            return
        device = self.last_grad_norm.device
        # <g0, gp> / ||g0||^2, in fp64 where the fp32 squares overflow (gradients above ~1e19)
        coef = with_fp64_fallback(
            lambda dtype: (
                global_dot(clean, perturbed, device, dtype)
                / (joint_norm(clean, device, dtype) ** 2 + self.eps)
            )
        )
        # gv = gp - coef * g0, computed in the g0 buffer, which becomes the persistent gv.
        looksam_orthogonal_(clean, perturbed, coef)
        gv_norm = global_norm(clean, device)
        # A non-finite gv (a step a GradScaler skips or base_step refuses) keeps the last finite one, so
        # the one-pass steps after it do not inherit inf/NaN. No foreach select exists: one where per tensor.
        finite = torch.isfinite(gv_norm)
        for p, gv in zip(params, clean):
            old = self.orthogonal.get(p)
            torch.where(finite, gv, old if old is not None else gv.new_zeros(()), out=gv)
            self.orthogonal[p] = gv
        last = self._gv_norm if self._gv_norm is not None else torch.zeros_like(gv_norm)
        self._gv_norm = torch.where(finite, gv_norm, last.to(gv_norm.device, gv_norm.dtype))

    def _one_pass_step(self, loss: Tensor | None) -> None:
        _, grads = self._grads()
        clean_norm = self._record_clean_norm(grads)
        if self._gv_norm is None:
            return
        ratio = clean_norm.to(self._gv_norm.dtype) / (self._gv_norm + self.eps)
        for group in self.param_groups:
            orthogonal = self.orthogonal
            members = [p for p in group["params"] if p.grad is not None and p in orthogonal]
            if members and group["alpha"] != 0:
                # g += (alpha * ratio) * gv without a temporary: addcmul with a 0-d device factor (no sync).
                factor = (ratio * group["alpha"]).to(members[0].grad.device, members[0].grad.dtype)
                gv = orthogonal.of(members)
                torch._foreach_addcmul_([p.grad for p in members], gv, [factor] * len(members))

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "gv_norm": self._gv_norm}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        super()._load_extra_state(extra)
        self._gv_norm = extra.get("gv_norm")
