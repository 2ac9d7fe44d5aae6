"""ROC figures: one-versus-rest curves of every class, and one binary curve with its operating point."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from monai_sam.metrics import roc_auc_binary, roc_curve
from monai_sam.visualize.figure import pyplot, save_figure

__all__ = ["plot_binary_roc", "plot_roc_curves"]


def plot_roc_curves(
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
) -> str:
    """Draw the one-versus-rest ROC curve of every class, each with its AUC in the legend.

    Args:
        labels: integer labels, shape ``(n,)``.
        probs: class probabilities, shape ``(n, C)``.
        class_names: the ``C`` class names in label order.
        path: the PNG file.
        title: the figure title.

    Returns:
        The absolute path written.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    for index, name in enumerate(class_names):
        positive = labels == index
        if positive.all() or not positive.any():
            ax.plot([], [], label=f"{name}: undefined (no {'negatives' if positive.all() else 'positives'})")
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, index])
        auc = roc_auc_binary(positive, probs[:, index])
        ax.plot(fpr, tpr, label=f"{name} vs rest: AUC {auc:.3f} ({int(positive.sum())} positives)")
    _finish_roc(ax, title or f"ROC curves, {len(labels)} images")
    return save_figure(fig, path)


def _finish_roc(ax: Any, title: str, fontsize: float | None = None) -> None:
    """The chance diagonal, unit square, axis labels, title, legend and grid of a ROC figure."""
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(title, fontsize=fontsize)
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)


def plot_binary_roc(
    labels: np.ndarray,
    scores: np.ndarray,
    path: str | os.PathLike,
    title: str = "",
    operating_point: tuple[float, float] | None = None,
    legend: str = "",
) -> str:
    """Draw one binary ROC curve, its AUC, and the operating point (1 - specificity, sensitivity) if given.

    Args:
        labels: 0/1, shape ``(n,)``; 1 marks the positive class.
        scores: binary scores, shape ``(n,)``.
        path: the PNG file.
        title: the figure title.
        operating_point: ``(sensitivity, specificity)`` at the threshold in use (NaN values: not drawn).
        legend: what the operating point is, for the legend (e.g. where its threshold was chosen).

    Returns:
        The absolute path written.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    positive = np.asarray(labels).astype(bool)
    fpr, tpr, _ = roc_curve(positive, scores)
    auc = roc_auc_binary(positive, scores)
    ax.plot(
        fpr, tpr, label=f"AUC {auc:.3f} ({int(positive.sum())} positive, {int((~positive).sum())} negative)"
    )
    if operating_point is not None and all(np.isfinite(operating_point)):
        sens, spec = operating_point
        ax.plot([1 - spec], [sens], "o", color="tab:red", label=legend or "operating point")
    _finish_roc(ax, title or f"ROC curve, {len(positive)} images", fontsize=9)
    return save_figure(fig, path)
