"""The reliability diagram: observed fraction of positives against predicted probability."""

from __future__ import annotations

import os

import numpy as np

from monai_sam.metrics import ReliabilityBins
from monai_sam.visualize.figure import pyplot, save_figure

__all__ = ["plot_reliability"]


def plot_reliability(
    bins: ReliabilityBins, path: str | os.PathLike, title: str = "", caption: str = ""
) -> str:
    """Draw a reliability diagram: fraction of positives against mean probability per bin, and bin counts.

    Args:
        bins: the equal-width bins (:func:`monai_sam.metrics.reliability_bins`).
        path: the PNG file.
        title: the figure title.
        caption: a line under the title, e.g. the ECE and Brier score.

    Returns:
        The absolute path written.
    """
    plt = pyplot()
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(4.8, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    filled = bins.counts > 0
    centres = (bins.edges[:-1] + bins.edges[1:]) / 2
    width = np.diff(bins.edges)
    ax.bar(
        centres[filled],
        bins.fraction_positive[filled],
        width=width[filled],
        edgecolor="tab:blue",
        alpha=0.35,
        label="fraction positive per bin",
    )
    ax.plot(
        bins.mean_probability[filled],
        bins.fraction_positive[filled],
        "o-",
        markersize=3,
        color="tab:blue",
        label="(mean probability, fraction positive)",
    )
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction positive")
    ax.set_title(title + (f"\n{caption}" if caption else ""), fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    ax.grid(alpha=0.3)
    hist.bar(centres, bins.counts, width=width, color="grey", edgecolor="black")
    hist.set_xlabel("predicted probability of the positive class")
    hist.set_ylabel("images")
    return save_figure(fig, path)
