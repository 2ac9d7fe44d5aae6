"""Functional building blocks shared by the sharpness-aware optimizers.

Every helper works on lists of tensors with ``torch._foreach_*`` kernels and never reads a value back to
the host, so an optimizer step built from them launches no device synchronisation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = [
    "all_finite",
    "clip_by_global_norm_",
    "finite_or",
    "global_dot",
    "global_norm",
    "inverse_norm",
    "joint_norm",
    "scale_by",
    "with_fp64_fallback",
    "zero_non_finite_",
]


def _norm_dtype(tensors: Sequence[Tensor]) -> torch.dtype:
    """fp32 for low-precision tensors, fp64 when any tensor is fp64 (never below fp32)."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


#: elements per piece when a reduction widens its inputs (the fp64 fallback): on the CPU torch upcasts a
#: whole tensor at a time, so pieces bound that transient copy (128 KiB) however large a parameter is.
WIDENED_PIECE = 1 << 14


def _flat_view(t: Tensor) -> Tensor | None:
    """A 1-D view of ``t``'s elements in memory order (contiguous or channels-last), None otherwise."""
    if t.is_contiguous():
        return t.view(-1)
    for layout, order in ((torch.channels_last, (0, 2, 3, 1)), (torch.channels_last_3d, (0, 2, 3, 4, 1))):
        if t.dim() == len(order) and t.is_contiguous(memory_format=layout):
            return t.permute(order).view(-1)
    return None


def _widened_pieces(tensors: Sequence[Tensor], dtype: torch.dtype) -> list[Tensor]:
    """``tensors`` with every one narrower than ``dtype`` cut into flat pieces of :data:`WIDENED_PIECE`."""
    out: list[Tensor] = []
    for t in tensors:
        flat = _flat_view(t) if t.dtype != dtype and t.numel() > WIDENED_PIECE else None
        out.extend(torch.split(flat, WIDENED_PIECE) if flat is not None else [t])
    return out


def finite_or(value: Tensor, fallback: Tensor) -> Tensor:
    """``value`` where it is finite, else ``fallback`` cast to its dtype (0-d tensors, on the device)."""
    return torch.where(torch.isfinite(value), value, fallback.to(value.device, value.dtype))


def with_fp64_fallback(compute: Callable[[torch.dtype | None], Tensor]) -> Tensor:
    """``compute(None)`` (reductions in their default dtype), or ``compute(torch.float64)`` where it is not
    finite: squares of fp32 values overflow above 1.8e19, fp64 ones only above 1e154.

    Both run on every call (no host read decides); a result that is already fp64 is returned as it is.
    Ordinary results are bit-identical to ``compute(None)``.
    """
    value = compute(None)
    if value.dtype == torch.float64:
        return value
    return finite_or(value, compute(torch.float64))


def joint_norm(
    tensors: Sequence[Tensor], device: torch.device | None = None, dtype: torch.dtype | None = None
) -> Tensor:
    """Plain L2 norm over all ``tensors`` jointly, accumulated in ``dtype`` (default: at least fp32).

    The sum of squares overflows when the norm exceeds the square root of the dtype's largest value
    (1.8e19 in fp32); :func:`global_norm` falls back to fp64 there. A given ``dtype`` wider than a tensor
    reduces it in pieces (:data:`WIDENED_PIECE`), so the upcast never copies a whole parameter.
    """
    if len(tensors) == 0:
        return torch.zeros((), device=device, dtype=dtype)
    device = tensors[0].device if device is None else device
    if dtype is not None:
        tensors = _widened_pieces(tensors, dtype)
    norms = torch._foreach_norm(list(tensors), 2, dtype=dtype or _norm_dtype(tensors))
    stacked = torch.stack([n.to(device, non_blocking=True) for n in norms])
    norm: Tensor = torch.linalg.vector_norm(stacked)
    return norm


def global_norm(tensors: Sequence[Tensor], device: torch.device | None = None) -> Tensor:
    """L2 norm over all ``tensors`` jointly; finite for finite tensors whenever it fits the result dtype.

    Accumulated in at least fp32 (fp16 would overflow at 65504), as :func:`joint_norm`. Where that
    sum of squares overflows although every entry is finite (fp32 entries above about 1e19: gradients
    under bf16 autocast reach 1e34), the norm comes from an fp64 accumulation instead. Ordinary norms
    are therefore bit-identical to a plain fp32 norm; the fp64 reduction runs on every call (choosing
    on the host would cost a synchronisation). fp64 tensors are accumulated in fp64 only (their squares
    overflow above 1e154).

    Args:
        tensors: tensors on any devices and dtypes.
        device: where the 0-d result lives; defaults to the device of the first tensor.

    Returns:
        0-d tensor (fp32, or fp64 when an input is fp64). ``0`` for an empty list; ``inf``/``nan`` when
        an entry is not finite or the norm exceeds the result dtype (3.4e38 in fp32).
    """
    if len(tensors) == 0:
        return joint_norm(tensors, device)
    return with_fp64_fallback(lambda dtype: joint_norm(tensors, device, dtype))


def global_dot(
    a: Sequence[Tensor],
    b: Sequence[Tensor],
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Inner product ``<a, b>`` of two equally shaped tensor lists, accumulated in ``dtype`` (default: at
    least fp32). It overflows with the squares of :func:`joint_norm`: callers fall back to fp64 inputs,
    which are upcast in pieces (:data:`WIDENED_PIECE`)."""
    if len(a) == 0:
        return torch.zeros((), device=device, dtype=dtype)
    device = a[0].device if device is None else device
    pairs = [(x.reshape(-1), y.reshape(-1)) for x, y in zip(a, b)]
    if dtype is not None:
        pairs = [
            piece
            for x, y in pairs
            for piece in zip(torch.split(x, WIDENED_PIECE), torch.split(y, WIDENED_PIECE))
        ]
    dtype = dtype or _norm_dtype(a)
    # There is no foreach dot product: one vdot kernel per tensor (or piece), summed on the device.
    dots = [torch.vdot(x.to(dtype), y.to(dtype)).to(device) for x, y in pairs]
    return torch.stack(dots).sum()


def all_finite(tensors: Sequence[Tensor], device: torch.device | None = None) -> Tensor:
    """0-d bool tensor: True when every entry of every tensor is finite (no overflow, unlike a norm).

    No foreach minimum exists and ``_foreach_norm(ord=inf)`` is about 15x slower on CPU than
    ``aminmax``, hence one ``aminmax`` kernel per tensor (NaN propagates through both ends).
    """
    values = [t for t in tensors if t.numel()]
    if not values:
        return torch.ones((), dtype=torch.bool, device=device)
    device = values[0].device if device is None else device
    finite = [torch.isfinite(torch.stack(torch.aminmax(t))).all().to(device) for t in values]
    return torch.stack(finite).all()


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
