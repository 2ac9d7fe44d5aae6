"""bSAM: Möllenhoff & Khan, "SAM as an Optimal Relaxation of Bayes" (ICLR 2023)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.base import SharpnessAwareOptimizer, check_range
from monai_sam.optimizers.functional import global_norm, zero_non_finite_
from monai_sam.optimizers.noise import NoiseGenerators
from monai_sam.optimizers.param_buffers import ParamBuffer

__all__ = ["BSAM", "BSAMUpdate"]

MOMENTUM = "momentum"  # BSAMUpdate state: m
PRECISION = "precision"  # BSAMUpdate state: s, the diagonal posterior precision (per data point)


def _check_betas(betas: Any) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"Invalid betas={betas!r}: expected two numbers in [0, 1).")
    for name, value in zip(("betas[0]", "betas[1]"), betas):
        check_range(name, value, 0.0, 1.0, high_open=True)
    return float(betas[0]), float(betas[1])


class BSAMUpdate(Optimizer):
    """The mean and precision update of bSAM, an Adam-like variational online-Newton step (BSAM's base).

    With ``g`` in ``.grad`` and ``h`` the gradient that drives the precision (bSAM's noisy-sample gradient,
    given by :class:`BSAM` through :attr:`precision_grads`, else ``g`` itself), as in the official code:
    ``m <- beta1 * m + (1 - beta1) * (g + wd * w)``; ``w <- w - lr * m / s`` (old ``s``);
    ``s <- beta2 * s + (1 - beta2) * (sqrt(s * h^2) + damping + wd)``.
    ``s`` starts at ``s_init`` for every parameter at construction (bSAM's noise needs it before step 1).

    Args:
        params: parameters or param-group dicts.
        lr: learning rate (official CIFAR value 0.5).
        betas: decays of ``m`` and ``s``.
        weight_decay: ``wd``, the prior precision divided by the data-set size.
        damping: added to the precision update (keeps ``s`` away from 0).
        s_init: initial precision (> 0).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.5,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 1e-4,
        damping: float = 0.1,
        s_init: float = 1.0,
    ) -> None:
        check_range("lr", lr, 0.0, float("inf"))
        check_range("weight_decay", weight_decay, 0.0, float("inf"))
        check_range("damping", damping, 0.0, float("inf"))
        check_range("s_init", s_init, 0.0, float("inf"), low_open=True)
        defaults = {"lr": lr, "betas": _check_betas(betas), "weight_decay": weight_decay, "damping": damping}
        super().__init__(params, defaults)
        #: per parameter, the gradient that drives the precision update of the next step (consumed by it)
        self.precision_grads: dict[Tensor, Tensor] = {}
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p][MOMENTUM] = torch.zeros_like(p, memory_format=torch.preserve_format)
                self.state[p][PRECISION] = torch.full_like(p, s_init, memory_format=torch.preserve_format)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One update from ``.grad`` (and :attr:`precision_grads`, which it clears)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        pending, self.precision_grads = self.precision_grads, {}
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            beta1, beta2 = group["betas"]
            wd, lr = group["weight_decay"], group["lr"]
            grads = [p.grad for p in params]
            momentum = [self.state[p][MOMENTUM] for p in params]
            precision = [self.state[p][PRECISION] for p in params]
            h = [pending.get(p, p.grad) for p in params]
            # sqrt(s * h^2) + damping + wd, before s and w change
            drive = torch._foreach_mul(h, h)
            torch._foreach_mul_(drive, precision)
            torch._foreach_sqrt_(drive)
            torch._foreach_add_(drive, group["damping"] + wd)
            decayed = torch._foreach_add(grads, params, alpha=wd) if wd != 0 else grads
            torch._foreach_mul_(momentum, beta1)
            torch._foreach_add_(momentum, decayed, alpha=1.0 - beta1)
            torch._foreach_addcdiv_(params, momentum, precision, value=-lr)
            torch._foreach_mul_(precision, beta2)
            torch._foreach_add_(precision, drive, alpha=1.0 - beta2)
        return loss


