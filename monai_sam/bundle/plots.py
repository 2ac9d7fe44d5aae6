"""The bundles' figures (matplotlib, Agg): training curves, ROC curves, the confusion matrix, reliability.

:class:`TrainingCurves` (a trainer handler) draws ``training_curves.png``: the mean clean loss and the mean
perturbed loss of every epoch and the validation key metric. :class:`ClassificationPlots` (an evaluator
handler) draws ``<prefix>roc.png`` and ``<prefix>confusion.png`` from the epoch's probabilities and labels.
:func:`plot_binary_roc` and :func:`plot_reliability` draw an external test set's ROC curve (with its
operating point) and reliability diagram.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_sam.bundle.logs import training_scalars
from monai_sam.bundle.metrics import probabilities_and_labels
from monai_sam.bundle.reports import write_json
from monai_sam.metrics import ReliabilityBins, confusion_matrix, roc_auc_binary, roc_curve

__all__ = [
    "ClassificationPlots",
    "TrainingCurves",
    "plot_binary_roc",
    "plot_confusion_matrix",
    "plot_reliability",
    "plot_roc_curves",
    "plot_training_curves",
]


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _ticker():
    import matplotlib.ticker

    return matplotlib.ticker


def _save(fig: Any, path: str | os.PathLike) -> str:
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def plot_training_curves(
    history: Sequence[Mapping[str, float]], path: str | os.PathLike, metric_name: str = "val_auc"
) -> str:
    """Draw the epoch means of ``loss`` and ``loss_perturbed`` (left axis) and ``metric_name`` (right axis).

    Args:
        history: one entry per epoch: ``epoch`` and any of ``loss``, ``loss_perturbed``, ``metric`` (NaN or
            absent values are not drawn: a plain optimizer has no perturbed loss, validation may skip epochs).
        path: the PNG file.
        metric_name: the validation metric's name, for its axis and legend.

    Returns:
        The absolute path written.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    epochs = np.array([h["epoch"] for h in history], dtype=float)

    def column(key: str) -> np.ndarray:
        return np.array([float(h.get(key, math.nan)) for h in history], dtype=float)

    lines = []
    for key, label, style in (
        ("loss", "training loss (clean pass)", "-o"),
        ("loss_perturbed", "perturbed loss", "--s"),
    ):
        values = column(key)
        keep = np.isfinite(values)
        if keep.any():
            lines += ax.plot(epochs[keep], values[keep], style, markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(_ticker().MaxNLocator(integer=True))
    ax.set_ylabel("cross-entropy (epoch mean)")
    metric = column("metric")
    keep = np.isfinite(metric)
    if keep.any():
        right = ax.twinx()
        lines += right.plot(
            epochs[keep], metric[keep], "-^", color="tab:green", markersize=3, label=metric_name
        )
        right.set_ylabel(metric_name)
        if metric_name.endswith(("auc", "accuracy", "f1")) or "sensitivity" in metric_name:
            right.set_ylim(0.0, 1.0)
    if len(epochs):
        ax.set_xlim(0.5, max(epochs.max(), 1.0) + 0.5)
    ax.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
    ax.set_title("training curves")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_roc_curves(
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
) -> str:
    """Draw the one-versus-rest ROC curve of every class, each with its AUC in the legend.

    Args:
        labels: integer labels, shape ``(n,)``.
        probs: class probabilities, shape ``(n, C)``.
        class_names: the ``C`` class names in label order.
        path: the PNG file.
        title: the figure title.

    Returns:
        The absolute path written.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    for index, name in enumerate(class_names):
        positive = labels == index
        if positive.all() or not positive.any():
            ax.plot([], [], label=f"{name}: undefined (no {'negatives' if positive.all() else 'positives'})")
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, index])
        auc = roc_auc_binary(positive, probs[:, index])
        ax.plot(fpr, tpr, label=f"{name} vs rest: AUC {auc:.3f} ({int(positive.sum())} positives)")
    _finish_roc(ax, title or f"ROC curves, {len(labels)} images")
    return _save(fig, path)


def _finish_roc(ax: Any, title: str, fontsize: float | None = None) -> None:
    """The chance diagonal, unit square, axis labels, title, legend and grid of a ROC figure."""
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(title, fontsize=fontsize)
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)


def plot_binary_roc(
    labels: np.ndarray,
    scores: np.ndarray,
    path: str | os.PathLike,
    title: str = "",
    operating_point: tuple[float, float] | None = None,
    legend: str = "",
) -> str:
    """Draw one binary ROC curve, its AUC, and the operating point (1 - specificity, sensitivity) if given.

    Args:
        labels: 0/1, shape ``(n,)``; 1 marks the positive class.
        scores: binary scores, shape ``(n,)``.
        path: the PNG file.
        title: the figure title.
        operating_point: ``(sensitivity, specificity)`` at the threshold in use (NaN values: not drawn).
        legend: what the operating point is, for the legend (e.g. where its threshold was chosen).

    Returns:
        The absolute path written.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    positive = np.asarray(labels).astype(bool)
    fpr, tpr, _ = roc_curve(positive, scores)
    auc = roc_auc_binary(positive, scores)
    ax.plot(
        fpr, tpr, label=f"AUC {auc:.3f} ({int(positive.sum())} positive, {int((~positive).sum())} negative)"
    )
    if operating_point is not None and all(np.isfinite(operating_point)):
        sens, spec = operating_point
        ax.plot([1 - spec], [sens], "o", color="tab:red", label=legend or "operating point")
    _finish_roc(ax, title or f"ROC curve, {len(positive)} images", fontsize=9)
    return _save(fig, path)


def plot_reliability(
    bins: ReliabilityBins, path: str | os.PathLike, title: str = "", caption: str = ""
) -> str:
    """Draw a reliability diagram: fraction of positives against mean probability per bin, and bin counts.

    Args:
        bins: the equal-width bins (:func:`monai_sam.metrics.reliability_bins`).
        path: the PNG file.
        title: the figure title.
        caption: a line under the title, e.g. the ECE and Brier score.

    Returns:
        The absolute path written.
    """
    plt = _pyplot()
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(4.8, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    filled = bins.counts > 0
    centres = (bins.edges[:-1] + bins.edges[1:]) / 2
    width = np.diff(bins.edges)
    ax.bar(
        centres[filled],
        bins.fraction_positive[filled],
        width=width[filled],
        edgecolor="tab:blue",
        alpha=0.35,
        label="fraction positive per bin",
    )
    ax.plot(
        bins.mean_probability[filled],
        bins.fraction_positive[filled],
        "o-",
        markersize=3,
        color="tab:blue",
        label="(mean probability, fraction positive)",
    )
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction positive")
    ax.set_title(title + (f"\n{caption}" if caption else ""), fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    ax.grid(alpha=0.3)
    hist.bar(centres, bins.counts, width=width, color="grey", edgecolor="black")
    hist.set_xlabel("predicted probability of the positive class")
    hist.set_ylabel("images")
    return _save(fig, path)


def plot_confusion_matrix(
    labels: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
) -> str:
    """Draw the confusion matrix of the arg-max predictions: counts and the share of each true class.

    Args:
        labels: integer labels, shape ``(n,)``.
        probs: class probabilities, shape ``(n, C)``.
        class_names: the ``C`` class names in label order.
        path: the PNG file.
        title: the figure title.

    Returns:
        The absolute path written.
    """
    plt = _pyplot()
    n = len(class_names)
    counts = confusion_matrix(labels, probs.argmax(axis=1), n)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.3 * n + 2.2, 1.3 * n + 1.6))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{counts[i, j]}\n{share[i, j]:.0%}",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(n), list(class_names))
    ax.set_yticks(range(n), list(class_names))
    ax.set_xlabel("predicted class (arg-max)")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    ax.set_title(title or f"confusion matrix, {counts.sum()} images, accuracy {accuracy:.3f}")
    return _save(fig, path)


class TrainingCurves:
    """Trainer handler: record each epoch's mean losses and validation metric; draw them when training ends.

    The epoch means of ``loss``, ``loss_perturbed`` and ``sharpness`` are also written to the trainer's
    ``state.metrics`` as ``epoch_loss``, ``epoch_loss_perturbed`` and ``epoch_sharpness``.

    Attach it after the ``ValidationHandler`` (so the epoch's validation has run). The history is also
    written to ``<output_path without .png>.json`` after every epoch; a resumed run reads the epochs it has
    already done from there, so its figure shows every epoch.

    Args:
        output_path: the PNG file (``training_curves.png`` in the run folder).
        evaluator: the validation engine, or None for losses only.
        metric_name: the key of ``evaluator.state.metrics`` to draw.
    """

    def __init__(
        self, output_path: str | os.PathLike, evaluator: Engine | None = None, metric_name: str = "val_auc"
    ) -> None:
        self.output_path = os.fspath(output_path)
        self.evaluator = evaluator
        self.metric_name = metric_name
        self.history: list[dict[str, float]] = []
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def attach(self, engine: Engine) -> None:
        """Collect on ``engine``'s iterations, record at its epochs' ends, draw when it completes."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._record)
        engine.add_event_handler(Events.COMPLETED, self.write)

    @property
    def history_path(self) -> str:
        """The JSON file of the history."""
        return os.path.splitext(self.output_path)[0] + ".json"

    def _reset(self, engine: Engine) -> None:
        self._sums, self._counts = {}, {}
        done = engine.state.epoch - 1  # epochs completed before this one (a resumed run starts later)
        if done > 0 and not self.history and os.path.isfile(self.history_path):
            with open(self.history_path) as f:
                self.history = [h for h in json.load(f) if h["epoch"] <= done]

    def _collect(self, engine: Engine) -> None:
        for key, value in training_scalars(engine.state.output).items():
            self._sums[key] = self._sums.get(key, 0.0) + value
            self._counts[key] = self._counts.get(key, 0) + 1

    def _record(self, engine: Engine) -> None:
        entry = {"epoch": float(engine.state.epoch)}
        entry.update({key: self._sums[key] / self._counts[key] for key in self._sums})
        # the epoch means also go to the trainer's metrics, so epoch-level loggers (MONAI's MLFlowHandler with
        # ``--tracking mlflow``, StatsHandler) record the perturbed loss and the sharpness too
        engine.state.metrics.update({f"epoch_{key}": value for key, value in entry.items() if key != "epoch"})
        # MONAI's ValidationHandler runs the evaluator with the trainer's epoch as its own: a validation of
        # this epoch has run when the epochs agree (val_interval > 1 skips epochs)
        validated = self.evaluator is not None and self.evaluator.state.epoch == engine.state.epoch
        metrics = self.evaluator.state.metrics if validated else {}
        if self.metric_name in metrics:
            value = metrics[self.metric_name]
            entry["metric"] = float(value.item() if isinstance(value, torch.Tensor) else value)
        self.history = [h for h in self.history if h["epoch"] != entry["epoch"]] + [entry]
        write_json(self.history_path, self.history)

    def write(self, engine: Engine | None = None) -> str | None:
        """Draw the history to :attr:`output_path` (nothing before the first epoch)."""
        if not self.history:
            return None
        return plot_training_curves(self.history, self.output_path, self.metric_name)


class ClassificationPlots:
    """Evaluator handler: at the end of each epoch draw the ROC curves and the confusion matrix.

    Args:
        output_dir: the folder of the PNGs.
        class_names: class names in label order.
        prefix: file-name prefix: ``<prefix>roc.png`` and ``<prefix>confusion.png``.
        title: what the figures show, e.g. ``"test split"``.
        output_transform: maps ``engine.state.output`` to ``(probs, labels)``; see
            :func:`~monai_sam.bundle.probabilities_and_labels`.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str],
        prefix: str = "",
        title: str = "",
        output_transform: Any = probabilities_and_labels,
    ) -> None:
        self.output_dir = os.fspath(output_dir)
        self.class_names = [str(c) for c in class_names]
        self.prefix = prefix
        self.title = title
        self.output_transform = output_transform
        self._probs: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self.paths: list[str] = []

    def attach(self, engine: Engine) -> None:
        """Collect on every iteration of ``engine``, draw at the end of each epoch."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def _reset(self, engine: Engine) -> None:
        self._probs, self._labels = [], []

    def _collect(self, engine: Engine) -> None:
        probs, labels = (
            torch.as_tensor(x).detach().float().cpu() for x in self.output_transform(engine.state.output)
        )
        probs = probs.reshape(-1, probs.shape[-1])
        labels = labels.reshape(probs.shape[0], -1)
        self._probs.append(probs)
        self._labels.append(labels.argmax(dim=1) if labels.shape[1] > 1 else labels[:, 0].long())

    def write(self, engine: Engine | None = None) -> list[str]:
        """Draw the collected epoch; returns the PNG paths (none for an empty epoch)."""
        if not self._probs:
            return []
        probs = torch.cat(self._probs).numpy().astype(np.float64)
        labels = torch.cat(self._labels).numpy().astype(np.int64)
        what = f"{self.title}, " if self.title else ""
        accuracy = float((probs.argmax(axis=1) == labels).mean())
        self.paths = [
            plot_roc_curves(
                labels,
                probs,
                self.class_names,
                os.path.join(self.output_dir, f"{self.prefix}roc.png"),
                f"ROC curves, {what}{len(labels)} images",
            ),
            plot_confusion_matrix(
                labels,
                probs,
                self.class_names,
                os.path.join(self.output_dir, f"{self.prefix}confusion.png"),
                f"confusion matrix, {what}{len(labels)} images, accuracy {accuracy:.3f}",
            ),
        ]
        return self.paths
