"""Trainer handler: record each epoch's mean losses and validation metric, and draw the training curves."""

from __future__ import annotations

import json
import os

import torch
from ignite.engine import Engine, Events

from monai_sam.handlers.output_transforms import training_scalars
from monai_sam.json_files import write_json
from monai_sam.visualize import plot_training_curves

__all__ = ["TrainingCurves"]


class TrainingCurves:
    """Trainer handler: record each epoch's mean losses and validation metric; draw them when training ends.

    The epoch means of ``loss``, ``loss_perturbed`` and ``sharpness`` are also written to the trainer's
    ``state.metrics`` as ``epoch_loss``, ``epoch_loss_perturbed`` and ``epoch_sharpness``.

    Attach it after the ``ValidationHandler`` (so the epoch's validation has run). The history is also
    written to ``<output_path without .png>.json`` after every epoch; a resumed run reads the epochs it has
    already done from there, so its figure shows every epoch.

    Args:
        output_path: the PNG file (``training_curves.png`` in the run folder).
        evaluator: the validation engine, or None for losses only.
        metric_name: the key of ``evaluator.state.metrics`` to draw.
    """

    def __init__(
        self,
        output_path: str | os.PathLike[str],
        evaluator: Engine | None = None,
        metric_name: str = "val_auc",
    ) -> None:
        self.output_path = os.fspath(output_path)
        self.evaluator = evaluator
        self.metric_name = metric_name
        self.history: list[dict[str, float]] = []
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def attach(self, engine: Engine) -> None:
        """Collect on ``engine``'s iterations, record at its epochs' ends, draw when it completes."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._record)
        engine.add_event_handler(Events.COMPLETED, self.write)

    @property
    def history_path(self) -> str:
        """The JSON file of the history."""
        return os.path.splitext(self.output_path)[0] + ".json"

    def _reset(self, engine: Engine) -> None:
        self._sums, self._counts = {}, {}
        done = engine.state.epoch - 1  # epochs completed before this one (a resumed run starts later)
        if done > 0 and not self.history and os.path.isfile(self.history_path):
            with open(self.history_path) as f:
                self.history = [h for h in json.load(f) if h["epoch"] <= done]

    def _collect(self, engine: Engine) -> None:
        for key, value in training_scalars(engine.state.output).items():
            self._sums[key] = self._sums.get(key, 0.0) + value
            self._counts[key] = self._counts.get(key, 0) + 1

    def _record(self, engine: Engine) -> None:
        entry = {"epoch": float(engine.state.epoch)}
        entry.update({key: self._sums[key] / self._counts[key] for key in self._sums})
        # the epoch means also go to the trainer's metrics, so epoch-level loggers (MONAI's MLFlowHandler with
        # ``--tracking mlflow``, StatsHandler) record the perturbed loss and the sharpness too
        engine.state.metrics.update({f"epoch_{key}": value for key, value in entry.items() if key != "epoch"})
        # MONAI's ValidationHandler runs the evaluator with the trainer's epoch as its own: a validation of
        # this epoch has run when the epochs agree (val_interval > 1 skips epochs)
        evaluator = self.evaluator
        validated = evaluator is not None and evaluator.state.epoch == engine.state.epoch
        metrics = evaluator.state.metrics if evaluator is not None and validated else {}
        if self.metric_name in metrics:
            value = metrics[self.metric_name]
            entry["metric"] = float(value.item() if isinstance(value, torch.Tensor) else value)
        self.history = [h for h in self.history if h["epoch"] != entry["epoch"]] + [entry]
        write_json(self.history_path, self.history)

    def write(self, engine: Engine | None = None) -> str | None:
        """Draw the history to :attr:`output_path` (nothing before the first epoch)."""
        if not self.history:
            return None
        return plot_training_curves(self.history, self.output_path, self.metric_name)
