"""The confusion-matrix figure of arg-max predictions: counts and the share of each true class."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from monai_sam.metrics import confusion_matrix
from monai_sam.visualize.figure import pyplot, save_figure

__all__ = ["plot_confusion_matrix"]


def plot_confusion_matrix(
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
) -> str:
    """Draw the confusion matrix of the arg-max predictions: counts and the share of each true class.

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
    n = len(class_names)
    counts = confusion_matrix(labels, probs.argmax(axis=1), n)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.3 * n + 2.2, 1.3 * n + 1.6))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{counts[i, j]}\n{share[i, j]:.0%}",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(n), list(class_names))
    ax.set_yticks(range(n), list(class_names))
    ax.set_xlabel("predicted class (arg-max)")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(title or f"confusion matrix, {counts.sum()} images, accuracy {accuracy:.3f}")
    return save_figure(fig, path)
