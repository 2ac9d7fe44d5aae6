"""Unit tests of monai_sam.bundle: inputs, the handlers each torchrun rank attaches, the run's log file."""

from __future__ import annotations

import logging

import pytest
import torch
from monai.handlers import EarlyStopHandler, LrScheduleHandler, StatsHandler
from PIL import Image

import monai_sam.bundle.torchrun as torchrun
from monai_sam.bundle import (
    add_file_log,
    bundle_datalist,
    image_folder_datalist,
    rank_handlers,
    remove_file_logs,
    select_split,
)
from monai_sam.handlers import MetricsJSONWriter, PredictionWriter

CLASSES = ["benign", "malignant", "normal"]


def test_image_folder_datalist(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "sub/a.jpg"):
        Image.new("L", (40, 40)).save(tmp_path / name)
    for name in ("b_mask.png", "notes.txt", "split.json", "broken.png"):
        (tmp_path / name).write_bytes(b"x")
    items = image_folder_datalist(tmp_path)  # broken.png: skipped with a logged warning
    assert [i["image"] for i in items] == [str(tmp_path / "b.png"), str(tmp_path / "sub" / "a.jpg")]
    with pytest.raises(FileNotFoundError, match=r"dataset_dir .* is not a directory"):
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
    monkeypatch.setattr(torchrun, "is_main_process", lambda: False)
    assert rank_handlers(handlers) == [lr, stop]


def test_remove_file_logs_closes_what_add_file_log_opened(tmp_path):
    path = add_file_log(tmp_path / "run" / "train.log")
    logging.getLogger().info("kept")
    assert remove_file_logs(tmp_path / "run") == 1  # one handler, hung on several loggers
    logging.getLogger().info("not written after removal")
    assert not any(
        isinstance(h, logging.FileHandler) and h.baseFilename == path for h in logging.getLogger().handlers
    )
    assert "not written" not in open(path).read()
    assert remove_file_logs(tmp_path / "run") == 0
