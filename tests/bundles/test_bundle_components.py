"""Unit tests of monai_sam.bundle: metrics, report writers, inputs and checkpoint loading."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from monai.handlers import EarlyStopHandler, LrScheduleHandler, StatsHandler
from PIL import Image

import monai_sam.bundle.distributed as distributed
from monai_sam.bundle import (
    ClassificationReport,
    ClassificationScore,
    MetricsJSONWriter,
    PredictionWriter,
    bundle_datalist,
    image_folder_datalist,
    load_network_checkpoint,
    rank_handlers,
    select_split,
)
from monai_sam.networks import build_network

CLASSES = ["benign", "malignant", "normal"]


def _decollated(probs: torch.Tensor, labels: list[int], names: list[str] | None = None) -> list[dict]:
    names = names or [f"img{i}.png" for i in range(len(labels))]
    return [
        {
            "pred": p,
            "label": torch.tensor(y),
            "image": MetaTensor(torch.zeros(1, 2, 2), meta={"filename_or_obj": n}),
        }
        for p, y, n in zip(probs, labels, names)
    ]


def _run_epoch(metric, batches):
    """Feed decollated batches to ``metric`` as an engine would; return engine.state.metrics."""
    engine = Engine(lambda e, batch: batch)
    metric.attach(engine, "key")
    engine.run(batches, max_epochs=1)
    return engine.state.metrics


def test_accuracy_is_correct_for_three_classes():
    # 2 of 4 correct. One-hot "binary" accuracy (the ignite pitfall) would report 0.75 here.
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    metrics = _run_epoch(ClassificationScore(CLASSES, metric="accuracy"), [_decollated(probs, [0, 1, 2, 0])])
    assert metrics["key"] == pytest.approx(0.5)


def test_report_flattens_selected_metrics_over_batches():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    labels = [0, 1, 2, 1]
    batches = [_decollated(probs[:2], labels[:2]), _decollated(probs[2:], labels[2:])]
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
        _run_epoch(metric, [_decollated(torch.full((2, 3), 1 / 3), [0, 1])])


def test_prediction_writer_rows(tmp_path):
    probs = torch.tensor([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    writer = PredictionWriter(tmp_path / "p.csv", CLASSES)
    engine = Engine(lambda e, batch: batch)
    writer.attach(engine)
    engine.run([_decollated(probs, [1, 2], ["b.png", "a.png"])], max_epochs=1)
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["a.png", "b.png"]
    assert rows[1]["predicted"] == "malignant" and rows[1]["correct"] == "1"
    assert rows[0]["label"] == "normal" and rows[0]["correct"] == "0"
    assert float(rows[0]["prob_benign"]) == pytest.approx(0.6)


def test_prediction_writer_without_labels(tmp_path):
    writer = PredictionWriter(tmp_path / "p.csv", CLASSES)
    engine = Engine(lambda e, batch: batch)
    writer.attach(engine)
    items = [{"pred": torch.tensor([0.1, 0.1, 0.8]), "label": None, "image": MetaTensor(torch.zeros(1))}]
    engine.run([items], max_epochs=1)
    with open(tmp_path / "p.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["predicted"] == "normal" and "label" not in rows[0]


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


def test_image_folder_datalist(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "sub/a.jpg"):
        Image.new("L", (40, 40)).save(tmp_path / name)
    for name in ("b_mask.png", "notes.txt", "split.json", "broken.png"):
        (tmp_path / name).write_bytes(b"x")
    items = image_folder_datalist(tmp_path)  # broken.png: skipped with a logged warning
    assert [i["image"] for i in items] == [str(tmp_path / "b.png"), str(tmp_path / "sub" / "a.jpg")]
    with pytest.raises(FileNotFoundError, match=r"input_dir .* is not a directory"):
        image_folder_datalist(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image"):
        image_folder_datalist(tmp_path / "empty")


def test_bundle_datalist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset_dir '/no/such/dir' is not a directory.*phantom"):
        bundle_datalist("/no/such/dir", "", str(tmp_path))
    with pytest.raises(ValueError, match=r"num_classes must be 3 .* or 2"):
        bundle_datalist("", "", str(tmp_path), num_classes=4)


def test_select_split():
    split = {"training": [1], "validation": [2], "test": []}
    assert select_split(split, "val") == [2]
    with pytest.raises(ValueError, match="eval_split must be"):
        select_split(split, "holdout")
    with pytest.raises(ValueError, match="'test' split is empty"):
        select_split(split, "test")


def test_load_network_checkpoint(tmp_path):
    torch.manual_seed(0)
    trained = build_network("resnet18", 3)
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    net = load_network_checkpoint(build_network("resnet18", 3), tmp_path / "model.pt")
    torch.testing.assert_close(net.fc.weight, trained.fc.weight)
    with pytest.raises(
        ValueError, match=r"'fc.weight' has shape \(3, 512\) in the file but \(2, 512\).*num_classes"
    ):
        load_network_checkpoint(build_network("resnet18", 2), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="does not match the configured network"):
        load_network_checkpoint(build_network("resnet50", 3), tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="train first"):
        load_network_checkpoint(trained, tmp_path / "absent.pt")


def test_rank_handlers_keep_control_handlers_off_rank_zero(monkeypatch, tmp_path):
    lr = LrScheduleHandler(torch.optim.lr_scheduler.StepLR(torch.optim.SGD([torch.zeros(1)], lr=0.1), 1))
    stop = EarlyStopHandler(patience=1, score_function=lambda e: 0.0)
    output = [
        StatsHandler(),
        MetricsJSONWriter(tmp_path / "m.json"),
        PredictionWriter(tmp_path / "p.csv", CLASSES),
    ]
    handlers = [lr, output[0], None, stop, *output[1:]]
    assert rank_handlers(handlers) == [lr, output[0], stop, *output[1:]]
    monkeypatch.setattr(distributed, "is_main_process", lambda: False)
    assert rank_handlers(handlers) == [lr, stop]


def test_remove_file_logs_closes_what_add_file_log_opened(tmp_path):
    import logging

    from monai_sam.bundle import add_file_log, remove_file_logs

    path = add_file_log(tmp_path / "run" / "train.log")
    logging.getLogger().info("kept")
    assert remove_file_logs(tmp_path / "run") == 1  # one handler, hung on several loggers
    logging.getLogger().info("not written after removal")
    assert not any(
        isinstance(h, logging.FileHandler) and h.baseFilename == path for h in logging.getLogger().handlers
    )
    assert "not written" not in open(path).read()
    assert remove_file_logs(tmp_path / "run") == 0
