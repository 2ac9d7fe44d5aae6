"""monai_sam.handlers.MetricsJSONWriter: best and final metrics, strict JSON (NaN as null)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from monai_sam.handlers import MetricsJSONWriter


def test_metrics_json_tracks_best_and_writes_null_for_nan(tmp_path):
    writer = MetricsJSONWriter(tmp_path / "m.json", extra={"settings": {"lr": 0.1}})
    history = [(1, 0.6), (2, 0.8), (3, float("nan"))]
    for epoch, auc in history:
        best = max(a for e, a in history[:epoch] if a == a)
        state = SimpleNamespace(
            epoch=epoch,
            metrics={"val_auc": np.float64(auc)},
            best_metric=best,
            best_metric_epoch=2 if epoch >= 2 else 1,
            key_metric_name="val_auc",
        )
        writer(SimpleNamespace(state=state))
    content = json.loads((tmp_path / "m.json").read_text())
    assert content["best"] == {"epoch": 2, "val_auc": 0.8}
    assert content["final"] == {"epoch": 3, "val_auc": None}
    assert content["settings"] == {"lr": 0.1} and len(content["history"]) == 3
