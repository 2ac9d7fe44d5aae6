"""External generalization of a study: internal against external AUC, paired tests on the external set.

Every run of a study with ``data.external`` evaluates its checkpoint on each external set and records its
metrics, the test fold's AUC of the same task and the per-image predictions
(:mod:`monai_sam.study.training`). From those records:

* :func:`summarize_external`: per network x optimizer, the mean over runs (percentile bootstrap interval
  over runs, as for the bounded test metrics) of the internal AUC, the external AUC, the drop between
  them, the sensitivity and specificity at the internal operating point, ECE and Brier score.
* :func:`compare_external`: each method against the baseline on the same (repeat, fold, seed) pairs.
  - *Across pairs*: the Wilcoxon signed-rank test of the paired external AUCs (and of the drop, ECE
    and Brier), with the percentile bootstrap interval of the mean difference and Holm's correction
    across the network x method comparisons of one metric, exactly as for the internal metrics. The
    Nadeau-Bengio corrected t-test is left out: its correction models cross-validation test folds,
    while every run here is tested on the same external images.
  - *On the same images*: DeLong's test of the AUC difference between the method's and the baseline's
    **pooled** predictions, each image's class probabilities averaged over the paired runs (the
    internal DeLong column pools out-of-fold predictions the same way), then scored by the set's rule.
    One test per comparison, Holm-corrected across methods. The ten per-pair DeLong tests are not
    combined instead: they share every image, so their p-values are strongly dependent and Fisher's
    or Stouffer's combination, which assume independent tests, would overstate the evidence. DeLong
    on the pooled scores answers "do the two methods' averaged models rank these images differently",
    with the images as the sampling unit; the Wilcoxon test answers "does the method win run by run",
    with the training runs as the unit. DeLong treats images as independent; several images of one
    patient make it somewhat liberal.
* :func:`external_group_table`: per network x optimizer x group (scanner), the mean over runs of the
  group's AUC, sensitivity and specificity.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from monai_sam.metrics import DeLongResult, binary_score, delong_paired
from monai_sam.study.analysis import (
    EXTERNAL_METRICS,
    Comparison,
    as_float,
    compare_to_baseline,
    external_column,
    paired_values,
    pooled_test_predictions,
    summarize,
)
from monai_sam.study.config import StudyConfig
from monai_sam.study.statistics import bootstrap_mean_ci, holm

__all__ = [
    "EXTERNAL_COMPARED",
    "compare_external",
    "external_group_table",
    "external_names",
    "pooled_external_delong",
    "summarize_external",
]

#: External metrics compared with the baseline, and whether smaller is better.
EXTERNAL_COMPARED: dict[str, bool] = {"auc": False, "auc_drop": True, "ece": True, "brier": True}


def external_names(config: StudyConfig) -> list[str]:
    """The names of the study's external sets, in config order."""
    return [spec["name"] for spec in config.data.get("external") or []]


def summarize_external(rows: list[dict[str, Any]], config: StudyConfig) -> list[dict[str, Any]]:
    """Mean and percentile bootstrap interval over runs of every :data:`EXTERNAL_METRICS` column.

    Returns:
        One entry per external set x network x optimizer: ``external``, ``network``, ``optimizer``, ``n``
        (runs) and ``<key>_mean``, ``<key>_ci_low``, ``<key>_ci_high`` for every key.
    """
    out = []
    for name in external_names(config):
        columns = [external_column(name, key) for key in EXTERNAL_METRICS]
        members = [r for r in rows if not math.isnan(as_float(r.get(columns[0])))]
        for entry in summarize(members, float(config.analysis["confidence"]), columns, bounded=columns):
            renamed = {k.replace(f"external_{name}_", "", 1): v for k, v in entry.items()}
            out.append({"external": name, **renamed})
    return out


def _external_predictions(name: str):
    """Reads external set ``name``'s predictions from a run record."""
    return lambda record: ((record.get("external") or {}).get(name) or {}).get("predictions")


