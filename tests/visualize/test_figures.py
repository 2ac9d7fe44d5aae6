"""monai_sam.visualize: every figure is written as a PNG."""

from __future__ import annotations

import numpy as np

from monai_sam.metrics import reliability_bins
from monai_sam.visualize import (
    plot_binary_roc,
    plot_confusion_matrix,
    plot_reliability,
    plot_roc_curves,
    plot_training_curves,
)


def test_plots_write_pngs(tmp_path):
    labels = np.array([0, 1, 2, 0, 1, 2])
    probs = np.eye(3)[[0, 1, 1, 0, 2, 2]] * 0.8 + 0.2 / 3
    names = ["benign", "malignant", "normal"]
    history = [{"epoch": 1, "loss": 1.0, "loss_perturbed": 1.2, "metric": 0.6}, {"epoch": 2, "loss": 0.8}]
    for path in (
        plot_roc_curves(labels, probs, names, tmp_path / "roc.png"),
        plot_confusion_matrix(labels, probs, names, tmp_path / "confusion.png"),
        plot_training_curves(history, tmp_path / "curves.png"),
        plot_binary_roc(labels == 1, probs[:, 1], tmp_path / "binary_roc.png", operating_point=(0.5, 0.75)),
        plot_reliability(reliability_bins(labels == 1, probs[:, 1], 5), tmp_path / "reliability.png"),
    ):
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
