"""GSAM's rho schedule: rho follows the learning rate linearly (Zhuang et al., ICLR 2022, Algorithm 1)."""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer

__all__ = ["GSAMRhoScheduler"]


class GSAMRhoScheduler:
    """Set every group's ``rho`` from its current ``lr``: ``rho_min + (rho_max - rho_min) * (lr - lr_min) /
    (lr_max - lr_min)`` (``rho_max`` when ``lr_max == lr_min``).

    Works with any torch LR scheduler: step the LR scheduler first, then this one, once per iteration.
    Works for any optimizer whose groups hold a ``rho`` (every monai-sam method), not only GSAM.

    Args:
        optimizer: the sharpness-aware optimizer (its param groups are read and written).
        lr_max: lr at which ``rho = rho_max``; default: each group's ``initial_lr`` (set by an LR scheduler)
            or its lr at construction. Use the absolute lr, not a schedule multiplier.
        lr_min: lr at which ``rho = rho_min``.
        rho_max: default: each group's rho at construction.
        rho_min: rho at ``lr_min``.

    Example::

        opt = GSAM(model.parameters(), torch.optim.SGD, rho=0.04, alpha=0.01, lr=1.6)
        lr_sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.01, total_iters=steps)
        rho_sched = GSAMRhoScheduler(opt, lr_min=0.016, rho_min=0.02)
        for x, y in loader:
            opt.step(closure)
            lr_sched.step()
            rho_sched.step()
    """

    def __init__(
        self,
        optimizer: Optimizer,
        lr_max: float | None = None,
        lr_min: float = 0.0,
        rho_max: float | None = None,
        rho_min: float = 0.0,
    ) -> None:
        groups = optimizer.param_groups
        if any("rho" not in g for g in groups):
            raise ValueError("GSAMRhoScheduler: the optimizer's param groups have no 'rho'.")
        self.optimizer = optimizer
        self.lr_max = [
            float(g.get("initial_lr", g["lr"])) if lr_max is None else float(lr_max) for g in groups
        ]
        self.rho_max = [float(g["rho"]) if rho_max is None else float(rho_max) for g in groups]
        self.lr_min = float(lr_min)
        self.rho_min = float(rho_min)
        for lr_hi, rho_hi in zip(self.lr_max, self.rho_max):
            if lr_hi < self.lr_min:
                raise ValueError(f"Invalid lr_max={lr_hi}: must be >= lr_min={self.lr_min}.")
            if not 0.0 <= self.rho_min <= rho_hi:
                raise ValueError(f"Invalid rho_min={self.rho_min}: must be in [0, rho_max={rho_hi}].")
        self.step()

    def rho_for(self, lr: float, index: int = 0) -> float:
        """The rho of group ``index`` at learning rate ``lr``."""
        lr_max, rho_max = self.lr_max[index], self.rho_max[index]
        if lr_max == self.lr_min:
            return rho_max
        return self.rho_min + (rho_max - self.rho_min) * (float(lr) - self.lr_min) / (lr_max - self.lr_min)

    def step(self) -> None:
        """Update every group's rho from its current lr."""
        for index, group in enumerate(self.optimizer.param_groups):
            group["rho"] = self.rho_for(group["lr"], index)

    def get_last_rho(self) -> list[float]:
        """The rho of every group, as last set."""
        return [g["rho"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """The schedule's constants (the current rho lives in the optimizer's state dict)."""
        return {
            "lr_max": self.lr_max,
            "lr_min": self.lr_min,
            "rho_max": self.rho_max,
            "rho_min": self.rho_min,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the constants saved by :meth:`state_dict`."""
        self.lr_max = list(state_dict["lr_max"])
        self.rho_max = list(state_dict["rho_max"])
        self.lr_min = float(state_dict["lr_min"])
        self.rho_min = float(state_dict["rho_min"])
