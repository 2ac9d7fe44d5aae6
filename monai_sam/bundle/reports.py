"""Handlers that write a bundle's results: a metrics JSON and a per-image predictions CSV."""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

__all__ = ["MetricsJSONWriter", "PredictionWriter", "write_json"]


def _plain(value: Any) -> Any:
    """JSON-friendly copy of ``value``: numpy/torch scalars to floats, NaN/inf to ``None``."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(
    path: str | os.PathLike,
    content: Any,
    *,
    nan_as_null: bool = True,
    indent: int = 2,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Write ``content`` to ``path`` atomically, creating the folder.

    The JSON goes to a unique temporary file in the same folder, then ``os.replace`` puts it in place, so a
    crash never leaves half a file (the temporary is removed on failure).

    Args:
        path: the JSON file.
        content: what to write.
        nan_as_null: convert NaN/inf to ``null`` and numpy/torch scalars to numbers (strict JSON); False
            keeps Python's ``NaN`` tokens, which ``json.load`` reads back as floats.
        indent: JSON indentation.
        default: ``json.dump``'s fallback for values it cannot serialise (e.g. ``str``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = _plain(content) if nan_as_null else content
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=indent, default=default)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class MetricsJSONWriter:
    """After every evaluation epoch, write all metrics so far to a JSON file.

    The file holds ``final`` (the latest evaluation), ``best`` (the evaluation with the best key
    metric), ``best_metric``/``best_metric_epoch``, the ``key_metric`` name, a ``history`` list and any
    ``extra`` entries (e.g. the run's settings). It is rewritten each time, so an interrupted or
    early-stopped run still leaves it.

    Args:
        output_path: the JSON file.
        extra: more top-level entries (e.g. ``{"network": ..., "optimizer": ...}``).
    """

    def __init__(self, output_path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> None:
        self.output_path = os.fspath(output_path)
        self.extra = dict(extra or {})
        self.history: list[dict[str, Any]] = []

    def state_dict(self) -> dict[str, Any]:
        """The history so far (for resuming: ``monai_sam.bundle.ValidationState``)."""
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continue the history of a resumed run."""
        self.history = list(state_dict["history"])

    def attach(self, engine: Engine) -> None:
        """Write after each of ``engine``'s (evaluator's) epochs."""
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        """Record ``engine.state.metrics`` and rewrite the file."""
        entry = {"epoch": engine.state.epoch, **_plain(dict(engine.state.metrics))}
        self.history.append(entry)
        best_epoch = getattr(engine.state, "best_metric_epoch", -1)
        best = next((h for h in self.history if h["epoch"] == best_epoch), entry)
        content = {
            **self.extra,
            "key_metric": getattr(engine.state, "key_metric_name", None),
            "best_metric": getattr(engine.state, "best_metric", None),
            "best_metric_epoch": best_epoch,
            "final": entry,
            "best": best,
            "history": self.history,
        }
        write_json(self.output_path, content)


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
        output_path: str | os.PathLike,
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
        for item in engine.state.output:
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