class BSAM(SharpnessAwareOptimizer):
    """Bayesian SAM: SAM's ascent from a noisy posterior sample, scaled by the learned precision ``s``.

    A step, as in the official JAX code (team-approx-bayes/bayesian-sam ``optim.py``) plus a clean pass:

    0. pass at the mean ``w`` (the weights the user sees): the clean loss, BatchNorm statistics and the
       skip flag, as for every method; its gradient is not used by the update;
    1. pass at the noisy sample ``w + sqrt(1 / (num_data * s)) * n``, ``n ~ N(0, I)``: gradient ``g1``;
    2. pass at ``w + rho * g1 / s`` (from the mean): gradient ``g``;
    3. :class:`BSAMUpdate` with ``g``, its precision driven by ``g1``.

    The official code has no pass at the mean (2 passes per step); the extra pass keeps this library's
    contract that the first pass of a step is at the true weights, so validation and checkpoints never
    see noisy weights. The noise comes from private generators (or ``generator``) whose states are in
    :meth:`state_dict`, so a resumed run draws the same noise. Steps skipped by ``interval`` /
    ``start_step`` are :class:`BSAMUpdate` steps with the clean gradient (no noise, no ascent).

    ``rho`` is not a radius: ``e = rho * g1 / s`` is not normalised (official CIFAR value 0.01). The update
    uses the precision update's buffers, not only ``.grad``, so a GradScaler is not supported and under DDP
    every pass must all-reduce (``sync_perturbation=True``). Buffers: persistent ``m`` and ``s``; peak: the
    weight backup and ``g1``.

    Args:
        params: parameters or param-group dicts.
        num_data: size of the training set (required, an integer >= 1; the official code multiplies it by
            the augmentation factor ``dafactor``).
        lr: learning rate (official CIFAR value 0.5).
        betas: decays of the momentum and the precision.
        weight_decay: prior precision divided by ``num_data`` (>= 0).
        rho: ascent scale (>= 0).
        damping: added to the precision update (>= 0).
        s_init: initial precision (> 0).
        generator: optional ``torch.Generator`` for the noise (on the parameters' device).
        eps: kept for API symmetry (norms are only reported).
        interval: the full step every ``interval``-th step; the other steps take one pass.
        start_step: late-phase mode: steps before this one are plain :class:`BSAMUpdate` steps (one pass).
        perturb, model: SAM-ON (``perturb="norm", model=net``): only normalisation-layer parameters get
            the noise and the ascent, as in :class:`~monai_sam.optimizers.SharpnessAwareOptimizer`.
    """

    passes_per_step = 3
    supports_grad_scaler = False
    has_post_step_correction = True
    #: no base optimizer can be chosen: the update is bSAM's own (see :class:`BSAMUpdate`)
    own_update = True

    @classmethod
    def base_problem(
        cls, base: type[Optimizer], base_kwargs: dict[str, Any], hyperparameters: dict[str, Any]
    ) -> str | None:
        """bSAM wraps nothing: its variational update replaces the optimizer (see :class:`BSAMUpdate`).

        Args:
            base: the optimizer class that was to be wrapped.
            base_kwargs: its keyword arguments.
            hyperparameters: bSAM's keyword arguments.
        """
        return (
            f"bSAM cannot keep the {base.__name__} optimizer: it replaces it with its own variational "
            "update (an Adam-like step on a learned precision, lr 0.5 where Adam uses 1e-4, a prior "
            "precision for weight decay, and num_data, the size of the training set), so the optimizer's "
            "class, learning rate and weight decay would not carry over. Build it by name in the config "
            "instead: monai_sam.optimizers.create_optimizer('bsam', params, num_data=..., lr=...)."
        )

    #: peak: g1, the gradient at the noisy sample (for the precision update).
    noisy_grad = ParamBuffer("bsam_noisy_grad")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        num_data: int | None = None,
        lr: float = 0.5,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 1e-4,
        rho: float = 0.05,
        damping: float = 0.1,
        s_init: float = 1.0,
        *,
        generator: torch.Generator | None = None,
        eps: float = 1e-12,
        interval: int = 1,
        start_step: int = 0,
        perturb: str = "all",
        model: torch.nn.Module | None = None,
    ) -> None:
        if isinstance(num_data, bool) or not isinstance(num_data, int) or num_data < 1:
            raise ValueError(
                f"Invalid num_data={num_data!r}: BSAM needs num_data, the number of training examples "
                "(an integer >= 1; it sets the posterior noise sqrt(1 / (num_data * s)))."
            )
        self.num_data = num_data
        base = BSAMUpdate(
            params, lr=lr, betas=betas, weight_decay=weight_decay, damping=damping, s_init=s_init
        )
        super().__init__(
            base.param_groups,
            base,
            hyperparameters={"rho": rho},
            eps=eps,
            interval=interval,
            start_step=start_step,
            perturb=perturb,
            model=model,
        )
        self._update = base  # the base optimizer, typed as bSAM's own update
        self._noise = NoiseGenerators(type(self).__name__, generator)

    def _validate_group(self, group: dict[str, Any]) -> None:
        super()._validate_group(group)
        group["betas"] = _check_betas(group["betas"])
        for name in ("lr", "weight_decay", "damping"):
            check_range(name, group[name], 0.0, float("inf"))

    def _fill_noise_(self, tensors: list[Tensor]) -> None:
        """Overwrite ``tensors`` with standard normal noise from the checkpointed generators."""
        for t in tensors:  # no foreach RNG kernels
            t.normal_(0.0, 1.0, generator=self._noise.for_device(t.device))

    def _precision(self, params: list[Tensor]) -> list[Tensor]:
        return [self.state[p][PRECISION] for p in params]

    def _after_pass(self, k: int, loss: Tensor | None) -> None:
        per_group = self._group_grads()
        params = [p for _, ps, _ in per_group for p in ps]
        if k == 0:  # the clean pass at the mean: status only, then w <- w + sqrt(1 / (N s)) * n
            self._record_clean_norm([g for _, _, gs in per_group for g in gs])
            noisy = self._perturbed(params)  # SAM-ON: only the norm-layer ones move
            self._weights.save(noisy)
            if not noisy:
                return
            self._fill_noise_(noisy)
            std = torch._foreach_mul(self._precision(noisy), float(self.num_data))
            torch._foreach_rsqrt_(std)
            torch._foreach_mul_(noisy, std)
            torch._foreach_add_(noisy, self._weights.of(noisy))
            return
        # the noisy pass: w <- mean + rho * g1 / s; keep g1 for the precision update
        grads = [g for _, _, gs in per_group for g in gs]
        noisy_norm = global_norm(grads, device=self.last_grad_norm.device)
        finite = torch.isfinite(noisy_norm)
        self.last_perturbation_skipped = self.last_perturbation_skipped | ~finite
        self._weights.rewind()  # back to the mean
        for group, ps, gs in per_group:
            pairs = [(p, g) for p, g in zip(ps, gs) if self._weights.holds(p)]
            if not pairs:
                continue
            members = [p for p, _ in pairs]
            e = torch._foreach_div([g for _, g in pairs], self._precision(members))
            rho = finite.to(e[0].device, e[0].dtype) * group["rho"]  # 0 when g1 is not finite
            torch._foreach_mul_(e, rho)
            zero_non_finite_(e)
            torch._foreach_add_(members, e)
        self.noisy_grad.stash(params)

    def _combine(self, loss: Tensor | None) -> None:
        self._update.precision_grads = self.noisy_grad.take()

    def end_passes(self) -> None:
        """See :meth:`SharpnessAwareOptimizer.end_passes`; also drops the pending precision gradients."""
        self._update.precision_grads = {}
        super().end_passes()

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), **self._noise.state_dict(), "num_data": self.num_data}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        super()._load_extra_state(extra)
        self._noise.load_state_dict(extra)
