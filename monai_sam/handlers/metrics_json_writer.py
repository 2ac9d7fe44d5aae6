"""Evaluator handler: the metrics of every evaluation so far, the best and the latest, in one JSON file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ignite.engine import Engine, Events

from monai_sam.json_files import json_ready, write_json

__all__ = ["MetricsJSONWriter"]


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

    def __init__(self, output_path: str | os.PathLike[str], extra: Mapping[str, Any] | None = None) -> None:
        self.output_path = os.fspath(output_path)
        self.extra = dict(extra or {})
        self.history: list[dict[str, Any]] = []

    def state_dict(self) -> dict[str, Any]:
        """The history so far (for resuming: :class:`~monai_sam.handlers.ValidationState`)."""
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continue the history of a resumed run."""
        self.history = list(state_dict["history"])

    def attach(self, engine: Engine) -> None:
        """Write after each of ``engine``'s (evaluator's) epochs."""
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        """Record ``engine.state.metrics`` and rewrite the file."""
        entry = {"epoch": engine.state.epoch, **json_ready(dict(engine.state.metrics))}
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
