"""Ignite metrics for multi-class classification, computed from class probabilities and integer labels.

MONAI's bundle idiom (ignite ``Accuracy`` on one-hot predictions and labels) treats the input as
element-wise binary and inflates accuracy for more than two classes; these metrics instead collect the
softmax probabilities and integer labels of the whole epoch (gathered across ranks under DDP) and compute
the study's definitions from :func:`monai_sam.metrics.classification_metrics`. Like MONAI's own ignite
metrics (``monai.handlers.ROCAUC``...), they attach to an engine, so they live with the handlers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from ignite.metrics import Metric
from monai.utils import evenly_divisible_all_gather

from monai_sam.handlers.output_transforms import probabilities_and_labels
from monai_sam.metrics import classification_metrics

__all__ = ["ClassificationReport", "ClassificationScore"]


class _ProbabilityAccumulator(Metric):
    """Collect ``(probabilities, labels)`` over an epoch; subclasses define ``compute``.

    Args:
        class_names: class names in label order (their number fixes the probability columns).
        output_transform: maps ``engine.state.output`` to ``(probs (B, C), labels (B,) or one-hot (B, C))``.
        metrics_result_mode: ignite's mode for dict results.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        output_transform: Callable[..., Any] = probabilities_and_labels,
        metrics_result_mode: Literal["flatten", "named", "both"] = "both",
    ) -> None:
        self.class_names = [str(name) for name in class_names]
        if len(self.class_names) < 2:
            raise ValueError(f"class_names needs at least 2 names, got {self.class_names}")
        # skip_unrolling: update() takes the whole (B, C) batch at once.
        super().__init__(output_transform, skip_unrolling=True, metrics_result_mode=metrics_result_mode)

    def reset(self) -> None:
        """Forget the epoch's predictions."""
        self._probs: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def update(self, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Store one batch of probabilities ``(B, C)`` and labels ``(B,)`` or ``(B, C)``."""
        probs, labels = (torch.as_tensor(x).detach().float().cpu() for x in output)
        probs = probs.reshape(-1, probs.shape[-1])
        if probs.shape[1] != len(self.class_names):
            raise ValueError(
                f"predictions have {probs.shape[1]} columns but {len(self.class_names)} classes are "
                f"configured ({self.class_names}); check num_classes"
            )
        labels = labels.reshape(probs.shape[0], -1)
        labels = labels.argmax(dim=1) if labels.shape[1] > 1 else labels[:, 0]
        self._probs.append(probs)
        self._labels.append(labels.long())

    def _all_metrics(self) -> dict[str, float]:
        """Every metric of :func:`classification_metrics` over the gathered epoch."""
        probs = torch.cat(self._probs) if self._probs else torch.zeros(0, len(self.class_names))
        labels = torch.cat(self._labels) if self._labels else torch.zeros(0, dtype=torch.long)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            probs = evenly_divisible_all_gather(probs, concat=True)
            labels = evenly_divisible_all_gather(labels, concat=True)
        return classification_metrics(labels.numpy(), probs.numpy().astype(np.float64), self.class_names)


class ClassificationScore(_ProbabilityAccumulator):
    """One scalar classification metric, e.g. the macro ROC AUC used as the key validation metric.

    Args:
        class_names: class names in label order.
        metric: a key of :func:`monai_sam.metrics.classification_metrics`: ``macro_auc``, ``accuracy``,
            ``balanced_accuracy``, ``macro_f1``, ``cross_entropy``, ``sensitivity_<class>``...
        output_transform: see :func:`probabilities_and_labels`.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        metric: str = "macro_auc",
        output_transform: Callable[..., Any] = probabilities_and_labels,
    ) -> None:
        super().__init__(class_names, output_transform)
        n = len(self.class_names)
        known = classification_metrics(np.arange(n), np.eye(n), self.class_names)
        if metric not in known:
            raise ValueError(f"unknown metric {metric!r}; choose from {sorted(known)}")
        self.metric = metric

    def compute(self) -> float:
        """The metric over the epoch (``nan`` when undefined, e.g. AUC with a class absent)."""
        return float(self._all_metrics()[self.metric])


class ClassificationReport(_ProbabilityAccumulator):
    """Several classification metrics, each written to ``engine.state.metrics`` under its own name.

    Args:
        class_names: class names in label order.
        include: metric names to report (default: accuracy, balanced accuracy, macro F1, macro AUC and
            the sensitivity of every class); ``None`` reports everything.
        prefix: prepended to every name in ``engine.state.metrics`` (e.g. ``"val_"``).
        output_transform: see :func:`probabilities_and_labels`.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        include: Sequence[str] | None = (
            "accuracy",
            "balanced_accuracy",
            "macro_f1",
            "macro_auc",
            "sensitivity_*",
        ),
        prefix: str = "",
        output_transform: Callable[..., Any] = probabilities_and_labels,
    ) -> None:
        super().__init__(class_names, output_transform, metrics_result_mode="flatten")
        self.include = None if include is None else list(include)
        self.prefix = prefix

    def _wanted(self, name: str) -> bool:
        """Whether ``name`` matches ``include`` (a trailing ``*`` matches a prefix)."""
        if self.include is None:
            return True
        return any(name == pat or (pat.endswith("*") and name.startswith(pat[:-1])) for pat in self.include)

    def compute(self) -> dict[str, float]:
        """The selected metrics over the epoch."""
        return {self.prefix + k: float(v) for k, v in self._all_metrics().items() if self._wanted(k)}