def pooled_external_delong(
    records: list[dict[str, Any]],
    name: str,
    network: str,
    optimizer: str,
    baseline: str,
    keys: list[tuple[int, int, int]],
) -> DeLongResult | None:
    """DeLong's test between two optimizers' pooled predictions on external set ``name``.

    Each image's class probabilities are averaged over the ``keys`` runs of each optimizer, scored by the
    set's rule (the positive class renormalised over the mapped classes, or raw) and compared with
    :func:`~monai_sam.metrics.delong_paired` (``auc_a``: the optimizer, ``auc_b``: the baseline).

    Returns:
        The result, or None without predictions or with fewer than two images of a class.
    """
    entry = next((r["external"][name] for r in records if name in (r.get("external") or {})), None)
    if entry is None:
        return None
    a, b = (
        pooled_test_predictions(records, network, label, set(keys), _external_predictions(name))
        for label in (optimizer, baseline)
    )
    ids = sorted(set(a) & set(b))
    if not ids:
        return None
    positive, mapped, rule = int(entry["positive"]), entry["mapped"], entry["score_rule"]
    labels = np.array([a[i][0] == positive for i in ids], dtype=np.int64)
    sa, sb = (binary_score(np.stack([p[i][1] for i in ids]), positive, mapped, rule) for p in (a, b))
    try:
        return delong_paired(labels, sa, sb)
    except ValueError:
        return None


def compare_external(
    rows: list[dict[str, Any]], records: list[dict[str, Any]], config: StudyConfig
) -> tuple[list[Comparison], dict[tuple[str, str, str], DeLongResult]]:
    """Paired comparisons with the baseline on every external set (see the module docstring).

    Returns:
        The comparisons of :data:`EXTERNAL_COMPARED` metrics (``external_<name>_<key>``; the AUC ones
        carry DeLong's pooled test in ``delong_*``, Holm-corrected across the set's comparisons), and
        the DeLong results by ``(external set, network, optimizer)``.
    """
    baseline = config.analysis["baseline"]
    comparisons: list[Comparison] = []
    delong: dict[tuple[str, str, str], DeLongResult] = {}
    for name in external_names(config):
        metrics = tuple(external_column(name, key) for key in EXTERNAL_COMPARED)
        lower = {external_column(name, key) for key, smaller in EXTERNAL_COMPARED.items() if smaller}
        family = compare_to_baseline(rows, config, metrics, lower_is_better=lower, corrected_t=False)
        auc = [c for c in family if c.metric == metrics[0]]
        for comp in auc:
            _, _, keys = paired_values(
                rows, comp.network, comp.optimizer, baseline, comp.metric, with_keys=True
            )
            result = pooled_external_delong(records, name, comp.network, comp.optimizer, baseline, keys)
            if result is not None:
                delong[(name, comp.network, comp.optimizer)] = result
                comp.delong_n, comp.delong_p = result.n, result.p_value
        for comp, adjusted in zip(auc, holm([c.delong_p for c in auc])):
            comp.delong_p_holm = float(adjusted)
        comparisons += family
    return comparisons, delong


def external_group_table(records: list[dict[str, Any]], config: StudyConfig) -> list[dict[str, Any]]:
    """Per external set x network x optimizer x group: images, positives, and the mean over runs (with a
    percentile bootstrap interval over runs) of the group's AUC, sensitivity and specificity.

    A group with one class has no AUC in any run (``nan``).
    """
    confidence = float(config.analysis["confidence"])
    collected: dict[tuple[str, str, str, str], list[dict]] = defaultdict(list)
    for record in records:
        for name, entry in (record.get("external") or {}).items():
            for group in (entry.get("metrics") or {}).get("groups") or []:
                collected[(name, record["network"], record["optimizer"], group["group"])].append(group)
    out = []
    for (name, network, optimizer, group), runs in collected.items():
        row = {
            "external": name,
            "network": network,
            "optimizer": optimizer,
            "group": group,
            "runs": len(runs),
        }
        row.update(n=runs[0]["n"], positives=runs[0]["positives"])
        for key in ("auc", "sensitivity", "specificity"):
            mean, low, high = bootstrap_mean_ci([as_float(r.get(key)) for r in runs], confidence)
            row.update({f"{key}_mean": mean, f"{key}_ci_low": low, f"{key}_ci_high": high})
        out.append(row)
    return out
