"""The training-curves figure: epoch mean losses and the validation metric."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from monai_sam.visualize.figure import pyplot, save_figure, ticker

__all__ = ["plot_training_curves"]


def plot_training_curves(
    history: Sequence[Mapping[str, float]], path: str | os.PathLike, metric_name: str = "val_auc"
) -> str:
    """Draw the epoch means of ``loss`` and ``loss_perturbed`` (left axis) and ``metric_name`` (right axis).

    Args:
        history: one entry per epoch: ``epoch`` and any of ``loss``, ``loss_perturbed``, ``metric`` (NaN or
            absent values are not drawn: a plain optimizer has no perturbed loss, validation may skip epochs).
        path: the PNG file.
        metric_name: the validation metric's name, for its axis and legend.

    Returns:
        The absolute path written.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    epochs = np.array([h["epoch"] for h in history], dtype=float)

    def column(key: str) -> np.ndarray:
        return np.array([float(h.get(key, math.nan)) for h in history], dtype=float)

    lines = []
    for key, label, style in (
        ("loss", "training loss (clean pass)", "-o"),
        ("loss_perturbed", "perturbed loss", "--s"),
    ):
        values = column(key)
        keep = np.isfinite(values)
        if keep.any():
            lines += ax.plot(epochs[keep], values[keep], style, markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(ticker().MaxNLocator(integer=True))
    ax.set_ylabel("cross-entropy (epoch mean)")
    metric = column("metric")
    keep = np.isfinite(metric)
    if keep.any():
        right = ax.twinx()
        lines += right.plot(
            epochs[keep], metric[keep], "-^", color="tab:green", markersize=3, label=metric_name
        )
        right.set_ylabel(metric_name)
        if metric_name.endswith(("auc", "accuracy", "f1")) or "sensitivity" in metric_name:
            right.set_ylim(0.0, 1.0)
    if len(epochs):
        ax.set_xlim(0.5, max(epochs.max(), 1.0) + 0.5)
    ax.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
    ax.set_title("training curves")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
