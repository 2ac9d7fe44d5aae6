"""Arithmetic on parameter-shaped vectors (lists of tensors, one per parameter)."""

from __future__ import annotations

import torch
from torch import Tensor

Vector = list[Tensor]


def dot(a: Vector, b: Vector) -> Tensor:
    """Inner product of two parameter-shaped vectors, accumulated in float64."""
    products = torch._foreach_mul(a, b)
    return torch.stack([x.sum(dtype=torch.float64) for x in products]).sum()


def norm(a: Vector) -> Tensor:
    """Euclidean norm of a parameter-shaped vector, accumulated in float64."""
    return torch.stack([x.double() for x in torch._foreach_norm(a)]).norm()


def scale(a: Vector, factor: float | Tensor) -> Vector:
    """``factor * a`` as a new vector."""
    return torch._foreach_mul(a, factor)


def random_like(reference: Vector, generator: torch.Generator, kind: str = "gaussian") -> Vector:
    """Random vector shaped like ``reference``, drawn on the CPU from ``generator``.

    Drawing on the CPU keeps the draw identical on every device for a given seed.

    Args:
        reference: tensors giving shape, dtype and device.
        generator: a CPU ``torch.Generator``.
        kind: ``"gaussian"`` (standard normal) or ``"rademacher"`` (+-1 with equal probability).
    """
    out = []
    for t in reference:
        dtype = t.dtype if t.dtype == torch.float64 else torch.float32
        if kind == "gaussian":
            x = torch.randn(t.shape, generator=generator, dtype=dtype)
        elif kind == "rademacher":
            x = torch.randint(0, 2, t.shape, generator=generator).to(dtype).mul_(2).sub_(1)
        else:
            raise ValueError(f"kind must be 'gaussian' or 'rademacher', got {kind!r}")
        out.append(x.to(device=t.device, dtype=t.dtype))
    return out
