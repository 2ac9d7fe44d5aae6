"""The end of a bundle run: figures, summaries, the test evaluation after training, MLflow tracking."""

from __future__ import annotations

import numpy as np
import pytest
from bundle_cli import run_cli, train_args

from monai_sam.bundle import inference_summary
from monai_sam.metrics import roc_auc_binary, roc_curve


def test_roc_curve_area_is_the_auc_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60) + 0.4 * y, 1)  # many ties
    fpr, tpr, thresholds = roc_curve(y, scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1) and np.isinf(thresholds[0])
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_binary(y, scores), abs=1e-12)


def test_inference_summary_counts_classes(tmp_path, capsys):
    csv = tmp_path / "predictions.csv"
    csv.write_text("image,predicted\na.png,benign\nb.png,normal\nc.png,benign\n")
    text = inference_summary(csv, ["benign", "malignant", "normal"])
    assert "images: 3" in text and "predicted benign: 2" in text and "predicted malignant: 0" in text
    assert str(csv) in capsys.readouterr().out


@pytest.mark.slow
def test_training_leaves_plots_test_metrics_and_summary(trained_cnn):
    for name in (
        "training_curves.png",
        "test_metrics.json",
        "test_predictions.csv",
        "test_roc.png",
        "test_confusion.png",
    ):
        assert (trained_cnn / name).is_file(), name


@pytest.mark.slow
@pytest.mark.parametrize("bundle", ["cnn", "vit"])
def test_mlflow_tracking_logs_extras_and_settings(bundle, tmp_path, phantom_dir):
    mlflow = pytest.importorskip("mlflow")
    proc = run_cli([*train_args(bundle, tmp_path, phantom_dir), "--tracking", "mlflow"], cwd=tmp_path)
    assert "==== training finished ====" in proc.stdout
    client = mlflow.tracking.MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert runs, "no MLflow run in output_dir/mlruns.db"
    metrics = set().union(*(r.data.metrics for r in runs))
    params = {k: v for r in runs for k, v in r.data.params.items()}
    assert {"train_loss", "epoch_loss_perturbed", "epoch_sharpness", "val_auc"} <= metrics
    assert params["optimizer"] == "sam" and params["max_epochs"] == "1" and "network" in params
