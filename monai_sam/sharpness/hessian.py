"""Hessian spectrum summaries: largest eigenvalue (shifted power iteration) and trace (Hutchinson)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm
from typing_extensions import Unpack

from monai_sam.sharpness.objective import LossFn, LossObjective, ObjectiveOptions
from monai_sam.sharpness.vectors import dot, norm, random_like, scale


@dataclass
class HessianEigenResult:
    """Result of :func:`hessian_top_eigenvalue`.

    Attributes:
        eigenvalue: the largest (algebraic, i.e. most positive) eigenvalue: the Rayleigh quotient
            ``v^T H v`` at the last iterate.
        iterations: Hessian-vector products run, over both phases.
        converged: whether every phase's relative change fell below ``tol`` within ``iters``.
        forward_passes: forward passes through the model (Hessian-vector products x batches).
        eigenvector: the unit-norm eigenvector of ``eigenvalue`` (one tensor per parameter) if requested.
        most_negative: the smallest (most negative) eigenvalue when it was found: when it dominates
            in magnitude (power iteration then finds it first, negative curvature outweighs the
            positive) or when ``most_negative=True`` asked for it; None otherwise.
    """

    eigenvalue: float
    iterations: int
    converged: bool
    forward_passes: int
    eigenvector: list[Tensor] | None = field(default=None, repr=False)
    most_negative: float | None = None


@dataclass
class HessianTraceResult:
    """Result of :func:`hessian_trace`.

    Attributes:
        trace: mean of the probe estimates v^T H v.
        stderr: standard error of that mean (sample standard deviation / sqrt(probes)).
        probes: number of Rademacher probes (one Hessian-vector product each).
        samples: the individual estimates.
    """

    trace: float
    stderr: float
    probes: int
    samples: list[float] = field(repr=False)


def hessian_top_eigenvalue(
    model: nn.Module,
    data: Any,
    loss_fn: LossFn,
    *,
    iters: int = 100,
    tol: float = 1e-3,
    return_eigenvector: bool = False,
    most_negative: bool = False,
    **options: Unpack[ObjectiveOptions],
) -> HessianEigenResult:
    """Largest (algebraic) eigenvalue of the Hessian of L(w), by shifted power iteration.

    Phase 1 is power iteration on ``H``: from a Gaussian vector drawn from a CPU generator seeded
    with ``seed``, each step computes Hv by double backward over all batches, the Rayleigh quotient
    ``v^T H v`` and ``v <- Hv / ||Hv||``, until ``|lambda_t - lambda_{t-1}| <= tol * |lambda_t|``. It
    finds the eigenvalue of largest magnitude, ``lambda_d``. When ``lambda_d >= 0`` it is the largest
    eigenvalue and the result. When ``lambda_d < 0`` (negative curvature dominates, as away from a
    minimum) it is the most negative eigenvalue, reported as ``most_negative``, and phase 2 runs power
    iteration on the shifted ``H - lambda_d I``, whose eigenvalues ``lambda_i - lambda_d`` are all
    ``>= 0`` and largest for the largest ``lambda_i``: the result is its top eigenvalue plus
    ``lambda_d``. With ``most_negative=True`` and ``lambda_d >= 0``, phase 2 runs on the same shift
    to find the smallest eigenvalue instead. The same stopping rule applies to the shifted values.

    Args:
        model: the network.
        data: a data loader or one batch.
        loss_fn: ``loss_fn(logits, targets)`` returning the batch-mean loss.
        iters: maximum number of iterations (Hessian-vector products) of each phase.
        tol: relative tolerance on the eigenvalue between iterations.
        return_eigenvector: also return the eigenvector of the largest eigenvalue.
        most_negative: also find the smallest eigenvalue when the dominant one is positive (one more
            phase of at most ``iters`` products); it is found anyway when it dominates.
        **options: see :class:`~monai_sam.sharpness.objective.ObjectiveOptions`.
    """
    if iters < 1 or tol < 0:
        raise ValueError(f"iters must be >= 1 and tol >= 0, got iters={iters}, tol={tol}")
    with LossObjective(model, data, loss_fn, **options) as objective:
        generator = objective.generator()
        bar = tqdm(total=iters, desc="hessian eigenvalue", leave=False, disable=not objective.progress)
        dominant, v, steps, converged = _power_iteration(objective, generator, 0.0, iters, tol, bar)
        top, smallest, vector = dominant, None, v
        if dominant < 0 or most_negative:
            bar.reset(total=iters)
            shifted, w, more, converged_2 = _power_iteration(objective, generator, dominant, iters, tol, bar)
            steps, converged = steps + more, converged and converged_2
            if dominant < 0:  # H - dominant I is positive semi-definite: its top is the largest eigenvalue
                top, smallest, vector = shifted + dominant, dominant, w
            else:  # negative semi-definite: its dominant one is the smallest eigenvalue
                smallest = shifted + dominant
        bar.close()
        vector = [x.detach().clone() for x in vector] if return_eigenvector else None
        return HessianEigenResult(top, steps, converged, objective.forward_passes, vector, smallest)


def _power_iteration(
    objective: LossObjective, generator: torch.Generator, shift: float, iters: int, tol: float, bar: Any
) -> tuple[float, list[Tensor], int, bool]:
    """Power iteration on ``H - shift I``: (its dominant eigenvalue, eigenvector, iterations, converged)."""
    v = random_like(objective.params, generator)
    v = scale(v, 1.0 / float(norm(v)))
    eigenvalue, converged, iteration = math.nan, False, 0
    while iteration < iters:
        iteration += 1
        hv = objective.hvp(v)
        if shift != 0.0:
            hv = torch._foreach_sub(hv, scale(v, shift))
        previous, eigenvalue = eigenvalue, float(dot(v, hv))
        hv_norm = float(norm(hv))
        bar.update()
        bar.set_postfix(eigenvalue=f"{eigenvalue + shift:.4g}")
        if hv_norm == 0.0:
            converged = True  # (H - shift I) v = 0, e.g. a model linear in w: nothing to iterate on
            break
        v = scale(hv, 1.0 / hv_norm)
        if abs(eigenvalue - previous) <= tol * abs(eigenvalue):
            converged = True
            break
    return eigenvalue, v, iteration, converged


def hessian_trace(
    model: nn.Module,
    data: Any,
    loss_fn: LossFn,
    *,
    probes: int = 20,
    **options: Unpack[ObjectiveOptions],
) -> HessianTraceResult:
    """Trace of the Hessian of L(w) by Hutchinson's estimator with Rademacher probes.

    ``trace(H) = E[v^T H v]`` for ``v`` with independent +-1 entries; the estimate is the mean over
    ``probes`` draws (from a CPU generator seeded with ``seed``), with its standard error. For a
    diagonal H every draw is exact.

    Args:
        model: the network.
        data: a data loader or one batch.
        loss_fn: ``loss_fn(logits, targets)`` returning the batch-mean loss.
        probes: number of probes (Hessian-vector products); at least 2 for a standard error.
        **options: see :class:`~monai_sam.sharpness.objective.ObjectiveOptions`.
    """
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    with LossObjective(model, data, loss_fn, **options) as objective:
        generator = objective.generator()
        samples = []
        for _ in tqdm(range(probes), desc="hessian trace", leave=False, disable=not objective.progress):
            v = random_like(objective.params, generator, kind="rademacher")
            samples.append(float(dot(v, objective.hvp(v))))
    values = torch.tensor(samples, dtype=torch.float64)
    stderr = float(values.std() / math.sqrt(probes)) if probes > 1 else math.nan
    return HessianTraceResult(float(values.mean()), stderr, probes, samples)
