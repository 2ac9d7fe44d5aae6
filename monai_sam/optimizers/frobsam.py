"""Frob-SAM: the Frobenius-norm member of the universal sharpness class of Tahmasebi et al. (ICML 2024)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.functional import scale_by
from monai_sam.optimizers.param_buffers import ParamBuffer
from monai_sam.optimizers.zeroth_order import RandomPerturbationOptimizer

__all__ = ["FrobSAM"]


class FrobSAM(RandomPerturbationOptimizer):
    """Frob-SAM: ``g0 + (lam / rho^2) * Cov_i(L_i, g_i)`` over ``n`` Gaussian perturbations ``rho * delta_i``.

    ``Cov`` is the unbiased sample covariance ``(sum L_i g_i - (sum L_i)(sum g_i) / n) / (n - 1)`` of the
    perturbed losses and gradients (so ``n_samples >= 2``). Since ``grad Var[L] = 2 Cov(L, grad L)``, this
    descends ``L + (lam / 2 rho^2) Var_delta L(w + rho delta)``, a gradient-norm plus ``||H||_F^2`` penalty.
    ``1 + n_samples`` passes; peak buffers: weight backup, g0, the two sums. ``rho = 0`` or ``lam = 0``
    reduce to the base optimizer.

    Args:
        params: parameters or param-group dicts.
        base_optimizer: optimizer class (built with ``base_kwargs``) or a ready instance.
        rho: standard deviation of the perturbation (>= 0; official CIFAR value 0.005).
        lam: weight of the regulariser (>= 0; official CIFAR value 0.005).
        n_samples: perturbations per step (>= 2).
        generator: optional ``torch.Generator`` for the noise.
        eps: unused by the math, kept for API symmetry.
        interval: perturb only every ``interval``-th step.
        start_step: late-phase mode: steps before this one are plain base steps (one pass).
        base_kwargs: keyword arguments of the base optimizer.
    """

    non_negative = ("rho", "lam")

    #: peak: sum_i g_i over the samples.
    sum_grad = ParamBuffer("frobsam_sum_grad")
    #: peak: sum_i L_i g_i over the samples.
    sum_loss_grad = ParamBuffer("frobsam_sum_loss_grad")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[Optimizer] | Optimizer = torch.optim.SGD,
        rho: float = 0.005,
        lam: float = 0.005,
        n_samples: int = 2,
        *,
        generator: torch.Generator | None = None,
        eps: float = 1e-12,
        interval: int = 1,
        start_step: int = 0,
        **base_kwargs: Any,
    ) -> None:
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
            raise ValueError(
                f"Invalid n_samples={n_samples!r}: FrobSAM needs an integer >= 2 (unbiased covariance)."
            )
        self._sum_loss: Tensor | None = None
        super().__init__(
            params,
            base_optimizer,
            hyperparameters={"rho": rho, "lam": lam},
            n_samples=n_samples,
            generator=generator,
            eps=eps,
            interval=interval,
            start_step=start_step,
            **base_kwargs,
        )

    def _fill_noise_(self, tensors: list[Tensor]) -> None:
        for t in tensors:  # no foreach RNG kernels
            t.normal_(0.0, 1.0, generator=self._generator(t.device))

    def _on_clean(self, loss: Tensor) -> None:
        self._sum_loss = None

    def _accumulate(self, loss: Tensor) -> None:
        value = self._loss_value(loss)
        self._sum_loss = value if self._sum_loss is None else self._sum_loss + value
        params, grads = self._grads()
        weighted = scale_by(grads, value)
        self.sum_loss_grad.accumulate(params, weighted)
        self.sum_grad.accumulate(params, grads)
        for p in params:
            p.grad = None

    def _finalize(self) -> None:
        sum_grad = self.sum_grad.take()
        sum_loss_grad = self.sum_loss_grad.take()
        self._restore_clean_grads()
        n = self.n_samples
        assert self._sum_loss is not None  # every sample's loss was accumulated
        mean_loss = self._sum_loss / n
        self._sum_loss = None
        for group in self.param_groups:
            rho, lam = group["rho"], group["lam"]
            members = [p for p in group["params"] if p in sum_grad]
            if not members or rho == 0 or lam == 0:
                continue
            for p in members:  # a parameter sampled but unused in the clean pass: g0 = 0
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            sums = [sum_grad[p] for p in members]
            cov = [sum_loss_grad[p] for p in members]
            # (sum L g - mean(L) * sum g) / (n - 1), in the sum_loss_grad buffer
            scale_by(sums, -mean_loss, inplace=True)
            torch._foreach_add_(cov, sums)
            torch._foreach_add_([p.grad for p in members], cov, alpha=lam / (rho**2 * (n - 1)))
