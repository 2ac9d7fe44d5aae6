"""The SAM-family ascent and the restore as functions over lists of tensors, the way ``torch.optim.SGD``
calls ``sgd(...)``.

:class:`~monai_sam.optimizers.SharpnessAwareOptimizer` calls them from its ``_ascend`` and ``_restore``;
they hold no state, so the math is tested directly on closed forms (``tests/optimizers/test_ascent.py``).
The perturbation of SAM and its adaptive variants (ASAM) is

    ``e = rho * T^2 g / (||T g|| + eps)``

with ``T`` an element-wise transform per tensor (identity for SAM) and ``||.||`` one global L2 norm. A
non-finite ``g`` perturbs nothing (``e = 0``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from monai_sam.optimizers.functional import global_norm, inverse_norm, scale_by, zero_non_finite_

__all__ = [
    "ascent_directions",
    "ascent_offsets",
    "move_to_offset_",
    "multiply_where_given",
    "restore_",
    "sam_ascent",
]


def multiply_where_given(
    tensors: Sequence[Tensor], factors: Sequence[Tensor | None], inplace: bool
) -> list[Tensor]:
    """``t * f`` where a factor is given (foreach over that subset); other tensors are passed through.

    Args:
        tensors: the tensors.
        factors: one factor per tensor, or None to leave that tensor as it is.
        inplace: multiply the given tensors in place (else new tensors replace them in the result).
    """
    rows = [i for i, f in enumerate(factors) if f is not None]
    if not rows:
        return list(tensors)
    subset = [tensors[i] for i in rows]
    given = [f for f in factors if f is not None]  # the factors of ``rows``, in order
    out = list(tensors)
    if inplace:
        torch._foreach_mul_(subset, given)
    else:
        for i, value in zip(rows, torch._foreach_mul(subset, given)):
            out[i] = value
    return out


def ascent_directions(
    grads: Sequence[Tensor], transform: Sequence[Tensor | None] | None, inplace: bool
) -> list[Tensor]:
    """``T g``: the direction whose norm the ascent divides by (``g`` itself without a transform).

    Args:
        grads: the clean gradients ``g``.
        transform: ``T`` per tensor (None entries: identity), or None for SAM.
        inplace: write ``T g`` into the gradient tensors (when ``g`` is not needed afterwards).
    """
    if transform is None:
        return list(grads)
    return multiply_where_given(grads, transform, inplace=inplace)


def ascent_offsets(
    directions: Sequence[Tensor],
    scale: Tensor | float,
    transform: Sequence[Tensor | None] | None,
    inplace: bool,
) -> list[Tensor]:
    """``e = scale * T d`` with non-finite entries zeroed; ``scale = rho / (||T g|| + eps)``.

    Args:
        directions: ``T g`` from :func:`ascent_directions`.
        scale: ``rho`` times the inverse norm (a 0-d tensor, or a number).
        transform: the same ``T`` (None: identity).
        inplace: write ``e`` into ``directions``.
    """
    e = scale_by(directions, scale, inplace=inplace)
    if transform is not None:
        multiply_where_given(e, transform, inplace=True)
    zero_non_finite_(e)
    return e


def sam_ascent(
    grads: Sequence[Tensor],
    rho: float,
    eps: float = 1e-12,
    transform: Sequence[Tensor | None] | None = None,
) -> list[Tensor]:
    """The whole perturbation ``e = rho * T^2 g / (||T g|| + eps)`` out of place (``grads`` untouched).

    Args:
        grads: the clean gradients ``g``.
        rho: the neighbourhood size.
        eps: added to the norm.
        transform: ``T`` per tensor (ASAM: ``|w| + eta``), or None for SAM.
    """
    directions = ascent_directions(grads, transform, inplace=False)
    scale = inverse_norm(global_norm(directions), eps) * rho
    return ascent_offsets(directions, scale, transform, inplace=False)


def move_to_offset_(
    params: Sequence[Tensor], origin: Sequence[Tensor], offsets: Sequence[Tensor], alpha: float = 1.0
) -> None:
    """``w <- origin + alpha * offset`` in place, never by subtracting from the current point.

    Args:
        params: the parameters to move.
        origin: the point to move from (the weight backup).
        offsets: the offsets ``e``.
        alpha: the multiple of ``e`` (``-1`` for ``w - e``).
    """
    torch._foreach_copy_(list(params), list(origin))
    torch._foreach_add_(list(params), list(offsets), alpha=alpha)


def restore_(params: Sequence[Tensor], backups: Sequence[Tensor]) -> None:
    """Put the backed-up weights back by copy (bit-exact, unlike subtracting the perturbation).

    Args:
        params: the parameters.
        backups: their copies taken before the perturbation.
    """
    if params:
        torch._foreach_copy_(list(params), list(backups))
