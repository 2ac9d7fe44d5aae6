"""ASAM: Kwon et al., "ASAM: Adaptive Sharpness-Aware Minimization" (ICML 2021)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.base import SharpnessAwareOptimizer

__all__ = ["ASAM", "is_weight_tensor", "weights_by_name"]


def is_weight_tensor(param: Tensor) -> bool:
    """Default ASAM selector: matrices and kernels (``ndim > 1``), not 1-D biases and norm parameters."""
    return param.ndim > 1


def weights_by_name(module: torch.nn.Module, substring: str = "weight") -> Callable[[Tensor], bool]:
    """Selector of the official ASAM code: parameters whose name contains ``substring``.

    Unlike :func:`is_weight_tensor` this also scales 1-D norm weights (BatchNorm gamma).
    Example: ``ASAM(model.parameters(), adaptive=weights_by_name(model))``.
    """
    chosen = {id(p) for name, p in module.named_parameters() if substring in name}
    return lambda p: id(p) in chosen


class ASAM(SharpnessAwareOptimizer):
    """Adaptive SAM: ``e = rho * T^2 g0 / (||T g0|| + eps)`` with ``T = |w| + eta`` element-wise.

    ``T`` applies to the tensors chosen by ``adaptive`` (default: weight matrices and kernels, as in the
    official code which scales tensors named "weight"); other tensors use ``T = 1``. The constraint
    ``||T^{-1} e|| = rho`` is active. Two passes; one parameter-sized buffer (the weight backup): ``T`` is
    computed in place in the backed-up weights.

    Args:
        params: parameters or param-group dicts.
        base_optimizer: optimizer class (built with ``base_kwargs``) or a ready instance.
        rho: radius in the adaptive metric (>= 0; official default 0.5).
        eta: offset of ``T`` (>= 0), keeps the perturbation of zero weights non-zero.
        adaptive: predicate choosing the tensors scaled by ``T``; ``None`` means every tensor;
            :func:`weights_by_name` reproduces the official name-based rule.
        eps: added to the norm.
        interval: perturb only every ``interval``-th step.
        start_step: late-phase mode: steps before this one are plain base steps (one pass).
        base_kwargs: keyword arguments of the base optimizer.
    """

    final_grad_is_last_pass = True

    non_negative = ("rho", "eta")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[Optimizer] | Optimizer = torch.optim.SGD,
        rho: float = 0.5,
        eta: float = 0.01,
        *,
        adaptive: Callable[[Tensor], bool] | None = is_weight_tensor,
        eps: float = 1e-12,
        interval: int = 1,
        start_step: int = 0,
        **base_kwargs: Any,
    ) -> None:
        self.adaptive = adaptive
        super().__init__(
            params,
            base_optimizer,
            hyperparameters={"rho": rho, "eta": eta},
            eps=eps,
            interval=interval,
            start_step=start_step,
            **base_kwargs,
        )

    def _ascent_transform(self, group: dict[str, Any], params: list[Tensor]) -> list[Tensor | None]:
        transforms = [p if self.adaptive is None or self.adaptive(p) else None for p in params]
        chosen = [t for t in transforms if t is not None]
        if chosen:
            # T = |w| + eta, written into the weights themselves (they are backed up): no extra buffer.
            torch._foreach_abs_(chosen)
            torch._foreach_add_(chosen, group["eta"])
        return transforms
