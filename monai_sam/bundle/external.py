"""External validation in ``evaluate.json``: the trained network on other hospitals' images.

:class:`ExternalEvaluation` runs after the internal evaluation, with the same network and the same
validation preprocessing, on every set of the ``external`` knob (declarations of
:mod:`monai_sam.data.external`). Per set it writes, next to the internal metrics:

* ``external_<name>_metrics.json``: the positive-versus-rest AUC with DeLong's interval, sensitivity and
  specificity at the operating point chosen on the *internal validation split* (Youden's J; its
  threshold, rule and source are recorded), ECE, Brier score, patient-bootstrap intervals, the
  per-group table, the set's description (classes, label map, score rule) and ``internal``: the
  evaluated split's AUC of the same task with the same score, so the drop can be read off;
* ``external_<name>_predictions.csv``: one row per image (probabilities, binary score, call);
* ``external_<name>_groups.csv``: the per-group (e.g. per-scanner) table, when the set names groups;
* ``external_<name>_roc.png`` and ``external_<name>_reliability.png``.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from monai_sam.bundle.prediction import predict_probabilities
from monai_sam.data.external import ExternalSet, load_external_sets
from monai_sam.json_files import write_json
from monai_sam.metrics import (
    SCORE_RULES,
    binary_score,
    external_validation_metrics,
    reliability_bins,
    roc_auc_binary,
    youden_operating_point,
)
from monai_sam.visualize import plot_binary_roc, plot_reliability

__all__ = ["ExternalEvaluation", "evaluate_external_set", "mapped_scores", "score_definition"]

logger = logging.getLogger(__name__)

#: Where the operating point of every external set is chosen.
OPERATING_SOURCE = "internal validation split"


def score_definition(external: ExternalSet) -> str:
    """The binary score of ``external`` as a formula, e.g. ``p(malignant) / (p(benign) + p(malignant))``."""
    positive = f"p({external.spec.positive})"
    mapped = [external.class_names[i] for i in external.mapped_indices]
    if external.spec.score == "raw" or len(mapped) == len(external.class_names):
        return positive
    return f"{positive} / ({' + '.join(f'p({c})' for c in mapped)})"


def mapped_scores(
    external: ExternalSet, probs: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positive (0/1) labels and binary scores of the internal images of ``external``'s mapped classes.

    Internal images of classes the external set does not map to (``normal`` for BUS-BRA) are left out,
    so the internal and external AUCs measure the same task with the same score.

    Args:
        external: the external set (its positive class, mapped classes and score rule).
        probs: internal class probabilities, ``(n, C)``.
        labels: internal model-class labels, ``(n,)``.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    inside = np.isin(labels, external.mapped_indices)
    if not inside.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    scores = binary_score(
        probs[inside], external.positive_index, external.mapped_indices, external.spec.score
    )
    return (labels[inside] == external.positive_index).astype(np.int64), scores


def evaluate_external_set(
    external: ExternalSet,
    probs: np.ndarray,
    operating: tuple[np.ndarray, np.ndarray],
    internal: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    confidence: float = 0.95,
    n_bins: int = 10,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """The metrics of one external set from the model's probabilities (bundle and study alike).

    Args:
        external: the loaded set.
        probs: the model's class probabilities of ``external.items``, ``(n, C)``.
        operating: ``(probs, labels)`` of the internal validation images: the operating point is
            chosen there (Youden's J on their mapped classes), never on the external set.
        internal: ``(probs, labels)`` of the internal test images, for the internal AUC of the same task.
        confidence, n_bins, n_resamples, seed: see :func:`monai_sam.metrics.external_validation_metrics`.

    Returns:
        The set's description, the score rule, every metric of
        :func:`~monai_sam.metrics.external_validation_metrics`, ``auc_by_score_rule`` and ``internal``
        (``n``, ``positives``, ``auc`` of the internal test images; ``nan`` AUC without both classes).
    """
    operating_point = youden_operating_point(*mapped_scores(external, *operating), OPERATING_SOURCE)
    if operating_point.note:
        logger.warning("external set %s: %s", external.name, operating_point.note)
    mapped, positive = external.mapped_indices, external.positive_index
    labels = external.binary_labels()
    metrics = external_validation_metrics(
        labels,
        binary_score(probs, positive, mapped, external.spec.score),
        operating_point,
        cases=[i["case"] for i in external.items] if external.spec.case_column else None,
        groups=[i["group"] for i in external.items] if external.spec.group_column else None,
        confidence=confidence,
        n_bins=n_bins,
        n_resamples=n_resamples,
        seed=seed,
    )
    internal_labels, internal_scores = mapped_scores(external, *internal) if internal else ([], [])
    return {
        "set": external.describe(),
        "score": {"rule": external.spec.score, "definition": score_definition(external)},
        **metrics,
        "auc_by_score_rule": {
            rule: roc_auc_binary(labels, binary_score(probs, positive, mapped, rule)) for rule in SCORE_RULES
        },
        "internal": {
            "n": len(internal_labels),
            "positives": int(np.sum(internal_labels)),
            "auc": roc_auc_binary(internal_labels, internal_scores) if len(internal_labels) else float("nan"),
        },
    }


class ExternalEvaluation:
    """Evaluate the network on external test sets and write their metrics, predictions and figures.

    The sets are loaded and checked when the component is built (the bundle's ``initialize``), so a bad
    declaration fails before any image is evaluated. Nothing runs, and nothing is written, without sets.

    Args:
        sets: the ``external`` knob: a list of declarations (:class:`~monai_sam.data.ExternalSetSpec`).
        network: the evaluated network (checkpoint loaded).
        preprocessing: the validation transforms, the same as the internal evaluation's.
        class_names: the model's class names in label order.
        operating_items: the internal validation items; each set's operating point is chosen on those
            of its mapped classes.
        internal_items: the evaluated internal split's items: their positive-versus-rest AUC (mapped
            classes, same score) is reported beside each external AUC, so the drop can be read off.
        internal_split: the evaluated split's name (``test``).
        output_dir: where the files go.
        batch_size: images per batch.
        num_workers: DataLoader workers.
        amp: autocast on CUDA, as the evaluator.
        reader_options: DICOM/NIfTI reading options.
        confidence: level of every interval.
        ece_bins: equal-width bins of the ECE and the reliability diagram.
        bootstrap_resamples: patient-bootstrap resamples.
        seed: patient-bootstrap seed.
        extra: more top-level entries of every metrics JSON (e.g. ``ckpt_path``, ``settings``).
    """

    def __init__(
        self,
        sets: Sequence[Mapping[str, Any]] | None,
        network: torch.nn.Module,
        preprocessing: Callable,
        class_names: Sequence[str],
        operating_items: Sequence[dict[str, Any]],
        output_dir: str | os.PathLike,
        internal_items: Sequence[dict[str, Any]] = (),
        internal_split: str = "test",
        batch_size: int = 16,
        num_workers: int = 0,
        amp: bool = False,
        reader_options: Mapping[str, Any] | None = None,
        confidence: float = 0.95,
        ece_bins: int = 10,
        bootstrap_resamples: int = 2000,
        seed: int = 0,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.sets = load_external_sets(sets, class_names, reader_options)
        self.network, self.preprocessing = network, preprocessing
        self.class_names = [str(c) for c in class_names]
        self.operating_items = list(operating_items or [])
        self.internal_items, self.internal_split = list(internal_items or []), str(internal_split)
        self.output_dir = os.fspath(output_dir)
        self.batch_size, self.num_workers, self.amp = int(batch_size), int(num_workers), bool(amp)
        self.confidence, self.ece_bins = float(confidence), int(ece_bins)
        self.bootstrap_resamples, self.seed = int(bootstrap_resamples), int(seed)
        self.extra = dict(extra or {})
        self.results: dict[str, dict[str, Any]] = {}
        self.outputs: list[str] = []

    def _predict(self, items: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        return predict_probabilities(
            self.network, items, self.preprocessing, self.batch_size, self.num_workers, self.amp
        )

    def run(self) -> dict[str, dict[str, Any]]:
        """Evaluate every set; returns ``{name: metrics}`` (also in :attr:`results`)."""
        if not self.sets:
            return {}
        operating = self._predict(self.operating_items)
        internal = self._predict(self.internal_items)
        for external in self.sets:
            probs, _ = self._predict(external.items)
            self.results[external.name] = self._evaluate_set(external, probs, operating, internal)
        return self.results

    def _evaluate_set(
        self,
        external: ExternalSet,
        probs: np.ndarray,
        operating: tuple[np.ndarray, np.ndarray],
        internal: tuple[np.ndarray, np.ndarray],
    ) -> dict[str, Any]:
        """Metrics, files and figures of one set."""
        result = evaluate_external_set(
            external,
            probs,
            operating,
            internal,
            confidence=self.confidence,
            n_bins=self.ece_bins,
            n_resamples=self.bootstrap_resamples,
            seed=self.seed,
        )
        result = {"name": external.name, **self.extra, **result}
        result["internal"]["split"] = self.internal_split
        scores = binary_score(probs, external.positive_index, external.mapped_indices, external.spec.score)
        self._write(external, result, probs, scores, external.binary_labels())
        return result

    def _path(self, external: ExternalSet, suffix: str) -> str:
        return os.path.join(self.output_dir, f"external_{external.name}_{suffix}")

    def _write(
        self,
        external: ExternalSet,
        result: dict[str, Any],
        probs: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
    ) -> None:
        """The metrics JSON, predictions and group CSVs, ROC and reliability PNGs of one set."""
        paths = [self._path(external, "metrics.json")]
        write_json(paths[0], result)
        paths.append(self._write_predictions(external, probs, scores, result["operating_point"]["threshold"]))
        if result["groups"]:
            paths.append(self._path(external, "groups.csv"))
            _write_rows(paths[-1], result["groups"])
        op = result["operating_point"]
        paths.append(
            plot_binary_roc(
                labels,
                scores,
                self._path(external, "roc.png"),
                f"{external.name}: {result['score']['definition']}, {len(labels)} images",
                operating_point=(result["sensitivity"], result["specificity"]),
                legend=f"threshold {_num(op['threshold'])} ({op['rule']} on the {op['source']})",
            )
        )
        paths.append(
            plot_reliability(
                reliability_bins(labels, scores, self.ece_bins),
                self._path(external, "reliability.png"),
                f"{external.name}: reliability of {result['score']['definition']}",
                f"ECE {result['ece']:.3f} ({self.ece_bins} bins), Brier {result['brier']:.3f}, "
                f"{len(labels)} images",
            )
        )
        self.outputs += paths

    def _write_predictions(
        self, external: ExternalSet, probs: np.ndarray, scores: np.ndarray, threshold: float
    ) -> str:
        """One row per image: paths, classes, patient, group, probabilities, score and call."""
        rows = []
        for item, p, score in zip(external.items, probs, scores):
            row = {
                "image": item["image"],
                "relpath": item["relpath"],
                "external_label": item["external_label"],
                "label": self.class_names[item["label"]],
                "positive": int(item["label"] == external.positive_index),
                "case": item["case"] or "",
                "group": item["group"] or "",
            }
            row.update({f"prob_{c}": round(float(v), 6) for c, v in zip(self.class_names, p)})
            row["score"] = round(float(score), 6)
            row["called_positive"] = "" if np.isnan(threshold) else int(score >= threshold)
            rows.append(row)
        path = self._path(external, "predictions.csv")
        _write_rows(path, rows)
        return path

    def summary(self) -> dict[str, Any]:
        """Key figures of every evaluated set for the end-of-run summary."""
        out: dict[str, Any] = {}
        for name, r in self.results.items():
            low, high = r["auc_ci"]
            out[f"external {name} auc"] = r["auc"]
            out[f"external {name}: internal {r['internal']['split']} auc, same task"] = r["internal"]["auc"]
            out[f"external {name} auc {r['confidence']:.0%} CI (DeLong)"] = f"[{_num(low)}, {_num(high)}]"
            out.update({f"external {name} {k}": r[k] for k in ("sensitivity", "specificity", "ece", "brier")})
        return out


def _num(value: float | None) -> str:
    """A figure for the summary and legends: 3 decimals, ``+inf``, or ``n/a`` (None, NaN)."""
    if value is None or np.isnan(value):
        return "n/a"
    return "+inf" if np.isinf(value) else f"{value:.3f}"


def _write_rows(path: str, rows: list[dict[str, Any]]) -> None:
    """Dict rows as CSV (NaN written as empty cells)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: "" if isinstance(v, float) and not np.isfinite(v) else v for k, v in row.items()}
            )
