"""End-to-end bundle runs through the real CLI (``python -m monai.bundle``), at tiny sizes."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch
from bundle_cli import BUNDLES, CNN_NET, TINY, config, run_cli, train_args

from monai_sam.networks import build_network

pytestmark = pytest.mark.slow

VAL_METRICS = {
    "val_n",
    "val_auc",
    "val_accuracy",
    "val_balanced_accuracy",
    "val_macro_f1",
    "val_sensitivity_benign",
    "val_sensitivity_malignant",
    "val_sensitivity_normal",
}


def _check_training_outputs(out, network: str, optimizer: str) -> dict:
    """Assert a run left its checkpoint, logs, TensorBoard events and metrics; return the metrics."""
    assert (out / "model.pt").is_file()
    assert any((out / "tensorboard").iterdir())
    assert "Epoch[1] Metrics" in (out / "train.log").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert VAL_METRICS <= set(metrics["final"])
    assert metrics["key_metric"] == "val_auc" and metrics["best_metric_epoch"] == 1
    assert metrics["settings"]["network"] == network and metrics["settings"]["optimizer"] == optimizer
    return metrics


def test_train_cnn_bundle(trained_cnn):
    _check_training_outputs(trained_cnn, "resnet18", "sam")
    state = torch.load(trained_cnn / "model.pt", weights_only=True)
    assert state["fc.weight"].shape == (3, 512)  # plain state dict of the unwrapped network


def test_train_vit_bundle_default_network(tmp_path, phantom_dir):
    proc = run_cli(train_args("vit", tmp_path, phantom_dir), cwd=tmp_path)
    _check_training_outputs(tmp_path, "vit_hybrid_lite0", "sam")
    assert "sharpness" in proc.stdout  # the SAM output keys reach StatsHandler


def test_train_alternative_network_and_optimizer(tmp_path, phantom_dir):
    run_cli(
        train_args("vit", tmp_path, phantom_dir, "--network_name", "swin_micro", "--sam_optimizer", "asam"),
        cwd=tmp_path,
    )
    _check_training_outputs(tmp_path, "swin_micro", "asam")
    assert "features.0.0.weight" in torch.load(tmp_path / "model.pt", weights_only=True)


def test_train_plain_adam_two_classes(tmp_path, phantom_dir):
    run_cli(
        train_args("cnn", tmp_path, phantom_dir, "--sam_optimizer", "adam", "--num_classes", "2"),
        cwd=tmp_path,
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["settings"]["class_names"] == ["benign", "malignant"]
    assert "val_sensitivity_normal" not in metrics["final"]
    assert torch.load(tmp_path / "model.pt", weights_only=True)["fc.weight"].shape == (2, 512)


def test_train_with_amp_on_cpu(tmp_path, phantom_dir):
    # amp alone does nothing on a CPU (MONAI's meaning); the iteration's opt-in autocasts to bfloat16 there.
    args = ["--amp", "True", "--train#iteration#cpu_autocast_dtype", "bfloat16"]
    proc = run_cli(train_args("vit", tmp_path, phantom_dir, *args), cwd=tmp_path)
    metrics = _check_training_outputs(tmp_path, "vit_hybrid_lite0", "sam")
    assert metrics["final"]["val_n"] == 3
    assert all(torch.isfinite(t).all() for t in torch.load(tmp_path / "model.pt", weights_only=True).values())
    assert "loss: nan" not in proc.stdout + proc.stderr


def test_evaluate_writes_metrics_and_predictions(trained_cnn, phantom_dir, tmp_path):
    out = tmp_path / "eval"
    shutil.copytree(trained_cnn, out)
    run_cli(
        [
            "run",
            "--config_file",
            config("cnn", "train", "evaluate"),
            "--output_dir",
            str(out),
            "--dataset_dir",
            str(phantom_dir),
            *TINY,
            *CNN_NET,
        ],
        cwd=tmp_path,
    )
    split = json.loads((out / "data_split" / "split.json").read_text())
    metrics = json.loads((out / "eval_test_metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["ckpt_path"] == str(out / "model.pt")
    final = metrics["final"]
    assert {"auc", "accuracy", "balanced_accuracy", "macro_f1", "sensitivity_malignant", "auc_normal"} <= set(
        final
    )
    assert final["n"] == len(split["test"])
    with open(out / "eval_test_predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["image"] for r in rows) == sorted(i["image"] for i in split["test"])
    for row in rows:
        assert sum(float(row[f"prob_{c}"]) for c in ("benign", "malignant", "normal")) == pytest.approx(
            1, abs=1e-4
        )
    assert sum(int(r["correct"]) for r in rows) / len(rows) == pytest.approx(final["accuracy"])
    assert not list(out.glob("external_*"))  # no external set by default: nothing more is written


def test_inference_on_a_folder(trained_cnn, phantom_dir, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(phantom_dir / "malignant", images / "nested")
    shutil.copy(phantom_dir / "benign" / "benign (1).png", images / "case_a.png")
    shutil.copy(phantom_dir / "benign" / "benign (1).png", images / "case_a_mask.png")  # skipped
    run_cli(
        [
            "run",
            "--config_file",
            config("cnn", "inference"),
            "--dataset_dir",
            str(images),
            "--ckpt_path",
            str(trained_cnn / "model.pt"),
            "--output_dir",
            str(tmp_path / "out"),
            "--image_size",
            "32",
            *CNN_NET,
        ],
        cwd=tmp_path,
    )
    with open(tmp_path / "out" / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and not any("mask" in r["image"] for r in rows)
    assert {"prob_benign", "prob_malignant", "prob_normal", "predicted"} <= set(rows[0])
    assert all(r["predicted"] in ("benign", "malignant", "normal") for r in rows)


def test_ckpt_export_matches_eager_network(trained_cnn, tmp_path):
    configs = BUNDLES["cnn"] / "configs"
    run_cli(
        [
            "ckpt_export",
            "network_def",
            "--filepath",
            str(tmp_path / "model.ts"),
            "--ckpt_file",
            str(trained_cnn / "model.pt"),
            "--meta_file",
            str(configs / "metadata.json"),
            "--config_file",
            str(configs / "inference.json"),
            *CNN_NET,
        ],
        cwd=tmp_path,
    )
    scripted = torch.jit.load(str(tmp_path / "model.ts"))
    eager = build_network("resnet18", 3)
    eager.load_state_dict(torch.load(trained_cnn / "model.pt", weights_only=True))
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(scripted.eval()(x), eager.eval()(x))


def test_last_batch_of_one_image_is_dropped(tmp_path, phantom_dir):
    # 15 training images in batches of 7 leave one image, which BatchNorm cannot normalise in training mode
    # (a 1x1 feature map at 32 px); the bundle drops that batch instead of failing.
    run_cli(train_args("cnn", tmp_path, phantom_dir, "--batch_size", "7"), cwd=tmp_path)
    split = json.loads((tmp_path / "data_split" / "split.json").read_text())
    assert len(split["training"]) % 7 == 1
    _check_training_outputs(tmp_path, "resnet18", "sam")
