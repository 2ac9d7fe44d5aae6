"""Evaluator handler: one CSV row per image with its class probabilities, prediction and label."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events

__all__ = ["PredictionWriter"]


class PredictionWriter:
    """Write one CSV row per image: file name, per-class probabilities, predicted class, true label.

    Rows are collected over an evaluation epoch from the decollated ``engine.state.output`` (``pred``
    must hold probabilities, e.g. after ``Activationsd(softmax=True)``) and written at its end. The
    file name comes from the image's MetaTensor ``filename_or_obj``. Columns: ``image``,
    ``prob_<class>`` for every class, ``predicted``, ``predicted_index``, and, when labels are present,
    ``label``, ``label_index`` and ``correct``.

    Args:
        output_path: the CSV file.
        class_names: class names in label order.
        image_key: key of the image (for its file name).
        pred_key: key of the probabilities.
        label_key: key of the label (optional in the data).
    """

    def __init__(
        self,
        output_path: str | os.PathLike[str],
        class_names: Sequence[str],
        image_key: str = "image",
        pred_key: str = "pred",
        label_key: str = "label",
    ) -> None:
        self.output_path = os.fspath(output_path)
        self.class_names = [str(c) for c in class_names]
        self.image_key, self.pred_key, self.label_key = image_key, pred_key, label_key
        self.rows: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        """Collect on every iteration of ``engine``, write at the end of each epoch."""
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        """Drop the collected rows."""
        self.rows = []

    def collect(self, engine: Engine) -> None:
        """Turn the current decollated output into rows."""
        output: Any = engine.state.output  # MONAI's decollated batch: a list of dicts
        for item in output:
            self.rows.append(self._row(item))

    def _row(self, item: Mapping[str, Any]) -> dict[str, Any]:
        probs = torch.as_tensor(item[self.pred_key]).detach().float().reshape(-1).cpu()
        if probs.numel() != len(self.class_names):
            raise ValueError(
                f"predictions have {probs.numel()} classes but class_names has {len(self.class_names)}"
            )
        meta = getattr(item.get(self.image_key), "meta", {}) or {}
        index = int(probs.argmax())
        row: dict[str, Any] = {"image": str(meta.get("filename_or_obj", f"#{len(self.rows)}"))}
        row.update({f"prob_{c}": round(float(p), 6) for c, p in zip(self.class_names, probs.tolist())})
        row.update({"predicted": self.class_names[index], "predicted_index": index})
        if self.label_key in item and item[self.label_key] is not None:
            label = torch.as_tensor(item[self.label_key]).reshape(-1)
            label_index = int(label.argmax()) if label.numel() > 1 else int(label[0])
            row.update(
                {
                    "label": self.class_names[label_index],
                    "label_index": label_index,
                    "correct": int(label_index == index),
                }
            )
        return row

    def write(self, engine: Engine | None = None) -> None:
        """Write the collected rows (sorted by file name) to the CSV file."""
        os.makedirs(os.path.dirname(os.path.abspath(self.output_path)), exist_ok=True)
        rows = sorted(self.rows, key=lambda r: r["image"])
        fields = list(rows[0]) if rows else ["image", *[f"prob_{c}" for c in self.class_names], "predicted"]
        with open(self.output_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
