"""Evaluator handler: draw the epoch's ROC curves and confusion matrix as PNGs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_sam.handlers.output_transforms import probabilities_and_labels
from monai_sam.visualize import plot_confusion_matrix, plot_roc_curves

__all__ = ["ClassificationPlots"]


class ClassificationPlots:
    """Evaluator handler: at the end of each epoch draw the ROC curves and the confusion matrix.

    Args:
        output_dir: the folder of the PNGs.
        class_names: class names in label order.
        prefix: file-name prefix: ``<prefix>roc.png`` and ``<prefix>confusion.png``.
        title: what the figures show, e.g. ``"test split"``.
        output_transform: maps ``engine.state.output`` to ``(probs, labels)``; see
            :func:`~monai_sam.handlers.probabilities_and_labels`.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        class_names: Sequence[str],
        prefix: str = "",
        title: str = "",
        output_transform: Any = probabilities_and_labels,
    ) -> None:
        self.output_dir = os.fspath(output_dir)
        self.class_names = [str(c) for c in class_names]
        self.prefix = prefix
        self.title = title
        self.output_transform = output_transform
        self._probs: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self.paths: list[str] = []

    def attach(self, engine: Engine) -> None:
        """Collect on every iteration of ``engine``, draw at the end of each epoch."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def _reset(self, engine: Engine) -> None:
        self._probs, self._labels = [], []

    def _collect(self, engine: Engine) -> None:
        probs, labels = (
            torch.as_tensor(x).detach().float().cpu() for x in self.output_transform(engine.state.output)
        )
        probs = probs.reshape(-1, probs.shape[-1])
        labels = labels.reshape(probs.shape[0], -1)
        self._probs.append(probs)
        self._labels.append(labels.argmax(dim=1) if labels.shape[1] > 1 else labels[:, 0].long())

    def write(self, engine: Engine | None = None) -> list[str]:
        """Draw the collected epoch; returns the PNG paths (none for an empty epoch)."""
        if not self._probs:
            return []
        probs = torch.cat(self._probs).numpy().astype(np.float64)
        labels = torch.cat(self._labels).numpy().astype(np.int64)
        what = f"{self.title}, " if self.title else ""
        accuracy = float((probs.argmax(axis=1) == labels).mean())
        self.paths = [
            plot_roc_curves(
                labels,
                probs,
                self.class_names,
                os.path.join(self.output_dir, f"{self.prefix}roc.png"),
                f"ROC curves, {what}{len(labels)} images",
            ),
            plot_confusion_matrix(
                labels,
                probs,
                self.class_names,
                os.path.join(self.output_dir, f"{self.prefix}confusion.png"),
                f"confusion matrix, {what}{len(labels)} images, accuracy {accuracy:.3f}",
            ),
        ]
        return self.paths
