"""The end of a bundle run: a short summary on stdout, and the run settings for MLflow.

The summary says where every output went and gives the key metrics (for inference, the class counts).
``TestAfterTraining`` moved to :mod:`monai_sam.handlers`; it is re-exported here so that configs users
copied, which name ``monai_sam.bundle.summary.TestAfterTraining``, still resolve.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from monai_sam.handlers.evaluation_after_training import TestAfterTraining

__all__ = [
    "TestAfterTraining",
    "evaluation_summary",
    "inference_summary",
    "print_summary",
    "track_settings",
    "training_summary",
]

#: Outputs of a run folder, in the order the summary lists them, with what they hold.
_OUTPUTS = (
    ("model.pt", "best checkpoint (highest validation key metric)"),
    ("checkpoint_final.pt", "final checkpoint (resumable)"),
    ("metrics.json", "validation metrics per epoch and settings"),
    ("training_curves.png", "training curves: loss, perturbed loss, validation metric"),
    ("test_metrics.json", "test-split metrics of model.pt"),
    ("test_predictions.csv", "test-split predictions per image"),
    ("test_roc.png", "test-split ROC curves per class"),
    ("test_confusion.png", "test-split confusion matrix"),
    ("train.log", "log"),
    ("tensorboard", "TensorBoard events (tensorboard --logdir ...)"),
)


def print_summary(
    title: str, outputs: Sequence[tuple[str, str]], metrics: Mapping[str, Any] | None = None
) -> str:
    """Print (and return) a summary block: the outputs that exist, then the metrics.

    Args:
        title: the first line, e.g. ``"training finished"``.
        outputs: ``(path, description)`` pairs; paths that do not exist are left out.
        metrics: ``name: value`` lines (floats shown with 4 decimals).
    """
    lines = ["", f"==== {title} ===="]
    shown = [(os.path.abspath(p), d) for p, d in outputs if p and os.path.exists(p)]
    if shown:
        lines.append("outputs:")
        lines += [f"  {p}  ({d})" for p, d in shown]
    if metrics:
        lines.append("metrics:")
        for name, value in metrics.items():
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
            lines.append(f"  {name}: {text}")
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    return text


def _load(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _key_metrics(result: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    names = ("macro_auc", "accuracy", "balanced_accuracy", "macro_f1", "malignant_sensitivity", "n")
    return {f"{prefix}{k}": result[k] for k in names if result.get(k) is not None}


def training_summary(output_dir: str | os.PathLike) -> str:
    """Print the summary of a training run from the files in ``output_dir``.

    Args:
        output_dir: the run folder.
    """
    out = os.fspath(output_dir)
    metrics: dict[str, Any] = {}
    validation = _load(os.path.join(out, "metrics.json"))
    if validation:
        key = validation.get("key_metric") or "key metric"
        metrics[f"best validation {key}"] = validation.get("best_metric")
        metrics["best epoch"] = validation.get("best_metric_epoch")
        metrics["epochs run"] = len(validation.get("history", []))
    test = _load(os.path.join(out, "test_metrics.json")).get("final", {})
    metrics.update(_key_metrics(test, "test "))
    outputs = [(os.path.join(out, name), what) for name, what in _OUTPUTS]
    return print_summary("training finished", outputs, metrics)


def evaluation_summary(
    metrics_json: str | os.PathLike,
    outputs: Sequence[str | os.PathLike],
    split: str = "",
    extra_metrics: Mapping[str, Any] | None = None,
) -> str:
    """Print the summary of an evaluation run.

    Args:
        metrics_json: the evaluation's metrics JSON.
        outputs: the other files it wrote (predictions CSV, PNGs, external sets' files, log).
        split: the evaluated split's name.
        extra_metrics: more ``name: value`` lines after the split's metrics (e.g. the external sets').
    """
    result = _load(os.fspath(metrics_json)).get("final", {})
    files = [(os.fspath(metrics_json), "metrics")] + [(os.fspath(p), "") for p in outputs]
    files = [(p, d or os.path.splitext(p)[1].lstrip(".")) for p, d in files]
    metrics = {**_key_metrics(result), **(extra_metrics or {})}
    return print_summary(f"evaluation of the {split or 'chosen'} split finished", files, metrics)


def inference_summary(predictions_csv: str | os.PathLike, class_names: Sequence[str]) -> str:
    """Print where the predictions went and how many images each class received.

    Args:
        predictions_csv: the predictions CSV of :class:`~monai_sam.handlers.PredictionWriter`.
        class_names: the class names (classes without images show 0).
    """
    path = os.fspath(predictions_csv)
    with open(path, newline="") as f:
        counts = Counter(row["predicted"] for row in csv.DictReader(f))
    metrics: dict[str, Any] = {"images": sum(counts.values())}
    metrics.update({f"predicted {name}": counts.get(name, 0) for name in class_names})
    return print_summary("inference finished", [(path, "one row per image")], metrics)


def track_settings(handlers: Sequence[Any], settings: Mapping[str, Any]) -> int:
    """Give the run settings to every MONAI ``MLFlowHandler`` in ``handlers`` (``--tracking mlflow``).

    MONAI's default tracking logs ``max_epochs`` and ``epoch_length`` as run parameters; this adds the
    bundle's ``settings`` (network, optimizer, rho, lr...) to the handlers' ``experiment_param``, without
    replacing parameters a user's tracking settings already give. Call it in ``initialize``, before the run.

    Args:
        handlers: an engine's handler list.
        settings: the bundle's ``settings`` block.

    Returns:
        The number of MLflow handlers updated.
    """
    from monai.handlers import MLFlowHandler

    params = {
        str(k): (", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v) for k, v in settings.items()
    }
    count = 0
    for handler in handlers or []:
        if isinstance(handler, MLFlowHandler):
            handler.experiment_param = {**params, **(handler.experiment_param or {})}
            count += 1
    return count
