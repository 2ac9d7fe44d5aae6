"""``output_transform`` functions: what a handler or metric reads from ``engine.state.output``.

MONAI's engines decollate their output into a list of per-sample dicts; these functions turn it into the
values the bundles' loggers and metrics expect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from monai_sam.handlers.sharpness_stats import explain_negative_sharpness

__all__ = ["probabilities_and_labels", "training_scalars"]


def probabilities_and_labels(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Default ``output_transform`` of the classification metrics: ``pred`` (probabilities) and ``label``.

    Args:
        output: MONAI's decollated ``engine.state.output`` (a list of per-sample dicts, stacked here) or a
            batch dict. Labels may be class indices or one-hot vectors.
    """
    if isinstance(output, dict):
        return output["pred"], output["label"]
    preds = torch.stack([torch.as_tensor(item["pred"]).reshape(-1) for item in output])
    labels = torch.stack([torch.as_tensor(item["label"]).reshape(-1) for item in output])
    return preds, labels


def training_scalars(
    output: Any, keys: Sequence[str] = ("loss", "loss_perturbed", "sharpness")
) -> dict[str, float]:
    """``output_transform`` for StatsHandler/TensorBoardStatsHandler: the finite losses of an iteration.

    Reads the first item of MONAI's decollated output (a list of dicts) or a dict; keys that are absent
    or not finite (``sharpness`` of a plain optimizer is NaN) are left out. The first negative
    ``sharpness`` of the process also logs why it can be negative
    (:func:`~monai_sam.handlers.explain_negative_sharpness`).

    Args:
        output: the trainer's decollated ``engine.state.output`` (a list of dicts) or one dict.
        keys: the scalars to read.
    """
    item = output[0] if isinstance(output, (list, tuple)) else output
    scalars = {}
    for key in keys:
        value = item.get(key) if isinstance(item, dict) else None
        if value is None:
            continue
        value = float(value)
        if math.isfinite(value):
            scalars[key] = value
    explain_negative_sharpness(scalars.get("sharpness", math.nan))  # once, next to the first such line
    return scalars
