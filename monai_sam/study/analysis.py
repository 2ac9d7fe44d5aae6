"""Tables and statistics of a finished (or partial) study: summaries, paired tests and verdicts."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from monai_sam.study.config import StudyConfig
from monai_sam.study.statistics import (
    bootstrap_mean_ci,
    corrected_resampled_ttest,
    delong_paired,
    holm,
    minimal_detectable_difference,
    paired_bootstrap_ci,
    t_interval,
    wilcoxon_paired,
)

__all__ = [
    "BOUNDED_METRICS",
    "COMPARED_METRICS",
    "EXTERNAL_METRICS",
    "GAP_METRICS",
    "PERFORMANCE_METRICS",
    "SUMMARY_METRICS",
    "Comparison",
    "chance_level_runs",
    "claims_table",
    "compare_to_baseline",
    "external_column",
    "flatten_run",
    "pooled_test_predictions",
    "sharpness_gap_correlations",
    "single_class_runs",
    "summarize",
]

#: Test-fold metrics compared between optimizers (higher is better for all of them).
PERFORMANCE_METRICS: tuple[str, ...] = (
    "test_accuracy",
    "test_balanced_accuracy",
    "test_macro_f1",
    "test_macro_auc",
    "test_malignant_sensitivity",
    "test_malignant_specificity",
)
#: Generalization measures compared between optimizers (lower is better for all of them).
GAP_METRICS: tuple[str, ...] = ("gap_loss", "gap_accuracy", "test_cross_entropy")
#: Every metric :func:`compare_to_baseline` tests by default.
COMPARED_METRICS: tuple[str, ...] = (*PERFORMANCE_METRICS, *GAP_METRICS)
#: Summary columns with a bounded range (proportions and AUC in [0, 1], the accuracy gap in [-1, 1],
#: cross-entropy, wall time and passes >= 0): their interval is a percentile bootstrap over runs, which
#: stays in range. The others (loss gap, sharpness measures) get a Student-t interval.
BOUNDED_METRICS: tuple[str, ...] = (
    *PERFORMANCE_METRICS,
    "test_cross_entropy",
    "gap_accuracy",
    "train_wall_s",
    "passes",
)
#: Columns summarised per network x optimizer (mean and CI).
SUMMARY_METRICS: tuple[str, ...] = (
    *PERFORMANCE_METRICS,
    "test_cross_entropy",
    "gap_loss",
    "gap_accuracy",
    "train_wall_s",
    "passes",
)


#: Per-run columns of every external set (``external_<name>_<key>``): its AUC, the test fold's AUC of the
#: same task (mapped classes, same score), the drop between them (internal minus external), the
#: sensitivity and specificity at the operating point chosen on the fold's validation images, ECE, Brier.
EXTERNAL_METRICS: tuple[str, ...] = (
    "auc",
    "internal_auc",
    "auc_drop",
    "sensitivity",
    "specificity",
    "ece",
    "brier",
)


def external_column(name: str, key: str) -> str:
    """The flat-row column of external set ``name``'s metric ``key`` (:data:`EXTERNAL_METRICS`)."""
    return f"external_{name}_{key}"


