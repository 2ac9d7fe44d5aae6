"""Functional building blocks shared by the sharpness-aware optimizers.

Every helper works on lists of tensors with ``torch._foreach_*`` kernels and never reads a value back to
the host, so an optimizer step built from them launches no device synchronisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "clip_by_global_norm_",
    "global_dot",
    "global_norm",
    "inverse_norm",
    "scale_by",
    "zero_non_finite_",
]


def _norm_dtype(tensors: Sequence[Tensor]) -> torch.dtype:
    """fp32 for low-precision tensors, fp64 when any tensor is fp64 (never below fp32)."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def global_norm(tensors: Sequence[Tensor], device: torch.device | None = None) -> Tensor:
    """L2 norm over all ``tensors`` jointly, computed in at least fp32 (fp16 would overflow at 65504).

    Args:
        tensors: tensors on any devices and dtypes.
        device: where the 0-d result lives; defaults to the device of the first tensor.

    Returns:
        0-d tensor (fp32, or fp64 when an input is fp64). ``0`` for an empty list.
    """
    if len(tensors) == 0:
        return torch.zeros((), device=device)
    device = tensors[0].device if device is None else device
    dtype = _norm_dtype(tensors)
    norms = torch._foreach_norm(list(tensors), 2, dtype=dtype)
    stacked = torch.stack([n.to(device, non_blocking=True) for n in norms])
    return torch.linalg.vector_norm(stacked)


def global_dot(a: Sequence[Tensor], b: Sequence[Tensor], device: torch.device | None = None) -> Tensor:
    """Inner product ``<a, b>`` of two equally shaped tensor lists, accumulated in at least fp32."""
    if len(a) == 0:
        return torch.zeros((), device=device)
    device = a[0].device if device is None else device
    dtype = _norm_dtype(a)
    # There is no foreach dot product: one vdot kernel per tensor, summed on the device.
    dots = [torch.vdot(x.reshape(-1).to(dtype), y.reshape(-1).to(dtype)).to(device) for x, y in zip(a, b)]
    return torch.stack(dots).sum()


def inverse_norm(norm: Tensor, eps: float) -> Tensor:
    """``1 / (norm + eps)``, or ``0`` when ``norm`` is not finite (so a bad gradient perturbs nothing)."""
    inv = torch.reciprocal(norm + eps)
    return torch.where(torch.isfinite(norm), inv, torch.zeros_like(inv))


def scale_by(tensors: Sequence[Tensor], factor: Tensor | float, inplace: bool = False) -> list[Tensor]:
    """``t * factor`` for every tensor; ``factor`` may be a 0-d tensor on any device."""
    tensors = list(tensors)
    if not tensors:
        return []
    if isinstance(factor, Tensor):
        factor = factor.to(tensors[0].device, non_blocking=True)
    if inplace:
        torch._foreach_mul_(tensors, factor)
        return tensors
    return list(torch._foreach_mul(tensors, factor))


def zero_non_finite_(tensors: Sequence[Tensor]) -> None:
    """Replace inf and NaN entries by zero in place.

    ``inf * 0`` is NaN, so a zero scale alone cannot cancel a non-finite gradient; there is no foreach
    variant of ``nan_to_num``, hence one kernel per tensor.
    """
    for t in tensors:
        torch.nan_to_num_(t, nan=0.0, posinf=0.0, neginf=0.0)


def clip_by_global_norm_(tensors: Sequence[Tensor], max_norm: float) -> Tensor:
    """Scale ``tensors`` in place so their global norm is at most ``max_norm`` (``clip_grad_norm_`` rule).

    Returns:
        the global norm before clipping (0-d tensor).
    """
    norm = global_norm(tensors)
    coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
    scale_by(tensors, coef, inplace=True)
    return norm
