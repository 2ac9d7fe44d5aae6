"""The combination rules: how a method turns the gradients of its passes into the final gradient.

Each rule is a pure function over lists of tensors (one entry per parameter of a param group), written
in place into one of the gradient buffers it is given, so a combination allocates nothing, the way
``torch.optim`` calls ``sgd(...)``. The methods call them from ``_combine`` with the group's
hyperparameters; tests/optimizers/test_combination.py checks each against its closed form.

Notation: ``g0`` is the clean gradient at ``w``, ``gp`` the gradient at the perturbed point ``w + e``,
``gm`` the gradient at ``w - e`` (CR-SAM).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from monai_sam.optimizers.functional import scale_by

__all__ = ["crsam_combine_", "gsam_combine_", "looksam_orthogonal_", "wsam_coupled_"]


def gsam_combine_(
    perturbed: Sequence[Tensor], clean: Sequence[Tensor], alpha: float, parallel: Tensor
) -> None:
    """GSAM: ``gp <- gp - alpha * (g0 - parallel * gp) = (1 + alpha * parallel) gp - alpha g0``, in ``gp``.

    ``parallel * gp`` is the component of ``g0`` along ``gp`` (``parallel = <g0, gp> / ||gp||^2`` over all
    groups). ``alpha = 0`` leaves ``gp`` untouched, so the step is SAM's even when ``parallel`` is not
    finite.

    Args:
        perturbed: ``gp`` of the group's parameters (overwritten with the final gradient).
        clean: ``g0`` of the same parameters.
        alpha: the group's ``alpha``.
        parallel: 0-d tensor, the projection coefficient.
    """
    if not perturbed or alpha == 0:
        return
    scale_by(perturbed, 1.0 + alpha * parallel, inplace=True)
    torch._foreach_add_(list(perturbed), list(clean), alpha=-alpha)


def wsam_coupled_(perturbed: Sequence[Tensor], clean: Sequence[Tensor], weight: float) -> None:
    """WSAM without decoupling: ``gp <- weight * gp + (1 - weight) * g0``, in ``gp``.

    Args:
        perturbed: ``gp`` (overwritten with the final gradient).
        clean: ``g0``.
        weight: ``a = gamma / (1 - gamma)``.
    """
    if not perturbed:
        return
    torch._foreach_mul_(list(perturbed), weight)
    torch._foreach_add_(list(perturbed), list(clean), alpha=1.0 - weight)


def crsam_combine_(
    minus: Sequence[Tensor], plus: Sequence[Tensor], clean: Sequence[Tensor], gamma: float, beta: float
) -> None:
    """CR-SAM: ``g+ + gamma * (g+ + g- - 2 g0) + beta * (g+ - g-)``, written into ``g-``.

    Rearranged as ``(1 + gamma + beta) g+ + (gamma - beta) g- - 2 gamma g0`` so no temporary is needed;
    ``gamma = beta = 0`` gives ``g+``, SAM's gradient.

    Args:
        minus: ``g-``, the gradient at ``w - e`` (overwritten with the final gradient).
        plus: ``g+``, the gradient at ``w + e``.
        clean: ``g0``.
        gamma: weight of the curvature term.
        beta: weight of the slope term.
    """
    if not minus:
        return
    out = list(minus)
    torch._foreach_mul_(out, gamma - beta)
    torch._foreach_add_(out, list(plus), alpha=1.0 + gamma + beta)
    torch._foreach_add_(out, list(clean), alpha=-2.0 * gamma)


def looksam_orthogonal_(clean: Sequence[Tensor], perturbed: Sequence[Tensor], coefficient: Tensor) -> None:
    """LookSAM's ``gv = gp - coefficient * g0`` (the part of ``gp`` orthogonal to ``g0``), in ``g0``.

    Args:
        clean: ``g0`` (overwritten with ``gv``).
        perturbed: ``gp``.
        coefficient: 0-d tensor ``<g0, gp> / ||g0||^2``.
    """
    if not clean:
        return
    scale_by(clean, -coefficient, inplace=True)
    torch._foreach_add_(list(clean), list(perturbed))
