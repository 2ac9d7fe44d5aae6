"""WSAM: Yue et al., "Sharpness-Aware Minimization Revisited: Weighted Sharpness as a Regularization Term"
(KDD 2023)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.base import SharpnessAwareOptimizer, check_range
from monai_sam.optimizers.combination import wsam_coupled_
from monai_sam.optimizers.functional import clip_by_global_norm_, global_norm, scale_by
from monai_sam.optimizers.param_buffers import ParamBuffer

__all__ = ["WSAM"]


class WSAM(SharpnessAwareOptimizer):
    """Weighted SAM: minimise ``L + a * (L_SAM - L)`` with ``a = gamma / (1 - gamma)``.

    * coupled (``decouple=False``): the base optimizer consumes ``a * gp + (1 - a) * g0``;
    * decoupled (default, the paper's recommendation): the base optimizer consumes ``g0``, then
      ``w <- w - lr * a * (gp - g0)`` SGD-style with the group's current lr. With a GradScaler the
      correction is applied in unscaled units and skipped when the scaler skips the step.

    ``gamma = 0.5`` is SAM (coupled, or decoupled with plain SGD); ``gamma = 0`` is the base optimizer.
    ``max_norm`` clips g0 and gp by global norm before they are combined, as the official code does.
    Two passes; peak buffers: weight backup and g0 (the decoupled sharpness reuses the gp buffer).

    Args:
        params: parameters or param-group dicts.
        base_optimizer: optimizer class (built with ``base_kwargs``) or a ready instance.
        rho: neighbourhood radius (>= 0).
        gamma: sharpness weight in [0, 1) (official default 0.88, paper range 0.8-0.95).
        decouple: apply the sharpness term after the base step (True) or mix it into the gradient.
        max_norm: clip g0 and gp to this global norm (official default 1.0); None disables. Clipping is in
            the units of the gradients, so it cannot be combined with a GradScaler.
        eps: added to the norm.
        interval: perturb only every ``interval``-th step.
        start_step: late-phase mode: steps before this one are plain base steps (one pass).
        base_kwargs: keyword arguments of the base optimizer.
    """

    #: peak: gp - g0 of the decoupled mode, applied after the base step (the gp buffer itself).
    sharpness = ParamBuffer("wsam_sharpness")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[Optimizer] | Optimizer = torch.optim.SGD,
        rho: float = 0.05,
        gamma: float = 0.9,
        decouple: bool = True,
        max_norm: float | None = None,
        *,
        eps: float = 1e-12,
        interval: int = 1,
        start_step: int = 0,
        **base_kwargs: Any,
    ) -> None:
        if max_norm is not None:
            check_range("max_norm", max_norm, 0.0, float("inf"), low_open=True)
        self.decouple = bool(decouple)
        self.has_post_step_correction = self.decouple
        self.max_norm = max_norm
        # Clipping thresholds are in unscaled units, which the scaled passes do not know.
        self.supports_grad_scaler = max_norm is None
        super().__init__(
            params,
            base_optimizer,
            hyperparameters={"rho": rho, "gamma": gamma},
            eps=eps,
            interval=interval,
            start_step=start_step,
            **base_kwargs,
        )

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        check_range("gamma", group["gamma"], 0.0, 1.0, high_open=True)

    @staticmethod
    def _weight(group: dict[str, Any]) -> float:
        weight: float = group["gamma"] / (1.0 - group["gamma"])
        return weight

    def _after_pass(self, k: int, loss: Tensor | None) -> None:
        self._ascend(keep_clean=True)
        if self.max_norm is not None:
            clip_by_global_norm_(self.clean_grad.of(self.clean_grad.holders()), self.max_norm)

    def _combine(self, loss: Tensor | None) -> None:
        params, (clean,), perturbed = self._aligned(self.clean_grad.take())
        if not params:
            return
        if self.max_norm is not None:
            clip_by_global_norm_(perturbed, self.max_norm)
        index = {id(p): i for i, p in enumerate(params)}
        for group in self.param_groups:
            rows = [index[id(p)] for p in group["params"] if id(p) in index]
            if not rows:
                continue
            a = self._weight(group)
            gp = [perturbed[i] for i in rows]
            g0 = [clean[i] for i in rows]
            if self.decouple:
                torch._foreach_sub_(gp, g0)  # the gp buffer becomes the sharpness gp - g0
                for i in rows:
                    self.sharpness[params[i]] = perturbed[i]
                    params[i].grad = clean[i]
            else:
                wsam_coupled_(gp, g0, a)
        if self.decouple:
            # A non-finite gp must make the step skippable although .grad only holds g0: poison one
            # gradient entry so a GradScaler sees it.
            sharpness = self.sharpness.of(params)
            self._poison_final_grad(~torch.isfinite(global_norm(sharpness)))

    def base_step(self, scaler: torch.amp.GradScaler | None = None, *, check_finite: bool = True) -> None:
        """See :meth:`SharpnessAwareOptimizer.base_step`; refuses a GradScaler when ``max_norm`` is set.

        Args:
            scaler: an optional GradScaler (not with ``max_norm``).
            check_finite: check the final gradient before stepping (without a GradScaler).
        """
        if self.max_norm is not None and scaler is not None and scaler.is_enabled():
            raise RuntimeError(
                "WSAM(max_norm=...) clips g0 and gp in unscaled units and cannot run with a GradScaler; "
                "use max_norm=None and clip after scaler.unscale_(opt.base_optimizer), or bf16 autocast."
            )
        super().base_step(scaler, check_finite=check_finite)

    def _after_base_step(self, skipped: Tensor | None, inv_scale: Tensor | None) -> None:
        if not self.decouple:
            return
        stored = self.sharpness.take()
        for group in self.param_groups:
            members = [p for p in group["params"] if p in stored]
            if not members:
                continue
            sharpness = [stored[p] for p in members]
            if inv_scale is not None:
                scale_by(sharpness, inv_scale, inplace=True)
                assert skipped is not None  # given with inv_scale
                for t in sharpness:  # no foreach masking op exists; only on the GradScaler path
                    t.masked_fill_(skipped, 0.0)
            lr = group["lr"]
            if isinstance(lr, Tensor):
                scale_by(sharpness, lr, inplace=True)
                lr = 1.0
            torch._foreach_add_(members, sharpness, alpha=-lr * self._weight(group))
