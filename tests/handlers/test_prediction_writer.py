"""monai_sam.handlers.PredictionWriter: one CSV row per image, with or without labels."""

from __future__ import annotations

import csv

import pytest
import torch
from decollated_outputs import CLASSES, decollated
from ignite.engine import Engine
from monai.data import MetaTensor

from monai_sam.handlers import PredictionWriter


def test_prediction_writer_rows(tmp_path):
    probs = torch.tensor([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    writer = PredictionWriter(tmp_path / "p.csv", CLASSES)
    engine = Engine(lambda e, batch: batch)
    writer.attach(engine)
    engine.run([decollated(probs, [1, 2], ["b.png", "a.png"])], max_epochs=1)
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
