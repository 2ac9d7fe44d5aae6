"""Hessian spectrum summaries: dominant eigenvalue (power iteration) and trace (Hutchinson)."""

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
        eigenvalue: the Rayleigh quotient v^T H v at the last iterate.
        iterations: power iterations run (one Hessian-vector product each).
        converged: whether the relative change fell below ``tol`` before ``iters``.
        forward_passes: forward passes through the model (iterations x batches).
        eigenvector: the unit-norm eigenvector (one tensor per parameter) if requested.
    """

    eigenvalue: float
    iterations: int
    converged: bool
    forward_passes: int
    eigenvector: list[Tensor] | None = field(default=None, repr=False)


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
    **options: Unpack[ObjectiveOptions],
) -> HessianEigenResult:
    """Dominant eigenvalue of the Hessian of L(w) by power iteration on Hessian-vector products.

    Starts from a Gaussian vector drawn from a CPU generator seeded with ``seed``; each iteration
    computes Hv by double backward over all batches, the Rayleigh quotient ``v^T H v`` and
    ``v <- Hv / ||Hv||``; it stops when ``|lambda_t - lambda_{t-1}| <= tol * |lambda_t|``. Power iteration
    finds the eigenvalue of largest magnitude: at a minimum (H positive semi-definite) that is the top
    one; far from a minimum a large negative eigenvalue can dominate, so check the sign.

    Args:
        model: the network.
        data: a data loader or one batch.
        loss_fn: ``loss_fn(logits, targets)`` returning the batch-mean loss.
        iters: maximum number of iterations (Hessian-vector products).
        tol: relative tolerance on the eigenvalue between iterations.
        return_eigenvector: also return the eigenvector.
        **options: see :class:`~monai_sam.sharpness.objective.ObjectiveOptions`.
    """
    if iters < 1 or tol < 0:
        raise ValueError(f"iters must be >= 1 and tol >= 0, got iters={iters}, tol={tol}")
    with LossObjective(model, data, loss_fn, **options) as objective:
        v = random_like(objective.params, objective.generator())
        v = scale(v, 1.0 / float(norm(v)))
        eigenvalue, converged, iteration = math.nan, False, 0
        bar = tqdm(total=iters, desc="hessian eigenvalue", leave=False, disable=not objective.progress)
        while iteration < iters:
            iteration += 1
            hv = objective.hvp(v)
            previous, eigenvalue = eigenvalue, float(dot(v, hv))
            hv_norm = float(norm(hv))
            bar.update()
            bar.set_postfix(eigenvalue=f"{eigenvalue:.4g}")
            if hv_norm == 0.0:
                converged = True  # H v = 0 (e.g. a model linear in w): nothing to iterate on
                break
            v = scale(hv, 1.0 / hv_norm)
            if abs(eigenvalue - previous) <= tol * abs(eigenvalue):
                converged = True
                break
        bar.close()
        vector = [x.detach().clone() for x in v] if return_eigenvector else None
        return HessianEigenResult(eigenvalue, iteration, converged, objective.forward_passes, vector)


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
