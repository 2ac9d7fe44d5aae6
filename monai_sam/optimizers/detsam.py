"""Det-SAM: the determinant member of the universal sharpness class of Tahmasebi et al. (ICML 2024)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.base import check_range, check_step_option
from monai_sam.optimizers.functional import scale_by
from monai_sam.optimizers.param_buffers import ParamBuffer
from monai_sam.optimizers.zeroth_order import RandomPerturbationOptimizer

__all__ = ["DetSAM"]


class DetSAM(RandomPerturbationOptimizer):
    """Det-SAM (official ``ISAM`` with the ``det`` setting): targets ``det H`` through Gaussian integrals.

    With ``delta_i ~ U[-a, a]^d``, ``x_i = (L(w + rho delta_i) - L(w)) / rho^2``, ``psi(x) = exp(-x / 2)``:
    ``c = mean psi(x_i)``, ``G = mean psi'(x_i) (g_i - g0)`` and the final gradient is
    ``g0 + lam * phi'(c) * G`` with ``phi'(c) = -2 / c^3`` (constants folded into ``lam`` as in the official
    code). Uses the clean loss. ``1 + n_samples`` passes; peak buffers: weight backup, g0, the weighted sum.

    Args:
        params: parameters or param-group dicts.
        base_optimizer: optimizer class (built with ``base_kwargs``) or a ready instance.
        rho: perturbation scale (> 0 for the regulariser to act; official 1.0). One value for all groups.
        lam: weight of the regulariser (>= 0; official 1.0).
        n_samples: perturbations per step (>= 1; official 1).
        half_cube_len: half side ``a`` of the uniform cube (> 0; official 0.01).
        generator: optional ``torch.Generator`` for the noise.
        eps: unused by the math, kept for API symmetry.
        interval: perturb only every ``interval``-th step.
        start_step: late-phase mode: steps before this one are plain base steps (one pass).
        base_kwargs: keyword arguments of the base optimizer.
    """

    non_negative = ("rho", "lam")

    #: peak: sum_i psi'(x_i) / n * g_i over the samples.
    weighted_grad = ParamBuffer("detsam_weighted_grad")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[Optimizer] | Optimizer = torch.optim.SGD,
        rho: float = 1.0,
        lam: float = 1.0,
        n_samples: int = 1,
        *,
        half_cube_len: float = 0.01,
        generator: torch.Generator | None = None,
        eps: float = 1e-12,
        interval: int = 1,
        start_step: int = 0,
        **base_kwargs: Any,
    ) -> None:
        check_step_option("n_samples", n_samples, 1)
        check_range("half_cube_len", half_cube_len, 0.0, float("inf"), low_open=True)
        self.half_cube_len = float(half_cube_len)
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
        if len({float(g["rho"]) for g in self.param_groups}) > 1:
            raise ValueError("DetSAM: rho must be the same in every param group (it normalises the loss).")

    def _fill_noise_(self, tensors: list[Tensor]) -> None:
        a = self.half_cube_len
        for t in tensors:  # no foreach RNG kernels
            t.uniform_(-a, a, generator=self._generator(t.device))

    def _on_clean(self, loss: Tensor) -> None:
        self._clean_loss = self._loss_value(loss)
        self._psi_mean = torch.zeros_like(self._clean_loss)
        self._weight_sum = torch.zeros_like(self._clean_loss)

    def _accumulate(self, loss: Tensor) -> None:
        params, grads = self._grads()
        rho = self.param_groups[0]["rho"]
        if rho != 0:
            x = (self._loss_value(loss) - self._clean_loss) / rho**2
            psi = torch.exp(-0.5 * x)
            n = self.n_samples
            self._psi_mean = self._psi_mean + psi / n
            weight = -0.5 * psi / n  # psi'(x) / n
            self._weight_sum = self._weight_sum + weight
            self.weighted_grad.accumulate(params, scale_by(grads, weight, inplace=True))
        for p in params:
            p.grad = None

    def _finalize(self) -> None:
        weighted = self.weighted_grad.take()
        self._restore_clean_grads()
        rho = self.param_groups[0]["rho"]
        phi_prime = -2.0 / self._psi_mean**3
        for group in self.param_groups:
            lam = group["lam"]
            members = [p for p in group["params"] if p in weighted]
            if not members or rho == 0 or lam == 0:
                continue
            for p in members:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            coef = lam * phi_prime
            # g0 + coef * (sum w_i g_i - (sum w_i) g0) = (1 - coef * sum w_i) g0 + coef * sum w_i g_i
            grads = [p.grad for p in members]
            scale_by(grads, 1.0 - coef * self._weight_sum, inplace=True)
            torch._foreach_add_(grads, scale_by([weighted[p] for p in members], coef, inplace=True))
        del self._clean_loss, self._psi_mean, self._weight_sum