def _external_values(name: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`EXTERNAL_METRICS` columns of one run's external set."""
    metrics = entry.get("metrics") or {}
    external, internal = as_float(metrics.get("auc")), as_float((metrics.get("internal") or {}).get("auc"))
    values = {key: metrics.get(key) for key in ("auc", "sensitivity", "specificity", "ece", "brier")}
    values.update(internal_auc=internal, auc_drop=internal - external)
    return {external_column(name, key): values[key] for key in EXTERNAL_METRICS}


def flatten_run(record: dict[str, Any]) -> dict[str, Any]:
    """One flat CSV row from a run record: identity, ``test_*``, ``train_*``, ``gap_*``, ``sharpness_*``,
    and ``external_<name>_*`` (:data:`EXTERNAL_METRICS`) for every external set."""
    row = {
        k: record.get(k)
        for k in ("run_id", "network", "bundle", "optimizer", "optimizer_name", "fold", "seed")
    }
    row["repeat"] = record.get("repeat", 0)
    row["split_seed"] = record.get("split_seed")
    row["rho"] = record.get("rho")
    for prefix in ("test", "train", "gap", "sharpness"):
        for key, value in (record.get(prefix) or {}).items():
            if isinstance(value, (int, float)) or value is None:
                row[f"{prefix}_{key}"] = value
    for key in ("train_wall_s", "wall_s", "passes", "iterations", "epochs", "checkpoint"):
        row[key] = record.get(key)
    for name, entry in (record.get("external") or {}).items():
        row.update(_external_values(name, entry))
    return row


def as_float(value: Any) -> float:
    """``value`` as float, ``nan`` for None or non-numbers."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def summarize(
    rows: list[dict[str, Any]],
    confidence: float = 0.95,
    metrics: Sequence[str] | None = None,
    bounded: Collection[str] = BOUNDED_METRICS,
) -> list[dict[str, Any]]:
    """Mean and CI of every summary metric and sharpness column per network x optimizer.

    The CI of a ``bounded`` column (:data:`BOUNDED_METRICS`) is a percentile bootstrap of the mean
    over runs (10,000 resamples, seed 0; none with fewer than 3 runs), so it stays in the metric's
    range; the other columns get a Student-t interval (none with fewer than 2 runs).

    Args:
        rows: flat run rows (:func:`flatten_run`).
        confidence: the intervals' level.
        metrics: the columns to summarise (default: :data:`SUMMARY_METRICS` and the sharpness columns).
        bounded: the columns whose interval is the bootstrap.
    """
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["network"], row["optimizer"])].append(row)
    sharp_cols = sorted({k for r in rows for k in r if k.startswith("sharpness_")})
    columns = (*SUMMARY_METRICS, *sharp_cols) if metrics is None else tuple(metrics)
    out = []
    for (network, optimizer), members in groups.items():
        entry: dict[str, Any] = {"network": network, "optimizer": optimizer, "n": len(members)}
        for metric in columns:
            values = [as_float(m.get(metric)) for m in members]
            interval = bootstrap_mean_ci if metric in bounded else t_interval
            mean, low, high = interval(values, confidence)
            entry[f"{metric}_mean"], entry[f"{metric}_ci_low"], entry[f"{metric}_ci_high"] = mean, low, high
        out.append(entry)
    return out


@dataclass
class Comparison:
    """A paired comparison of one optimizer against the baseline on one network and metric.

    Attributes:
        network, optimizer, metric: what is compared (``optimizer`` minus baseline).
        n: number of (fold, seed) pairs both optimizers finished.
        mean_diff, boot_low, boot_high: mean paired difference and its percentile bootstrap CI.
        wilcoxon_p, p_holm: two-sided Wilcoxon signed-rank p-value, and Holm-adjusted across the
            comparisons of the same metric.
        min_p: the smallest Wilcoxon p-value reachable with this many pairs.
        method: ``exact`` / ``approx`` / ``none`` (see :func:`~monai_sam.study.statistics.wilcoxon_paired`).
        verdict: ``improves``, ``hurts`` or ``no evidence`` at the study's alpha after Holm.
        underpowered: the test could not reach significance after Holm even if every pair agreed
            (``min_p`` times the family size is at least alpha).
        n_splits: train/test splits (repeat, fold) behind the corrected t-test (seeds averaged).
        nb_p, nb_p_holm: Nadeau-Bengio corrected resampled t-test p-value, and Holm-adjusted.
        mdd: the smallest mean difference that test detects with 80% power at ``alpha / m`` (the
            Holm family of ``m``), from the observed spread of the per-split differences.
        delong_n, delong_p, delong_p_holm: images and p-value of DeLong's test on the pooled
            out-of-fold predictions (AUC metrics with saved predictions only, else ``nan``).
    """

    network: str
    optimizer: str
    metric: str
    n: int
    mean_diff: float
    boot_low: float
    boot_high: float
    wilcoxon_p: float
    p_holm: float
    min_p: float
    method: str
    verdict: str = "no evidence"
    underpowered: bool = False
    n_splits: int = 0
    nb_p: float = math.nan
    nb_p_holm: float = math.nan
    mdd: float = math.nan
    delong_n: int = 0
    delong_p: float = math.nan
    delong_p_holm: float = math.nan


def _pair_key(row: dict[str, Any]) -> tuple[int, int, int]:
    """The (repeat, fold, seed) identity shared by the paired runs of two optimizers."""
    return (int(row.get("repeat") or 0), int(row["fold"]), int(row["seed"]))


def paired_values(
    rows, network, optimizer, baseline, metric, with_keys: bool = False
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]]:
    """Values of ``optimizer`` and ``baseline`` on the same (repeat, fold, seed) of one network."""
    by_key: dict[str, dict[tuple, float]] = {optimizer: {}, baseline: {}}
    for row in rows:
        if row["network"] == network and row["optimizer"] in by_key:
            by_key[row["optimizer"]][_pair_key(row)] = as_float(row.get(metric))
    keys = sorted(set(by_key[optimizer]) & set(by_key[baseline]))
    a, b = np.array([by_key[optimizer][k] for k in keys]), np.array([by_key[baseline][k] for k in keys])
    return (a, b, keys) if with_keys else (a, b)


def _split_differences(a: np.ndarray, b: np.ndarray, keys: list[tuple[int, int, int]]) -> np.ndarray:
    """Mean paired difference per train/test split (repeat, fold), averaging over training seeds.

    Seeds of one split share its training and test images, so they are not further resamples of the
    data: the corrected t-test treats their mean as one observation.
    """
    per_split: dict[tuple[int, int], list[float]] = defaultdict(list)
    for (repeat, fold, _), diff in zip(keys, a - b):
        if not math.isnan(diff):
            per_split[(repeat, fold)].append(float(diff))
    return np.array([np.mean(v) for _, v in sorted(per_split.items())])


def _test_train_ratio(rows: list[dict[str, Any]], network: str, config: StudyConfig) -> float:
    """``n_test / n_train`` of the network's runs (from the recorded set sizes, else ``1 / (k - 1)``)."""
    sizes = np.array(
        [(as_float(r.get("test_n")), as_float(r.get("train_n"))) for r in rows if r["network"] == network]
    )
    sizes = sizes[~np.isnan(sizes).any(axis=1)] if sizes.size else sizes
    ratio = float(sizes[:, 0].sum() / sizes[:, 1].sum()) if len(sizes) else math.nan
    return ratio if math.isfinite(ratio) and ratio > 0 else 1.0 / (int(config.data["folds"]) - 1)


def pooled_test_predictions(
    records: list[dict[str, Any]],
    network: str,
    optimizer: str,
    keys: set[tuple[int, int, int]],
    predictions: Callable[[dict[str, Any]], Mapping[str, Any] | None] | None = None,
) -> dict[str, tuple[int, np.ndarray]]:
    """Out-of-fold test predictions of one network x optimizer, pooled per image.

    Over the given (repeat, fold, seed) runs, every image's class probabilities are averaged (each
    repeat and seed predicts every image once, on the fold where it is a test image; an external
    image is predicted by every run).

    Args:
        records: raw run records (with ``test_predictions``).
        network: the network.
        optimizer: the optimizer label.
        keys: the (repeat, fold, seed) runs to pool (those shared with the other side of a comparison).
        predictions: which predictions of a record to pool (``ids``, ``labels``, ``probs``); default
            its ``test_predictions``.

    Returns:
        image id -> (label, mean probabilities); empty when the records hold no predictions.
    """
    predictions = predictions or (lambda record: record.get("test_predictions"))
    sums: dict[str, list] = {}
    for record in records:
        if record.get("network") != network or record.get("optimizer") != optimizer:
            continue
        if _pair_key(record) not in keys or not predictions(record):
            continue
        pred = predictions(record)
        for image_id, label, probs in zip(pred["ids"], pred["labels"], pred["probs"]):
            entry = sums.setdefault(image_id, [int(label), np.zeros(len(probs)), 0])
            entry[1] = entry[1] + np.asarray(probs, dtype=np.float64)
            entry[2] += 1
    return {k: (v[0], v[1] / v[2]) for k, v in sums.items()}


def _delong(
    records: list[dict[str, Any]], network: str, optimizer: str, baseline: str, keys: list, num_classes: int
) -> tuple[int, float]:
    """(images, p) of DeLong's test between two optimizers' pooled out-of-fold predictions."""
    a = pooled_test_predictions(records, network, optimizer, set(keys))
    b = pooled_test_predictions(records, network, baseline, set(keys))
    ids = sorted(set(a) & set(b))
    if not ids:
        return 0, math.nan
    labels = np.array([a[i][0] for i in ids])
    pa, pb = np.stack([a[i][1] for i in ids]), np.stack([b[i][1] for i in ids])
    if num_classes == 2:  # the binary test on the positive (second) class
        pa, pb = pa[:, -1], pb[:, -1]
    try:
        return len(ids), delong_paired(labels, pa, pb).p_value
    except ValueError:  # a class with fewer than two images
        return len(ids), math.nan


def compare_to_baseline(
    rows: list[dict[str, Any]],
    config: StudyConfig,
    metrics: tuple[str, ...] = COMPARED_METRICS,
    records: list[dict[str, Any]] | None = None,
    lower_is_better: Collection[str] = GAP_METRICS,
    corrected_t: bool = True,
) -> list[Comparison]:
    """Paired Wilcoxon + bootstrap comparison of every optimizer with the baseline, per network.

    Beside the Wilcoxon test: the Nadeau-Bengio corrected resampled t-test over the train/test
    splits (seeds averaged per split), its minimal detectable difference, and, for the macro AUC
    when ``records`` (the raw run records) hold test predictions, DeLong's test on the pooled
    out-of-fold predictions of the same images. Each test is Holm-corrected on its own.

    The Holm family is all network x optimizer comparisons of one metric. The verdict is
    ``improves``/``hurts`` when the Holm-adjusted p-value is below ``analysis.alpha``, otherwise
    ``no evidence``; the direction comes from the mean difference, where a smaller value improves
    the metrics of ``lower_is_better`` (default :data:`GAP_METRICS`: generalization gaps, test loss).

    ``corrected_t=False`` leaves the corrected t-test and detectable difference out (``nan``): its
    variance correction models cross-validation test folds, not one fixed external test set.
    """
    analysis = config.analysis
    baseline, alpha = analysis["baseline"], float(analysis["alpha"])
    networks = list(dict.fromkeys(r["network"] for r in rows))
    optimizers = [o.label for o in config.optimizers if o.label != baseline]
    results: list[Comparison] = []
    for metric in metrics:
        family: list[Comparison] = []
        spreads: list[tuple[float, float]] = []  # (std of the split differences, n_test / n_train)
        for network in networks:
            for optimizer in optimizers:
                a, b, keys = paired_values(rows, network, optimizer, baseline, metric, with_keys=True)
                if a.size == 0:
                    continue
                splits = _split_differences(a, b, keys)
                ratio = _test_train_ratio(rows, network, config)
                nb = corrected_resampled_ttest(splits if corrected_t else [], ratio)
                test = wilcoxon_paired(a, b)
                mean, low, high = paired_bootstrap_ci(
                    a, b, analysis["confidence"], int(analysis["bootstrap_resamples"]), seed=0
                )
                family.append(
                    Comparison(
                        network,
                        optimizer,
                        metric,
                        test.n,
                        mean,
                        low,
                        high,
                        test.p_value,
                        1.0,
                        test.min_p,
                        test.method,
                        n_splits=nb.n,
                        nb_p=nb.p_value,
                    )
                )
                spreads.append((nb.std, ratio))
                if metric == "test_macro_auc" and records:
                    n_classes = int(config.data["num_classes"])
                    family[-1].delong_n, family[-1].delong_p = _delong(
                        records, network, optimizer, baseline, keys, n_classes
                    )
        adjusted = holm([c.wilcoxon_p for c in family])
        nb_holm, delong_holm = holm([c.nb_p for c in family]), holm([c.delong_p for c in family])
        for comp, nb_adj, dl_adj, (std, ratio) in zip(family, nb_holm, delong_holm, spreads):
            comp.nb_p_holm, comp.delong_p_holm = float(nb_adj), float(dl_adj)
            comp.mdd = minimal_detectable_difference(std, comp.n_splits, ratio, alpha / len(family))
        for comp, p_adj in zip(family, adjusted):
            comp.p_holm = float(p_adj)
            # best case: every pair agrees and this is the family's smallest p (Holm multiplies by m)
            comp.underpowered = bool(comp.min_p * len(family) >= alpha)
            if not math.isnan(comp.p_holm) and comp.p_holm < alpha and comp.mean_diff != 0:
                better = comp.mean_diff < 0 if metric in lower_is_better else comp.mean_diff > 0
                comp.verdict = "improves" if better else "hurts"
        results.extend(family)
    return results


def _claim_row(claim: str, comps: list[Comparison], expect: str) -> dict[str, str]:
    """Judge one claim from one optimizer's comparisons (one per network).

    When every comparison is underpowered and none is significant, the claim is ``inconclusive``:
    "no evidence" from a test that could never reject is not evidence of anything.
    """
    if not comps:
        return {"claim": claim, "evidence": "not in this study", "status": "not tested"}
    evidence = ", ".join(f"{c.network}: {c.verdict} ({c.mean_diff:+.3f})" for c in comps)
    values = {c.verdict for c in comps}
    if values == {"no evidence"} and all(c.underpowered for c in comps):
        return {"claim": claim, "evidence": evidence, "status": "inconclusive (too few pairs to test)"}
    if expect == "improves":
        if values == {"improves"}:
            status = "supported"
        elif "hurts" in values:
            status = "contradicted"
        elif "improves" in values:
            status = "partly supported"
        else:
            status = "not supported (no significant difference)"
    elif expect == "not improves":
        status = "consistent" if "improves" not in values else "contradicted"
    else:  # "inconsistent": the verdicts differ between networks
        status = "consistent" if len(values) > 1 else f"not observed (all: {next(iter(values))})"
    return {"claim": claim, "evidence": evidence, "status": status}


def _unless_untestable(status: str, otherwise: str) -> str:
    """``status`` when it is ``not tested`` or ``inconclusive...``, else ``otherwise``."""
    return status if status == "not tested" or status.startswith("inconclusive") else otherwise


def single_class_runs(records: list[dict[str, Any]], num_classes: int) -> list[str]:
    """Run ids whose model predicted the same class for every test image.

    Such runs did not learn, and comparisons built on them measure noise. The arg-max of the stored
    per-image test probabilities decides; a record without them counts when its test balanced
    accuracy is exactly ``1 / num_classes``, which a one-class model always gets (but which a model
    predicting several classes can also get: see :func:`chance_level_runs`).
    """
    return [r["run_id"] for r in records if _predicted_classes(r, num_classes) == 1]


def chance_level_runs(records: list[dict[str, Any]], num_classes: int) -> list[str]:
    """Run ids that predict several classes but whose test balanced accuracy is at most chance (``1 / K``)."""
    return [
        r["run_id"]
        for r in records
        if _predicted_classes(r, num_classes) != 1
        and as_float((r.get("test") or {}).get("balanced_accuracy")) <= 1.0 / num_classes + 1e-9
    ]


def _predicted_classes(record: dict[str, Any], num_classes: int) -> int | None:
    """How many classes the run predicted on its test fold (``None`` when that cannot be told)."""
    probs = (record.get("test_predictions") or {}).get("probs")
    if probs:
        return len(np.unique(np.argmax(np.asarray(probs, dtype=float), axis=1)))
    bacc = as_float((record.get("test") or {}).get("balanced_accuracy"))
    return 1 if math.isclose(bacc, 1.0 / num_classes, abs_tol=1e-9) else None


#: How the claims name the paper's methods (by registered optimizer name).
_METHOD_TITLES = {
    "sam": "SAM",
    "asam": "ASAM",
    "gsam": "GSAM",
    "wsam": "WSAM",
    "crsam": "CR-SAM",
    "msam": "MSAM",
}


def _external_claim_rows(comparisons: list[Comparison], config: StudyConfig) -> list[dict[str, str]]:
    """Per method and external set: does it improve the AUC on another hospital's images?

    Judged like the other claims, on the Wilcoxon verdicts of the external AUC (Holm across methods);
    the evidence adds the verdict on the drop (internal minus external AUC, smaller is better).
    """
    names = [spec["name"] for spec in config.data.get("external") or []]
    if not names:
        return [
            {
                "claim": "Sharpness-aware training improves generalization to another hospital",
                "evidence": "no external test set in this study (data.external)",
                "status": "not tested",
            }
        ]
    rows = []
    for name in names:
        for opt in config.optimizers:
            if opt.label == config.analysis["baseline"]:
                continue
            auc, drops = (
                [
                    c
                    for c in comparisons
                    if c.metric == external_column(name, key) and c.optimizer == opt.label
                ]
                for key in ("auc", "auc_drop")
            )
            title = _METHOD_TITLES.get(opt.label, opt.label)
            row = _claim_row(f"{title} improves generalization to another hospital ({name})", auc, "improves")
            if drops:
                row["evidence"] = (
                    "AUC "
                    + row["evidence"]
                    + "; drop "
                    + ", ".join(f"{c.network}: {c.verdict} ({c.mean_diff:+.3f})" for c in drops)
                )
            rows.append(row)
    return rows


def claims_table(comparisons: list[Comparison], config: StudyConfig) -> list[dict[str, str]]:
    """The paper's claims (arXiv:2408.04065) judged on this study's primary metric, and, per method,
    whether it improves generalization to another hospital (the external sets' AUC).

    Optimizers are matched by registered name (the first label with that name); networks are
    split into CNNs and transformers by the bundle that trains them.
    """
    metric = "test_" + config.analysis["metric"]
    label_of = {}
    for opt in config.optimizers:
        label_of.setdefault(opt.name, opt.label)
    bundle_of = {n.name: n.bundle for n in config.networks}
    primary = [c for c in comparisons if c.metric == metric]

    def verdicts(name: str, family: str | None = None) -> list[Comparison]:
        label = label_of.get(name)
        return [
            c
            for c in primary
            if c.optimizer == label
            and (family is None or bundle_of.get(c.network, "").endswith("vit") == (family == "vit"))
        ]

    rows = [
        _claim_row("SAM improves generalization for every model", verdicts("sam"), "improves"),
        _claim_row("ASAM improves the CNNs", verdicts("asam", "cnn"), "improves"),
        _claim_row("ASAM does not improve the vision transformers", verdicts("asam", "vit"), "not improves"),
    ]
    for name, title in (("gsam", "GSAM"), ("wsam", "WSAM"), ("crsam", "CR-SAM")):
        rows.append(_claim_row(f"{title} is inconsistent across models", verdicts(name), "inconsistent"))
    others_all_improve = [
        label
        for label in {c.optimizer for c in primary}
        if label != label_of.get("sam")
        and {c.verdict for c in primary if c.optimizer == label} == {"improves"}
    ]
    sam_row = rows[0]
    only = sam_row["status"] == "supported" and not others_all_improve
    rows.append(
        {
            "claim": "SAM is the only sharpness-based optimizer that helps consistently",
            "evidence": f"SAM: {sam_row['status']}; "
            f"others improving on every model: {others_all_improve or 'none'}",
            "status": "supported" if only else _unless_untestable(sam_row["status"], "not supported"),
        }
    )
    return rows + _external_claim_rows(comparisons, config)


def sharpness_gap_correlations(rows: list[dict[str, Any]], gap: str = "gap_loss") -> list[dict[str, Any]]:
    """Spearman rank correlation of every sharpness column with a generalization-gap column."""
    out = []
    for col in sorted({k for r in rows for k in r if k.startswith("sharpness_")}):
        pairs = np.array([(as_float(r.get(col)), as_float(r.get(gap))) for r in rows])
        pairs = pairs[~np.isnan(pairs).any(axis=1)] if pairs.size else pairs
        if len(pairs) < 3 or np.ptp(pairs[:, 0]) == 0 or np.ptp(pairs[:, 1]) == 0:
            out.append(
                {"measure": col, "gap": gap, "n": len(pairs), "spearman_rho": math.nan, "p_value": math.nan}
            )
            continue
        res = stats.spearmanr(pairs[:, 0], pairs[:, 1])
        out.append(
            {
                "measure": col,
                "gap": gap,
                "n": len(pairs),
                "spearman_rho": float(res.statistic),
                "p_value": float(res.pvalue),
            }
        )
    return out
