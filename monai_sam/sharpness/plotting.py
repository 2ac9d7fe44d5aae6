"""PNG plots of loss landscapes (matplotlib, Agg canvas; the global pyplot backend is left alone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from monai_sam.sharpness.landscape import Landscape1D, Landscape2D


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_landscape_1d(
    landscape: Landscape1D | list[tuple[str, Landscape1D]],
    path: str | Path,
    *,
    title: str | None = None,
    log_scale: bool = False,
) -> Path:
    """Plot loss against the direction coefficient and write a PNG.

    Args:
        landscape: one result, or ``[(label, result), ...]`` to overlay several (e.g. Adam vs SAM).
        path: output PNG path (parent folders are created).
        title: figure title.
        log_scale: logarithmic loss axis.

    Returns:
        The path written.
    """
    curves = [("", landscape)] if isinstance(landscape, Landscape1D) else list(landscape)
    fig = Figure(figsize=(5, 3.6))
    ax = fig.add_subplot()
    for label, result in curves:
        ax.plot(result.alphas, result.losses, marker=".", label=label or None)
    ax.set_xlabel("alpha (filter-normalised direction)")
    ax.set_ylabel("loss")
    if log_scale:
        ax.set_yscale("log")
    if any(label for label, _ in curves):
        ax.legend()
    ax.grid(alpha=0.3)
    ax.set_title(title or "1-D loss landscape")
    return _save(fig, path)


def plot_landscape_2d(
    landscape: Landscape2D,
    path: str | Path,
    *,
    title: str | None = None,
    levels: int = 20,
    log_scale: bool = False,
) -> Path:
    """Contour plot of a 2-D landscape (filled contours, contour lines, the origin marked); writes a PNG.

    Args:
        landscape: result of :func:`~monai_sam.sharpness.loss_landscape_2d`.
        path: output PNG path (parent folders are created).
        title: figure title.
        levels: number of contour levels.
        log_scale: contour ``log10(loss)`` (useful when the loss spans orders of magnitude).

    Returns:
        The path written.
    """
    z = np.log10(np.maximum(landscape.losses, 1e-12)) if log_scale else landscape.losses
    fig = Figure(figsize=(5, 4.2))
    ax = fig.add_subplot()
    filled = ax.contourf(landscape.alphas, landscape.betas, z, levels=levels, cmap="viridis")
    ax.contour(landscape.alphas, landscape.betas, z, levels=levels, colors="k", linewidths=0.4)
    ax.plot([0], [0], marker="*", color="red", markersize=10)
    fig.colorbar(filled, ax=ax, label="log10 loss" if log_scale else "loss")
    ax.set_xlabel("alpha (direction 1)")
    ax.set_ylabel("beta (direction 2)")
    ax.set_aspect("equal")
    ax.set_title(title or "2-D loss landscape")
    return _save(fig, path)
