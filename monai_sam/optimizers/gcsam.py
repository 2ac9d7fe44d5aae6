"""GCSAM: Hassan, Vakanski, Zhang, Xian, "GCSAM: Gradient Centralized Sharpness Aware Minimization"
(arXiv 2501.11584, IEEE Access 2025)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from monai_sam.optimizers.functional import global_norm
from monai_sam.optimizers.sam import SAM

__all__ = ["GCSAM", "centralize_"]

#: accepted values of GCSAM's ``norm`` option
NORMS = ("centralized", "raw")


def centralize_(tensors: list[Tensor]) -> None:
    """Gradient centralisation in place: subtract from every tensor with more than one dimension its mean
    over all dimensions but the first (one mean per output channel / row); 1-D tensors are left alone.

    There is no foreach reduction over a dimension, so this launches two kernels per such tensor.
    """
    for t in tensors:
        if t.ndim > 1:
            t.sub_(t.mean(dim=tuple(range(1, t.ndim)), keepdim=True))


class GCSAM(SAM):
    """Gradient-centralised SAM: the ascent follows the centralised clean gradient ``GC(g0)``.

    ``e = rho * GC(g0) / (||GC(g0)|| + eps)`` with the paper's normalisation (``norm="centralized"``, the
    default: ``||e|| = rho``), or ``e = rho * GC(g0) / (||g0|| + eps)`` with ``norm="raw"``, which is what
    the authors' public script and pytorch_optimizer's ``SAM(use_gc=True)`` compute (``||e|| <= rho``).
    ``GC`` subtracts from every gradient with more than one dimension its mean over all dimensions but the
    first. The descent uses the plain perturbed gradient ``gp`` (not centralised), as in the authors' code.
    Two passes; one peak buffer (the weight backup); ``GC`` is computed in the gradient buffers.

    Args:
        params: parameters or param-group dicts.
        base_optimizer: optimizer class (built with ``base_kwargs``) or a ready instance.
        rho: neighbourhood radius (>= 0; the authors use 0.05 with Adam, lr 1e-4).
        norm: ``"centralized"`` (paper) or ``"raw"`` (authors' code, pytorch_optimizer).
        eps: added to the norm in ``rho / (norm + eps)``.
        interval: perturb only every ``interval``-th step; the other steps take one pass.
        start_step: late-phase mode: steps before this one are plain base steps (one pass).
        base_kwargs: keyword arguments of the base optimizer (``lr``, ``betas``, ...).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[Optimizer] | Optimizer = torch.optim.SGD,
        rho: float = 0.05,
        *,
        norm: str = "centralized",
        eps: float = 1e-12,
        interval: int = 1,
        start_step: int = 0,
        **base_kwargs: Any,
    ) -> None:
        if norm not in NORMS:
            raise ValueError(f"Invalid norm={norm!r}: GCSAM normalises by one of {list(NORMS)}.")
        self.norm = norm
        super().__init__(
            params,
            base_optimizer,
            rho,
            eps=eps,
            interval=interval,
            start_step=start_step,
            **base_kwargs,
        )

    def _ascent_direction_(
        self, per_group: list[tuple[dict[str, Any], list[Tensor], list[Tensor]]], norm: Tensor
    ) -> Tensor:
        grads = [g for _, _, gs in per_group for g in gs]
        centralize_(grads)
        if self.norm == "raw":
            return norm
        return global_norm(grads, device=norm.device)
