"""Filter-normalised random directions in weight space (Li et al., NeurIPS 2018)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from monai_sam.sharpness.vectors import Vector, random_like

_NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.GroupNorm,
    nn.LayerNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def norm_layer_params(model: nn.Module) -> set[int]:
    """``id`` of every parameter owned directly by a normalisation layer (BatchNorm, GroupNorm, ...)."""
    return {
        id(p) for m in model.modules() if isinstance(m, _NORM_LAYERS) for p in m.parameters(recurse=False)
    }


def normalize_filters(direction: Tensor, weight: Tensor) -> Tensor:
    """Rescale each filter of ``direction`` to the norm of the matching filter of ``weight``.

    A filter is a slice along dimension 0 (an output channel of a convolution, a row of a linear
    layer); a tensor with fewer than two dimensions is one filter. A filter whose weight norm or
    direction norm is zero becomes zero (no division by zero).

    Args:
        direction: random direction, same shape as ``weight``.
        weight: the weight tensor.
    """
    rows = 1 if weight.dim() < 2 else weight.shape[0]
    d, w = direction.reshape(rows, -1), weight.reshape(rows, -1)
    d_norm = torch.linalg.vector_norm(d, dim=1, keepdim=True)
    w_norm = torch.linalg.vector_norm(w, dim=1, keepdim=True)
    factor = torch.where(d_norm > 0, w_norm / d_norm.clamp_min(torch.finfo(d.dtype).tiny), 0.0)
    return (d * factor).reshape_as(direction)


def filter_normalized_direction(
    model: nn.Module,
    params: list[nn.Parameter],
    generator: torch.Generator,
    skip_bias_bn: bool = True,
) -> Vector:
    """Gaussian direction, filter-normalised to the weights, as in Li et al. (2018).

    Args:
        model: the network (used to find normalisation layers).
        params: the parameters the direction spans.
        generator: CPU generator for the Gaussian draw.
        skip_bias_bn: set the direction to zero for biases, normalisation-layer parameters and every
            other tensor with fewer than two dimensions (Li et al.'s recommended setting); when False
            such tensors are normalised as one filter.
    """
    skipped = norm_layer_params(model) if skip_bias_bn else set()
    direction = random_like(list(params), generator)
    out = []
    for d, p in zip(direction, params):
        if skip_bias_bn and (p.dim() < 2 or id(p) in skipped):
            out.append(torch.zeros_like(d))
        else:
            out.append(normalize_filters(d, p.detach()))
    return out
