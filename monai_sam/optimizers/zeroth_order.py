"""Shared machinery of the zeroth-order sharpness methods (Frob-SAM, Det-SAM): random perturbations.

Tahmasebi et al., "A Universal Class of Sharpness-Aware Minimization Algorithms" (ICML 2024). The weights
are perturbed isotropically (not along the gradient), ``w + rho * delta_i`` for ``n_samples`` draws, and the
pass losses enter the final gradient, so these methods need the loss of every pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.base import SharpnessAwareOptimizer
from monai_sam.optimizers.functional import scale_by
from monai_sam.optimizers.noise import NoiseGenerators

__all__ = ["RandomPerturbationOptimizer"]


class RandomPerturbationOptimizer(SharpnessAwareOptimizer):
    """Base of Frob-SAM and Det-SAM: pass 0 at ``w``, then ``n_samples`` passes at ``w + rho * delta_i``.

    Noise comes from ``generator`` when given (one device), else from private generators seeded from the
    global RNG at construction; either way their states are part of :meth:`state_dict`, so a resumed run
    draws the same perturbations as an uninterrupted one.

    Args:
        params: parameters or param-group dicts.
        base_optimizer: optimizer class (built with ``base_kwargs``) or a ready instance.
        hyperparameters: per-group hyperparameters (``rho``, ``lam``, ...).
        n_samples: random perturbations per step.
        generator: optional ``torch.Generator`` for the noise (on the parameters' device).
        eps: kept for API symmetry (norms are only reported).
        interval: perturb only every ``interval``-th step.
        start_step: late-phase mode: steps before this one are plain base steps (one pass).
        base_kwargs: keyword arguments of the base optimizer.
    """

    needs_loss = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[Optimizer] | Optimizer = torch.optim.SGD,
        *,
        hyperparameters: dict[str, Any],
        n_samples: int,
        generator: torch.Generator | None = None,
        eps: float = 1e-12,
        interval: int = 1,
        start_step: int = 0,
        **base_kwargs: Any,
    ) -> None:
        self.n_samples = n_samples
        self.passes_per_step = 1 + n_samples
        super().__init__(
            params,
            base_optimizer,
            hyperparameters=hyperparameters,
            eps=eps,
            interval=interval,
            start_step=start_step,
            **base_kwargs,
        )
        self._noise = NoiseGenerators(type(self).__name__, generator)

    def _generator(self, device: torch.device) -> torch.Generator:
        return self._noise.for_device(device)

    def _fill_noise_(self, tensors: list[Tensor]) -> None:
        """Overwrite ``tensors`` with one draw of ``delta`` (method-specific distribution)."""
        raise NotImplementedError

    def _after_pass(self, k: int, loss: Tensor | None) -> None:
        assert loss is not None  # needs_loss: perturb() checked it
        if k == 0:
            params, grads = self._grads()
            self._record_clean_norm(grads)
            self._on_clean(loss)
            self._weights.save(self._perturbed(params))
            self.clean_grad.stash(params)
        else:
            self._accumulate(loss)
        self._move_to_sample()

    def _move_to_sample(self) -> None:
        """``w <- backup + rho * delta`` for every backed-up parameter, group by group."""
        for group in self.param_groups:
            members = [p for p in group["params"] if self._weights.holds(p)]
            if not members:
                continue
            self._fill_noise_(members)
            scale_by(members, group["rho"], inplace=True)
            torch._foreach_add_(members, self._weights.of(members))

    def _combine(self, loss: Tensor | None) -> None:
        assert loss is not None  # needs_loss: unperturb() checked it
        self._accumulate(loss)
        self._finalize()

    def _on_clean(self, loss: Tensor) -> None:
        """Record what the method needs from the clean pass."""

    def _accumulate(self, loss: Tensor) -> None:
        """Consume the ``.grad`` and loss of one perturbed pass (and clear ``.grad``)."""
        raise NotImplementedError

    def _finalize(self) -> None:
        """Write the final gradient into ``.grad`` and drop the peak state."""
        raise NotImplementedError

    @staticmethod
    def _loss_value(loss: Tensor) -> Tensor:
        loss = loss.detach()
        return loss.to(torch.promote_types(loss.dtype, torch.float32))

    def _restore_clean_grads(self) -> None:
        """Move the stored g0 back into ``.grad``; the final gradient is built on it in place."""
        for p, g0 in self.clean_grad.take().items():
            p.grad = g0

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), **self._noise.state_dict()}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        super()._load_extra_state(extra)
        self._noise.load_state_dict(extra)
