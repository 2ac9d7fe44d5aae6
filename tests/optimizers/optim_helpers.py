"""Shared helpers of the optimizer tests: tiny float64 models, a quadratic, pass-by-pass drivers.

A plain module (not ``conftest``): several test folders have a conftest, and importing one by that
name is ambiguous when the whole suite runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from monai_sam.optimizers import (
    ASAM,
    CRSAM,
    FSAM,
    GCSAM,
    GSAM,
    MSAM,
    SAM,
    SSAM,
    WSAM,
    DetSAM,
    FrobSAM,
    LookSAM,
)


def msam(params, base_optimizer=torch.optim.SGD, **kwargs) -> MSAM:
    """MSAM for the shared tables: an SGD base gets momentum 0.9 unless given (MSAM needs a momentum)."""
    if base_optimizer is torch.optim.SGD:
        kwargs.setdefault("momentum", 0.9)
    return MSAM(params, base_optimizer, **kwargs)


#: every method with hyperparameters that make it the base optimizer exactly (rho = 0, neutral extras)
NEUTRAL = {
    "sam": (SAM, {"rho": 0.0}),
    "asam": (ASAM, {"rho": 0.0}),
    "gsam": (GSAM, {"rho": 0.0, "alpha": 0.0}),
    "wsam_decoupled": (WSAM, {"rho": 0.0, "gamma": 0.0}),
    "wsam_coupled": (WSAM, {"rho": 0.0, "gamma": 0.0, "decouple": False}),
    "crsam": (CRSAM, {"rho": 0.0, "gamma": 0.0, "beta": 0.0}),
    "ssam": (SSAM, {"rho": 0.0}),
    "frobsam": (FrobSAM, {"rho": 0.0, "lam": 0.0}),
    "detsam": (DetSAM, {"rho": 0.0, "lam": 0.0}),
    "looksam": (LookSAM, {"rho": 0.0, "alpha": 0.0, "k": 2}),
    "msam": (msam, {"rho": 0.0}),
    "gcsam": (GCSAM, {"rho": 0.0}),
    "gcsam_raw": (GCSAM, {"rho": 0.0, "norm": "raw"}),
    "fsam": (FSAM, {"rho": 0.0}),
}

#: every method with active (non-neutral) hyperparameters
ACTIVE = {
    "sam": (SAM, {"rho": 0.1}),
    "asam": (ASAM, {"rho": 0.5, "eta": 0.01}),
    "gsam": (GSAM, {"rho": 0.1, "alpha": 0.4}),
    "wsam_decoupled": (WSAM, {"rho": 0.1, "gamma": 0.9}),
    "wsam_coupled": (WSAM, {"rho": 0.1, "gamma": 0.9, "decouple": False}),
    "crsam": (CRSAM, {"rho": 0.1, "gamma": 0.1, "beta": 0.1}),
    "ssam": (SSAM, {"rho": 0.1}),
    "frobsam": (FrobSAM, {"rho": 0.05, "lam": 0.05}),
    "detsam": (DetSAM, {"rho": 0.1, "lam": 0.01}),
    "looksam": (LookSAM, {"rho": 0.1, "alpha": 0.7, "k": 2}),
    "msam": (msam, {"rho": 0.3}),
    "gcsam": (GCSAM, {"rho": 0.1}),
    "gcsam_raw": (GCSAM, {"rho": 0.1, "norm": "raw"}),
    "fsam": (FSAM, {"rho": 0.1, "sigma": 1.0, "lmbda": 0.6}),
}


def small_net(seed: int = 0, bias: bool = True) -> nn.Module:
    """A float64 two-layer MLP (4 -> 8 -> 1)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8, bias=bias), nn.Tanh(), nn.Linear(8, 1, bias=bias)).double()


def batch(seed: int = 1, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randn(
        n, 1, generator=g, dtype=torch.float64
    )


def mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((model(x) - y) ** 2).mean()


def run_manual(
    opt, loss_fn: Callable[[], torch.Tensor], scaler=None, check_finite: bool = True
) -> torch.Tensor:
    """One step through the pass-by-pass API; returns the clean loss."""
    n = opt.num_passes
    opt.zero_grad()
    loss = loss_fn()
    (scaler.scale(loss) if scaler else loss).backward()
    first = loss.detach()
    for _ in range(1, n):
        opt.perturb(loss.detach())
        loss = loss_fn()
        (scaler.scale(loss) if scaler else loss).backward()
    opt.unperturb(loss.detach())
    opt.base_step(scaler, check_finite=check_finite)
    if scaler is not None:
        scaler.update()
    return first


def closure_for(opt, loss_fn: Callable[[], torch.Tensor], zero: bool = True) -> Callable[[], torch.Tensor]:
    def closure():
        if zero:
            opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    return closure


class Quadratic(nn.Module):
    """``L(w) = 1/2 (w - w*)^T A (w - w*)`` with a random SPD ``A`` and a matrix-shaped ``w`` (float64)."""

    def __init__(self, n: int = 6, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        m = torch.randn(n, n, generator=g, dtype=torch.float64)
        self.register_buffer("A", m @ m.T / n + torch.eye(n, dtype=torch.float64))
        self.register_buffer("w_star", torch.randn(n, generator=g, dtype=torch.float64))
        self.w = nn.Parameter(torch.randn(n // 2, 2, generator=g, dtype=torch.float64))

    def forward(self) -> torch.Tensor:
        d = self.w.reshape(-1) - self.w_star
        return 0.5 * d @ self.A @ d

    def grad_at(self, w: torch.Tensor) -> torch.Tensor:
        return self.A @ (w.reshape(-1) - self.w_star)


def final_grad(opt, loss_fn: Callable[[], torch.Tensor]) -> list[torch.Tensor]:
    """The final gradient a step hands to the base optimizer (read after unperturb), then step."""
    n = opt.num_passes
    opt.zero_grad()
    loss = loss_fn()
    loss.backward()
    for _ in range(1, n):
        opt.perturb(loss.detach())
        loss = loss_fn()
        loss.backward()
    opt.unperturb(loss.detach())
    grads = [p.grad.clone() for g in opt.param_groups for p in g["params"]]
    opt.base_step()
    return grads


class OpLog(TorchDispatchMode):
    """Records the name of every aten op (kernel) run inside the mode, e.g. ``"aten.add_"``."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def fp64_squared_grad_norm(param_groups, device=None, *, weight_adaptive=False):
    """pytorch_optimizer's ``get_global_gradient_norm`` (a squared global norm), accumulated in fp64.

    pytorch_optimizer takes the norm in fp32 even for fp64 weights (spec §1.3); with this in its place the
    comparisons against it can use rounding-level tolerances.
    """
    grads = [p.grad for g in param_groups for p in g["params"] if p.grad is not None]
    return torch.stack([(g.double() ** 2).sum() for g in grads]).sum().reshape(1)
