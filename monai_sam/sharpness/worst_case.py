"""Worst-case, adaptive (Andriushchenko et al., ICML 2023) and SAM-direction sharpness.

With a scale vector ``c`` (``c = 1`` for worst-case sharpness, ``c = |w| + eta`` for adaptive
sharpness) the measured quantity is

    S(w) = max_{||delta / c||_p <= rho} L(w + delta) - L(w),   p in {2, inf},

which we write as ``delta = c * z`` with ``||z||_p <= rho``. The maximum is estimated from below by
projected gradient ascent in ``z``: from ``z = 0`` and from ``random_starts`` random points in the
ball, ``steps`` steps ``z <- Proj(z + eta_t * u)`` with ``u = g_z / ||g_z||_2`` (p = 2) or
``u = sign(g_z)`` (p = inf), ``g_z = c * grad L(w + c z)``, and a linearly decaying step
``eta_t = rho * (steps - t) / steps``. The largest loss seen at any iterate is reported, so the
estimate is never negative and never below the SAM-direction sharpness (the first step from ``z = 0``
is the SAM point when p = 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from typing_extensions import Unpack

from monai_sam.sharpness.objective import LossFn, LossObjective, ObjectiveOptions
from monai_sam.sharpness.vectors import Vector, norm, random_like, scale

NORMS = ("l2", "linf")
# Default radii: mild perturbations for each (adaptive, norm); always state rho when reporting.
DEFAULT_RHO = {(False, "l2"): 0.05, (False, "linf"): 0.001, (True, "l2"): 0.1, (True, "linf"): 0.002}


@dataclass
class SharpnessResult:
    """Result of a sharpness measure.

    Attributes:
        sharpness: ``perturbed_loss - loss``.
        loss: L(w).
        perturbed_loss: the largest L(w + delta) found in the perturbation set.
        rho: radius of the perturbation set.
        norm: ``"l2"`` or ``"linf"``.
        adaptive: whether the set was scaled element-wise by ``|w| + eta``.
        forward_passes: forward passes through the model (backward passes are one fewer per start).
        per_batch: whether the maximum was taken per batch and averaged (m-sharpness).
    """

    sharpness: float
    loss: float
    perturbed_loss: float
    rho: float
    norm: str
    adaptive: bool
    forward_passes: int
    per_batch: bool = False


def _random_start(objective: LossObjective, rho: float, p: str, generator: torch.Generator) -> Vector:
    if p == "linf":  # uniform in the cube [-rho, rho]^d
        return [
            (2 * torch.rand(x.shape, generator=generator, dtype=torch.float64) - 1).to(x) * rho
            for x in objective.params
        ]
    # uniform in the L2 ball: Gaussian direction, radius rho * U^(1/d)
    z = random_like(objective.params, generator)
    dim = sum(x.numel() for x in z)
    radius = rho * float(torch.rand((), generator=generator, dtype=torch.float64)) ** (1.0 / dim)
    return scale(z, radius / float(norm(z)))


def _ascent_step(z: Vector, g_z: Vector, step: float, rho: float, p: str) -> Vector | None:
    if p == "linf":
        z = torch._foreach_add(z, torch._foreach_mul(torch._foreach_sign(g_z), step))
        torch._foreach_clamp_min_(z, -rho)
        torch._foreach_clamp_max_(z, rho)
        return z
    g_norm = float(norm(g_z))
    if g_norm == 0.0:
        return None  # stationary point: no ascent direction
    z = torch._foreach_add(z, scale(g_z, step / g_norm))
    z_norm = float(norm(z))
    return scale(z, rho / z_norm) if z_norm > rho else z


def _offset(z: Vector, c: Vector | None) -> Vector:
    return z if c is None else torch._foreach_mul(z, c)


def _projected_ascent(
    objective: LossObjective, z: Vector, c: Vector | None, rho: float, p: str, steps: int, bar: tqdm
) -> float:
    best = -float("inf")
    for t in range(steps):
        objective.set_offset(_offset(z, c))
        loss, grad = objective.loss_and_grad()
        best = max(best, loss)
        bar.update()
        z_next = _ascent_step(z, _offset(grad, c), rho * (steps - t) / steps, rho, p)
        if z_next is None:
            return best
        z = z_next
    objective.set_offset(_offset(z, c))
    return max(best, objective.loss())


def _max_in_ball(
    objective: LossObjective,
    c: Vector | None,
    rho: float,
    p: str,
    steps: int,
    random_starts: int,
    generator: torch.Generator,
    bar: tqdm,
) -> tuple[float, float]:
    objective.set_offset(None)  # a previous batch may have left the weights perturbed
    base_loss = objective.loss()
    starts = [[torch.zeros_like(w) for w in objective.base]]
    starts += [_random_start(objective, rho, p, generator) for _ in range(random_starts)]
    return base_loss, max(_projected_ascent(objective, z, c, rho, p, steps, bar) for z in starts)


def _per_batch_mean(objective: LossObjective, per_batch: bool, measure) -> tuple[float, float]:
    """``measure()`` -> (loss, perturbed loss) on L, or its sample-weighted mean over single batches."""
    if not per_batch:
        return measure()
    loss = perturbed = 0.0
    for index, weight in enumerate(objective.weights):
        with objective.only_batch(index):
            batch_loss, batch_perturbed = measure()
        loss, perturbed = loss + weight * batch_loss, perturbed + weight * batch_perturbed
    return loss, perturbed


def _sharpness(
    model: nn.Module,
    data: Any,
    loss_fn: LossFn,
    rho: float | None,
    norm_: str,
    steps: int,
    random_starts: int,
    eta: float | None,
    per_batch: bool,
    options: dict,
) -> SharpnessResult:
    # eta is None: worst-case (c = 1); a float: adaptive (c = |w| + eta)
    adaptive = eta is not None
    if norm_ not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm_!r}")
    rho = DEFAULT_RHO[adaptive, norm_] if rho is None else float(rho)
    if rho <= 0 or steps < 1 or random_starts < 0:
        raise ValueError(f"need rho > 0, steps >= 1, random_starts >= 0; got {rho}, {steps}, {random_starts}")
    with LossObjective(model, data, loss_fn, **options) as objective:
        c = [w.abs().add_(eta) for w in objective.base] if adaptive else None
        generator = objective.generator()
        total = (1 + random_starts) * steps * (len(objective.batches) if per_batch else 1)
        name = "adaptive sharpness" if adaptive else "worst-case sharpness"
        with tqdm(total=total, desc=name, leave=False, disable=not objective.progress) as bar:
            loss, best = _per_batch_mean(
                objective,
                per_batch,
                lambda: _max_in_ball(objective, c, rho, norm_, steps, random_starts, generator, bar),
            )
        return SharpnessResult(
            best - loss, loss, best, rho, norm_, adaptive, objective.forward_passes, per_batch
        )


def worst_case_sharpness(
    model: nn.Module,
    data: Any,
    loss_fn: LossFn,
    *,
    rho: float | None = None,
    norm: str = "l2",
    steps: int = 10,
    random_starts: int = 1,
    per_batch: bool = False,
    **options: Unpack[ObjectiveOptions],
) -> SharpnessResult:
    """Worst-case sharpness ``max_{||delta||_p <= rho} L(w + delta) - L(w)`` by projected gradient ascent.

    See the module docstring for the exact algorithm. Cost: ``(1 + random_starts) * steps`` gradient
    evaluations plus ``2 + random_starts`` loss evaluations, each over all batches.

    Args:
        model: the network.
        data: a data loader or one batch.
        loss_fn: ``loss_fn(logits, targets)`` returning the batch-mean loss.
        rho: radius (default 0.05 for ``"l2"``, 0.001 for ``"linf"``).
        norm: ``"l2"`` or ``"linf"``.
        steps: ascent steps per start.
        random_starts: random starting points in addition to ``delta = 0``.
        per_batch: maximise on each batch separately and report the sample-weighted mean
            (m-sharpness with m = the loader's batch size, as in Andriushchenko et al.); cost x batches.
        **options: see :class:`~monai_sam.sharpness.objective.ObjectiveOptions`.
    """
    return _sharpness(model, data, loss_fn, rho, norm, steps, random_starts, None, per_batch, options)


def adaptive_sharpness(
    model: nn.Module,
    data: Any,
    loss_fn: LossFn,
    *,
    rho: float | None = None,
    norm: str = "l2",
    steps: int = 10,
    random_starts: int = 1,
    eta: float = 0.0,
    per_batch: bool = False,
    **options: Unpack[ObjectiveOptions],
) -> SharpnessResult:
    """Adaptive sharpness ``max_{||delta / (|w| + eta)||_p <= rho} L(w + delta) - L(w)``.

    Andriushchenko et al. (ICML 2023) use ``eta = 0``: each weight may move by a fraction of its own
    magnitude, which makes the measure invariant to rescaling layers of a ReLU network (zero weights do
    not move). Same algorithm and cost as :func:`worst_case_sharpness`.

    Args:
        model: the network.
        data: a data loader or one batch.
        loss_fn: ``loss_fn(logits, targets)`` returning the batch-mean loss.
        rho: radius (default 0.1 for ``"l2"``, 0.002 for ``"linf"``).
        norm: ``"l2"`` or ``"linf"``.
        steps: ascent steps per start.
        random_starts: random starting points in addition to ``delta = 0``.
        eta: added to ``|w|`` (ASAM uses 0.01); ``0`` keeps the measure exactly scale-invariant.
        **options: see :class:`~monai_sam.sharpness.objective.ObjectiveOptions`.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    return _sharpness(model, data, loss_fn, rho, norm, steps, random_starts, float(eta), per_batch, options)


def sam_sharpness(
    model: nn.Module,
    data: Any,
    loss_fn: LossFn,
    *,
    rho: float = 0.05,
    per_batch: bool = False,
    **options: Unpack[ObjectiveOptions],
) -> SharpnessResult:
    """SAM-direction sharpness ``L(w + rho g / ||g||_2) - L(w)`` with ``g = grad L(w)`` (one ascent step).

    Cost: one gradient and one loss evaluation over all batches. Returns ``0`` sharpness at a point
    where the gradient vanishes.

    Args:
        model: the network.
        data: a data loader or one batch.
        loss_fn: ``loss_fn(logits, targets)`` returning the batch-mean loss.
        rho: step length.
        per_batch: one SAM step per batch (its own gradient), sample-weighted mean of the results.
        **options: see :class:`~monai_sam.sharpness.objective.ObjectiveOptions`.
    """
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    with LossObjective(model, data, loss_fn, **options) as objective:
        loss, perturbed = _per_batch_mean(objective, per_batch, lambda: _sam_step(objective, rho))
        return SharpnessResult(
            perturbed - loss, loss, perturbed, float(rho), "l2", False, objective.forward_passes, per_batch
        )


def _sam_step(objective: LossObjective, rho: float) -> tuple[float, float]:
    loss, grad = objective.loss_and_grad()
    g_norm = float(norm(grad))
    if g_norm == 0.0:
        return loss, loss
    objective.set_offset(scale(grad, rho / g_norm))
    perturbed = objective.loss()
    objective.set_offset(None)
    return loss, perturbed
