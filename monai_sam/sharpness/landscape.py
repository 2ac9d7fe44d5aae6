"""1-D and 2-D loss landscapes along filter-normalised directions (Li et al., NeurIPS 2018).

``L(w + a d1)`` on a line and ``L(w + a d1 + b d2)`` on a grid, with ``d1, d2`` Gaussian directions
rescaled filter by filter to the weights' filter norms, and zero on biases and normalisation layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from typing_extensions import Unpack

from monai_sam.sharpness.directions import filter_normalized_direction
from monai_sam.sharpness.objective import LossFn, LossObjective, ObjectiveOptions
from monai_sam.sharpness.vectors import Vector


@dataclass
class Landscape1D:
    """Losses along one direction: ``losses[i] = L(w + alphas[i] d)``; ``directions`` is ``[d]``."""

    alphas: np.ndarray
    losses: np.ndarray
    directions: list[Vector] = field(repr=False)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-friendly coordinates and losses."""
        return {"alphas": self.alphas.tolist(), "losses": self.losses.tolist()}


@dataclass
class Landscape2D:
    """Losses on a plane: ``losses[j, i] = L(w + alphas[i] d1 + betas[j] d2)``; ``directions = [d1, d2]``."""

    alphas: np.ndarray
    betas: np.ndarray
    losses: np.ndarray
    directions: list[Vector] = field(repr=False)

    def to_dict(self) -> dict[str, list]:
        """JSON-friendly coordinates and losses."""
        return {"alphas": self.alphas.tolist(), "betas": self.betas.tolist(), "losses": self.losses.tolist()}


def _directions(objective: LossObjective, given: list[Vector] | None, count: int, skip_bias_bn: bool) -> list:
    if given is not None:
        if len(given) != count or any(len(d) != len(objective.params) for d in given):
            raise ValueError(f"directions must be {count} list(s) with one tensor per measured parameter")
        return [[t.to(p) for t, p in zip(d, objective.params)] for d in given]
    generator = objective.generator()
    return [
        filter_normalized_direction(objective.model, objective.params, generator, skip_bias_bn)
        for _ in range(count)
    ]


def _grid(span: tuple[float, float], points: int) -> np.ndarray:
    if points < 2 or span[0] >= span[1]:
        raise ValueError(f"need points >= 2 and span[0] < span[1], got points={points}, span={span}")
    return np.linspace(span[0], span[1], points)


def _losses_at(objective: LossObjective, coords: list[tuple[float, ...]], directions: list[Vector]) -> list:
    losses = []
    for point in tqdm(coords, desc="loss landscape", leave=False, disable=not objective.progress):
        offset = [torch.zeros_like(w) for w in objective.base]
        for coef, d in zip(point, directions):
            torch._foreach_add_(offset, d, alpha=float(coef))
        objective.set_offset(offset)
        losses.append(objective.loss())
    return losses


def loss_landscape_1d(
    model: nn.Module,
    data: Any,
    loss_fn: LossFn,
    *,
    span: tuple[float, float] = (-1.0, 1.0),
    points: int = 21,
    direction: Vector | None = None,
    skip_bias_bn: bool = True,
    **options: Unpack[ObjectiveOptions],
) -> Landscape1D:
    """Loss along a line ``L(w + a d)`` for ``points`` values of ``a`` evenly spaced in ``span``.

    Cost: ``points`` loss evaluations (forward passes over all batches), no backward pass.

    Args:
        model: the network.
        data: a data loader or one batch.
        loss_fn: ``loss_fn(logits, targets)`` returning the batch-mean loss.
        span: range of the coefficient ``a``.
        points: number of grid points.
        direction: your own direction (one tensor per measured parameter, used as given, e.g.
            ``w_final - w_init``); default a filter-normalised Gaussian direction drawn with ``seed``.
        skip_bias_bn: zero the random direction on biases and normalisation layers.
        **options: see :class:`~monai_sam.sharpness.objective.ObjectiveOptions`.
    """
    alphas = _grid(span, points)
    with LossObjective(model, data, loss_fn, **options) as objective:
        dirs = _directions(objective, None if direction is None else [direction], 1, skip_bias_bn)
        losses = _losses_at(objective, [(a,) for a in alphas], dirs)
    return Landscape1D(alphas, np.asarray(losses), dirs)


def loss_landscape_2d(
    model: nn.Module,
    data: Any,
    loss_fn: LossFn,
    *,
    span: tuple[float, float] = (-1.0, 1.0),
    points: int = 11,
    directions: tuple[Vector, Vector] | None = None,
    skip_bias_bn: bool = True,
    **options: Unpack[ObjectiveOptions],
) -> Landscape2D:
    """Loss on a plane ``L(w + a d1 + b d2)`` on a ``points x points`` grid over ``span x span``.

    Cost: ``points**2`` loss evaluations (forward passes over all batches), no backward pass.

    Args:
        model: the network.
        data: a data loader or one batch.
        loss_fn: ``loss_fn(logits, targets)`` returning the batch-mean loss.
        span: range of both coefficients.
        points: grid points per axis.
        directions: your own pair of directions (used as given); default two independent
            filter-normalised Gaussian directions drawn with ``seed``.
        skip_bias_bn: zero the random directions on biases and normalisation layers.
        **options: see :class:`~monai_sam.sharpness.objective.ObjectiveOptions`.
    """
    axis = _grid(span, points)
    with LossObjective(model, data, loss_fn, **options) as objective:
        dirs = _directions(objective, None if directions is None else list(directions), 2, skip_bias_bn)
        losses = _losses_at(objective, [(a, b) for b in axis for a in axis], dirs)
    return Landscape2D(axis, axis.copy(), np.asarray(losses).reshape(points, points), dirs)
