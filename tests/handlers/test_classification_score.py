"""monai_sam.handlers.classification_metrics: ignite metrics from probabilities, correct for 3 classes."""

from __future__ import annotations

import pytest
import torch
from decollated_outputs import CLASSES, decollated
from ignite.engine import Engine

from monai_sam.handlers import ClassificationReport, ClassificationScore


def _run_epoch(metric, batches):
    """Feed decollated batches to ``metric`` as an engine would; return engine.state.metrics."""
    engine = Engine(lambda e, batch: batch)
    metric.attach(engine, "key")
    engine.run(batches, max_epochs=1)
    return engine.state.metrics


def test_accuracy_is_correct_for_three_classes():
    # 2 of 4 correct. One-hot "binary" accuracy (the ignite pitfall) would report 0.75 here.
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    metrics = _run_epoch(ClassificationScore(CLASSES, metric="accuracy"), [decollated(probs, [0, 1, 2, 0])])
    assert metrics["key"] == pytest.approx(0.5)


def test_report_flattens_selected_metrics_over_batches():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    labels = [0, 1, 2, 1]
    batches = [decollated(probs[:2], labels[:2]), decollated(probs[2:], labels[2:])]
    report = ClassificationReport(CLASSES, prefix="val_", include=["accuracy", "macro_auc", "sensitivity_*"])
    metrics = _run_epoch(report, batches)
    assert set(metrics) == {
        "val_accuracy",
        "val_macro_auc",
        "val_sensitivity_benign",
        "val_sensitivity_malignant",
        "val_sensitivity_normal",
    }
    assert metrics["val_accuracy"] == pytest.approx(0.75)
    assert metrics["val_sensitivity_malignant"] == pytest.approx(0.5)
    assert metrics["val_macro_auc"] == pytest.approx(1.0)


def test_score_rejects_bad_metric_and_wrong_class_count():
    with pytest.raises(ValueError, match="unknown metric 'auroc'"):
        ClassificationScore(CLASSES, metric="auroc")
    metric = ClassificationScore(["benign", "malignant"])
    with pytest.raises(ValueError, match="predictions have 3 columns but 2 classes"):
        _run_epoch(metric, [decollated(torch.full((2, 3), 1 / 3), [0, 1])])
