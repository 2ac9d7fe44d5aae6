"""Write a study's report: ``report.md``, ``runs.csv``, ``summary.csv``, ``comparisons.csv`` and PNGs."""

from __future__ import annotations

import csv
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from monai_sam.study.analysis import (
    COMPARED_METRICS,
    PERFORMANCE_METRICS,
    Comparison,
    chance_level_runs,
    claims_table,
    compare_to_baseline,
    flatten_run,
    sharpness_gap_correlations,
    single_class_runs,
    summarize,
)
from monai_sam.study.config import StudyConfig
from monai_sam.study.generalization import (
    compare_external,
    external_group_table,
    external_names,
    summarize_external,
)
from monai_sam.study.grid import expand_grid
from monai_sam.study.plots import (
    key_metric_name,
    plot_curves,
    plot_differences,
    plot_external_generalization,
    plot_metric_summary,
    plot_sharpness_gap,
)
from monai_sam.study.runner import load_runs, read_study_config
from monai_sam.study.statistics import MIN_BOOTSTRAP_SIZE

__all__ = ["write_csv", "write_report"]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write dict rows as CSV with the union of their keys as header (first-seen order)."""
    header = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _fmt(value: Any, digits: int = 3) -> str:
    """A number for a Markdown table; ``-`` for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _ci(entry: dict[str, Any], metric: str, digits: int = 3) -> str:
    """``mean [low, high]`` from a summary entry."""
    mean, low, high = (entry.get(f"{metric}_{k}") for k in ("mean", "ci_low", "ci_high"))
    if mean is None or math.isnan(mean):
        return "-"
    if low is None or math.isnan(low):
        return _fmt(mean, digits)
    return f"{_fmt(mean, digits)} [{_fmt(low, digits)}, {_fmt(high, digits)}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _power_note(comparisons: list[Comparison], alpha: float) -> str:
    """Plain-language statement of what the number of pairs allows."""
    if not comparisons:
        return (
            "No paired comparison is possible yet "
            "(the baseline and another optimizer must share folds and seeds)."
        )
    low, high = min(c.n for c in comparisons), max(c.n for c in comparisons)
    m = len(comparisons)
    best = min(c.min_p for c in comparisons)
    pairs = f"n = {low}" if low == high else f"between n = {low} and n = {high}"
    text = (
        f"Each comparison has {pairs} paired runs (repeats x folds x seeds). With the most pairs, the "
        f"exact two-sided Wilcoxon test cannot return p below 2/2^n = {best:.4f}, and Holm over the {m} "
        f"comparisons of one metric needs p < {alpha}/{m} = {alpha / m:.4f} for the strongest one. "
    )
    if best * m >= alpha:
        text += (
            "**With this many pairs no comparison can reach significance, whatever the data**: every "
            "'no evidence' below is a statement about power, not evidence that the optimizers are equal. "
            "Read the mean differences and bootstrap intervals as effect sizes and add folds or seeds "
            f"(n >= {math.floor(math.log2(2 * m / alpha)) + 1} pairs are needed for a chance)."
        )
    else:
        text += (
            "Significance is reachable, but with few pairs only a difference that is consistent "
            "in every pair can reach it."
        )
    return text


def _other_tests_note(comparisons: list[Comparison], alpha: float) -> str:
    """What the corrected t-test, DeLong's test and the detectable difference columns mean."""
    if not comparisons:
        return ""
    m = len(comparisons)
    return (
        "**Corrected t p**: Nadeau-Bengio corrected resampled t-test over the train/test splits (repeats x "
        "folds, training seeds averaged per split), whose variance is inflated by n_test/n_train because "
        "cross-validation training sets overlap; Holm-adjusted in brackets. **DeLong p**: DeLong's test of "
        "the macro one-vs-rest AUC difference on the pooled out-of-fold test predictions of the same images "
        "(each image's probabilities averaged over repeats and seeds); Holm-adjusted in brackets. "
        f"**Detectable diff**: the smallest true mean difference the corrected t-test detects with 80% "
        f"power at alpha/{m} = {alpha / m:.4f} (the strictest Holm step), from the observed spread of the "
        "per-split differences: a 'no evidence' verdict rules out differences larger than this, not "
        "smaller ones."
    )


def _settings(config: StudyConfig, n_done: int, n_total: int, n_extra: int = 0) -> str:
    """The settings block at the top of the report."""
    data, train = config.data, config.train
    opts = ", ".join(
        o.label
        + (
            f" (rho={o.rho}" + "".join(f", {k}={v}" for k, v in o.kwargs.items()) + ")"
            if o.rho is not None
            else ""
        )
        for o in config.optimizers
    )
    return "\n".join(
        [
            f"- Runs finished: **{n_done} of {n_total}** in the grid"
            + (f", plus {n_extra} runs of the same settings outside it (included below)" if n_extra else ""),
            f"- Data: {data['source']} ({data.get('dataset_dir') or 'default location'}), "
            f"{data['num_classes']} classes, {data['folds']}-fold stratified cross-validation "
            f"x {data['repeats']} repeat(s) (split seeds {config.split_seeds}); folds run: {config.folds}; "
            f"seeds: {config.seeds}",
            "- Networks: "
            + ", ".join(f"{n.name} ({n.bundle}{_own(n.train)}{_own(n.evaluation)})" for n in config.networks),
            f"- Optimizers: {opts}",
            f"- Training: {train['max_epochs']} epochs, batch {train['batch_size']}, lr {train['lr']}, "
            f"{train['image_size']} px, AMP {train['amp']}; "
            f"evaluated checkpoint: {config.evaluation['checkpoint']} (unless a network names its own)",
            f"- Config fingerprint: `{config.fingerprint()}`",
        ]
    )


def _own(settings: dict[str, Any]) -> str:
    """A network's own training or evaluation settings for the settings block (empty when none)."""
    return "".join(f", {k} {v}" for k, v in settings.items())


def _metric_tables(summary: list[dict[str, Any]]) -> str:
    """Test metrics, gap, sharpness and cost per network x optimizer."""
    perf = [m.removeprefix("test_") for m in PERFORMANCE_METRICS]
    rows = [
        [s["network"], s["optimizer"], str(s["n"])] + [_ci(s, m) for m in PERFORMANCE_METRICS]
        for s in summary
    ]
    text = (
        "### Test-fold metrics (mean [95% percentile bootstrap interval over runs])\n\n"
        "The metrics are bounded to [0, 1], and so are their intervals: a percentile bootstrap of the mean "
        f"over the runs (10,000 resamples, seed 0), given from {MIN_BOOTSTRAP_SIZE} runs on (a mean alone "
        "below that). With few runs it cannot exceed the observed range and is narrower than the true "
        "uncertainty.\n\n" + _table(["network", "optimizer", "n", *perf], rows)
    )
    sharp = sorted(
        {
            k.removesuffix("_mean")
            for s in summary
            for k in s
            if k.startswith("sharpness_") and k.endswith("_mean")
        }
    )
    cols = ["gap_loss", "gap_accuracy", *sharp, "train_wall_s", "passes"]
    rows = [
        [s["network"], s["optimizer"]] + [_ci(s, c, {"train_wall_s": 1, "passes": 0}.get(c, 3)) for c in cols]
        for s in summary
    ]
    names = [c.removeprefix("sharpness_") for c in cols]
    text += (
        "\n\n### Generalization gap, sharpness at the end of training, and cost\n\n"
        "Intervals: percentile bootstrap over runs for the bounded columns (`gap_accuracy`, "
        "`train_wall_s`, `passes`), Student t for the unbounded ones (`gap_loss`, sharpness).\n\n"
        + _table(["network", "optimizer", *names], rows)
    )
    return text


def _comparison_table(comparisons: list[Comparison], metric: str) -> str:
    """The paired-comparison table of one metric."""
    rows = []
    for c in comparisons:
        if c.metric != metric:
            continue
        verdict = c.verdict + (" (underpowered)" if c.underpowered else "")
        rows.append(
            [
                *_paired_cells(c),
                f"{_fmt(c.nb_p)} ({_fmt(c.nb_p_holm)})",
                f"{_fmt(c.delong_p)} ({_fmt(c.delong_p_holm)})" if c.delong_n else "-",
                f"±{_fmt(c.mdd)}" if not math.isnan(c.mdd) else "-",
                verdict,
            ]
        )
    header = [
        "network",
        "optimizer",
        "n pairs",
        "mean diff [bootstrap 95% CI]",
        "Wilcoxon p",
        "Holm p",
        "corrected t p (Holm)",
        "DeLong p (Holm)",
        "detectable diff",
        "verdict",
    ]
    return _table(header, rows)


def _paired_cells(c: Comparison) -> list[str]:
    """Network, optimizer, pairs, mean difference with its interval, Wilcoxon p (method) and Holm p."""
    return [
        c.network,
        c.optimizer,
        str(c.n),
        _difference(c),
        f"{_fmt(c.wilcoxon_p)} ({c.method})",
        _fmt(c.p_holm),
    ]


def _difference(c: Comparison) -> str:
    """``+0.012 [low, high]``, or the mean with the reason there is no bootstrap interval."""
    if math.isnan(c.boot_low) or math.isnan(c.boot_high):
        return f"{c.mean_diff:+.3f} (no CI: {c.n} pairs, the bootstrap needs at least {MIN_BOOTSTRAP_SIZE})"
    return f"{c.mean_diff:+.3f} [{_fmt(c.boot_low)}, {_fmt(c.boot_high)}]"


def _verdict_grid(comparisons: list[Comparison]) -> str:
    """Verdicts of every performance metric (rows: network x optimizer)."""
    keys = list(dict.fromkeys((c.network, c.optimizer) for c in comparisons))
    lookup = {(c.network, c.optimizer, c.metric): c.verdict for c in comparisons}
    rows = [[n, o] + [lookup.get((n, o, m), "-") for m in COMPARED_METRICS] for n, o in keys]
    return _table(["network", "optimizer", *[m.removeprefix("test_") for m in COMPARED_METRICS]], rows)


#: How the external comparisons are tested (``alpha`` is filled in).
_EXTERNAL_TESTS = (
    "**Across pairs**: Wilcoxon signed-rank test of the paired external AUCs, Holm-corrected across the "
    "network x method comparisons, alpha = {alpha}, with the percentile bootstrap interval of the mean "
    "difference; it asks whether the method wins run by run (training runs are the sampling unit). "
    "**On the same images**: DeLong's test of the AUC of the method's and the baseline's pooled predictions "
    "(each image's probabilities averaged over the paired runs, then scored), Holm-corrected across methods; "
    "it asks whether the averaged models rank these images differently (images are the unit). One pooled "
    "test rather than one per pair: the pairs share every image, so their DeLong p-values are dependent and "
    "cannot be combined as if independent. DeLong treats images as independent, so several images of one "
    "patient make it somewhat liberal. The drop (internal minus external AUC), ECE and Brier columns: "
    "smaller is better, Wilcoxon and Holm likewise. The corrected resampled t-test is not used here: its "
    "correction is for cross-validation test folds, and every run is tested on the same external images."
)


def _external_set_text(name: str, records: list[dict[str, Any]]) -> str:
    """What external set ``name`` holds and how its numbers are made (from a run record)."""
    entry = next(r["external"][name]["metrics"] for r in records if name in (r.get("external") or {}))
    info, op = entry["set"], entry["operating_point"]
    classes = ", ".join(f"{n} {c}" for c, n in info["model_classes"].items())
    patients = f" of {info['cases']} patients" if info.get("cases") else ""
    return (
        f"{info['n']} images{patients} ({classes}) from another site, the same for every run. "
        f"Score: `{entry['score']['definition']}` (`{entry['score']['rule']}`: the positive class "
        "renormalised over the classes the set maps to, so probability the model gives to a class the set "
        "cannot contain does not count as a negative call). **Internal AUC**: each run's test fold, its "
        "images of the same classes only, the same score, so the two AUCs measure the same task and "
        "**drop** = internal minus external. Sensitivity and specificity: at the threshold maximising "
        f"Youden's J on each run's {op['source']} (never on the external images). ECE: 10 equal-width bins. "
        "Intervals: percentile bootstrap of the mean over runs (10,000 resamples, seed 0); each run's own "
        "patient-level bootstrap intervals are in `runs/*.json` (`external.<name>.metrics.bootstrap`)."
    )


def _external_comparison_table(comparisons: list[Comparison], delong: dict, name: str) -> str:
    """Paired comparisons with the baseline on one external set: AUC (Wilcoxon, DeLong), drop, ECE, Brier."""
    by_key = {(c.network, c.optimizer, c.metric): c for c in comparisons}
    rows = []
    for c in (c for c in comparisons if c.metric == f"external_{name}_auc"):
        other = {
            k: by_key.get((c.network, c.optimizer, f"external_{name}_{k}"))
            for k in ("auc_drop", "ece", "brier")
        }
        pooled = delong.get((name, c.network, c.optimizer))
        rows.append(
            [
                *_paired_cells(c),
                f"{_fmt(pooled.auc_a)} vs {_fmt(pooled.auc_b)}" if pooled else "-",
                f"{_fmt(c.delong_p)} ({_fmt(c.delong_p_holm)})" if pooled else "-",
                c.verdict + (" (underpowered)" if c.underpowered else ""),
                *(f"{_difference(o)}: {o.verdict}" if o else "-" for o in other.values()),
            ]
        )
    header = [
        "network",
        "optimizer",
        "n pairs",
        "external AUC diff [bootstrap 95% CI]",
        "Wilcoxon p",
        "Holm p",
        "pooled AUC (method vs baseline)",
        "DeLong p (Holm)",
        "verdict",
        "drop diff: verdict",
        "ECE diff: verdict",
        "Brier diff: verdict",
    ]
    return _table(header, rows)


def _external_sections(
    config: StudyConfig, rows: list[dict[str, Any]], records: list[dict[str, Any]], images: Path, out: Path
) -> tuple[list[str], list[Comparison]]:
    """The "External generalization" section of every external set, and its comparisons."""
    names = [n for n in external_names(config) if any(n in (r.get("external") or {}) for r in records)]
    if not names:
        return [], []
    summary = summarize_external(rows, config)
    comparisons, delong = compare_external(rows, records, config)
    groups = external_group_table(records, config)
    write_csv(out / "external_summary.csv", summary)
    if groups:
        write_csv(out / "external_groups.csv", groups)
    baseline, alpha = config.analysis["baseline"], float(config.analysis["alpha"])
    parts = []
    for name in names:
        figure = plot_external_generalization(summary, name, images / f"study_external_{name}.png")
        cols = ("internal_auc", "auc", "auc_drop", "sensitivity", "specificity", "ece", "brier")
        table = _table(
            [
                "network",
                "optimizer",
                "runs",
                "internal AUC",
                "external AUC",
                "drop",
                "sensitivity",
                "specificity",
                "ECE",
                "Brier",
            ],
            [
                [e["network"], e["optimizer"], str(e["n"])] + [_ci(e, c) for c in cols]
                for e in summary
                if e["external"] == name
            ],
        )
        auc = [c for c in comparisons if c.metric == f"external_{name}_auc"]
        device = [g for g in groups if g["external"] == name]
        parts += [
            f"## External generalization: {name}\n\n" + _external_set_text(name, records),
            "### AUC inside and outside the hospital, and calibration\n\n"
            "Mean over runs [95% percentile bootstrap interval over runs].\n\n" + table,
            f"![internal and external AUC]({Path(_relative(figure, out)).as_posix()})",
            f"### Paired comparison with {baseline} on {name}\n\n"
            "Each method minus the baseline on the same (repeat, fold, seed) pairs. "
            + _EXTERNAL_TESTS.format(alpha=alpha)
            + "\n\n"
            + _external_comparison_table(comparisons, delong, name),
            _power_note(auc, alpha),
        ]
        if device:
            parts.append(
                f"### {name} per device\n\n"
                "Mean over runs [95% bootstrap interval over runs]; a device with images of one class "
                "has no AUC.\n\n"
                + _table(
                    [
                        "network",
                        "optimizer",
                        "device",
                        "images",
                        "positive",
                        "AUC",
                        "sensitivity",
                        "specificity",
                    ],
                    [
                        [g["network"], g["optimizer"], g["group"], str(g["n"]), str(g["positives"])]
                        + [_ci(g, k) for k in ("auc", "sensitivity", "specificity")]
                        for g in device
                    ],
                )
            )
        parts.append(
            "What this cannot support: one external site is one draw of a hospital, scanner park and "
            "case mix, and the study's runs share its images, so intervals over runs say nothing about other "
            "hospitals. Choices tuned on this set (preprocessing, thresholds) make its figures optimistic."
        )
    return parts, comparisons


def write_report(
    output_dir: str | Path, config: StudyConfig | None = None, image_dir: str | Path | None = None
) -> Path:
    """Build the report of the study in ``output_dir`` from its saved runs.

    Args:
        output_dir: a study output directory (``study.yaml`` and ``runs/``).
        config: the study configuration; read from ``output_dir/study.yaml`` when omitted.
        image_dir: where the PNGs go (default ``output_dir``); the Markdown links them relatively.

    Returns:
        The path of ``report.md``.
    """
    out = Path(output_dir)
    config = config or read_study_config(out)
    images = Path(image_dir) if image_dir else out
    records = load_runs(out)
    rows = [flatten_run(r) for r in records]
    metric = "test_" + config.analysis["metric"]
    alpha = float(config.analysis["alpha"])
    summary = summarize(rows, float(config.analysis["confidence"]))
    comparisons = compare_to_baseline(rows, config, records=records)
    correlations = sharpness_gap_correlations(rows)
    if rows:
        write_csv(out / "runs.csv", rows)
        write_csv(out / "summary.csv", summary)
    external_parts, external_comparisons = _external_sections(config, rows, records, images, out)
    if comparisons or external_comparisons:
        write_csv(out / "comparisons.csv", [asdict(c) for c in comparisons + external_comparisons])
    primary = [c for c in comparisons if c.metric == metric]
    grid = {spec.run_id for spec in expand_grid(config)}
    in_grid = sum(r["run_id"] in grid for r in records)
    parts = [
        f"# Optimizer study: {config.name}",
        _settings(config, in_grid, len(grid), len(records) - in_grid),
    ]
    if not rows:
        parts.append("No run has finished yet.")
        (out / "report.md").write_text("\n\n".join(parts) + "\n")
        return out / "report.md"
    figures = {
        "metric": plot_metric_summary(summary, metric, images / "study_metric.png"),
        "differences": plot_differences(comparisons, metric, images / "study_differences.png"),
        "curves": plot_curves(records, images / "study_curves.png"),
        "sharpness": plot_sharpness_gap(
            rows, [c["measure"] for c in correlations], images / "study_sharpness_gap.png"
        ),
    }
    link = {k: Path(_relative(v, out)).as_posix() for k, v in figures.items()}
    baseline = config.analysis["baseline"]
    num_classes = int(config.data["num_classes"])
    degenerate = single_class_runs(records, num_classes)
    if degenerate:
        parts.append(
            f"**Warning: {len(degenerate)} of {len(rows)} runs predict a single class on the test fold** "
            "(the arg-max of every test image is the same class): they did not learn, and "
            "comparisons built on them measure noise. Train longer, pretrain, or tune the learning rate. "
            "Runs: " + ", ".join(f"`{r}`" for r in degenerate)
        )
    at_chance = chance_level_runs(records, num_classes)
    if at_chance:
        parts.append(
            f"**Note: {len(at_chance)} of {len(rows)} runs predict several classes but with a test "
            f"balanced accuracy at or below chance (1/{num_classes})**: their thresholds are no better "
            "than guessing, whatever their AUC. Runs: " + ", ".join(f"`{r}`" for r in at_chance)
        )
    parts += [
        "## Results\n\n" + _metric_tables(summary),
        f"![{metric}]({link['metric']})",
        f"## Paired comparison with {baseline} on {metric.removeprefix('test_')}\n\n"
        "Each optimizer minus the baseline on the same folds and seeds. "
        "Wilcoxon signed-rank test (two-sided; "
        "exact without ties, normal approximation otherwise), Holm-corrected across all network x optimizer "
        f"comparisons of this metric, alpha = {alpha}; "
        "the interval is a percentile bootstrap of the mean paired "
        "difference (10,000 resamples of pairs, seed 0).\n\n" + _comparison_table(comparisons, metric),
        _power_note(primary, alpha),
        _other_tests_note(primary, alpha),
        f"![differences]({link['differences']})",
        *external_parts,
        "## The paper's claims, on this study's data\n\n"
        "Claims of Hassan, Vakanski and Xian (arXiv:2408.04065), judged on the verdicts above "
        f"({metric.removeprefix('test_')}; generalization to another hospital: the external AUC's Wilcoxon "
        "verdicts).\n\n"
        + _table(
            ["claim", "evidence (per network)", "status"],
            [
                [r["claim"], r["evidence"], r["status"]]
                for r in claims_table(comparisons + external_comparisons, config)
            ],
        ),
        "### Verdicts on every compared metric (Holm within each metric)\n\n"
        "For the generalization gaps (`gap_loss` = test minus training loss, `gap_accuracy` = training minus "
        "test accuracy) and the test cross-entropy, smaller is better: `improves` means a smaller value than "
        "the baseline.\n\n" + _verdict_grid(comparisons),
        "## Training curves\n\n"
        "Mean over folds and seeds of the training loss and the validation key metric "
        f"({_key_metrics(records)}).\n\n"
        f"![curves]({link['curves']})",
        "## Sharpness against generalization gap\n\n"
        "Gap = test loss minus training loss, both in eval mode with the evaluation transforms. "
        "Spearman rank "
        "correlation over all runs (networks and optimizers pooled, so it mixes between-model differences "
        "with within-model ones):\n\n"
        + _table(
            ["measure", "n", "Spearman rho", "p"],
            [
                [
                    c["measure"].removeprefix("sharpness_"),
                    str(c["n"]),
                    _fmt(c["spearman_rho"]),
                    _fmt(c["p_value"]),
                ]
                for c in correlations
            ],
        )
        + f"\n\n![sharpness vs gap]({link['sharpness']})",
        "Files: `runs.csv` (one row per run), `summary.csv` (means and intervals), "
        "`comparisons.csv` (every metric), "
        + ("`external_summary.csv`, `external_groups.csv` (external sets), " if external_parts else "")
        + "`runs/*.json` (full records with per-epoch curves).",
    ]
    path = out / "report.md"
    path.write_text("\n\n".join(parts) + "\n")
    return path


def _key_metrics(records: list[dict[str, Any]]) -> str:
    """The validation key metrics of the runs' curves, by name (``val_auc``), for the curves' caption."""
    names = sorted({n for r in records if (n := key_metric_name(r.get("curves") or {}))})
    return ", ".join(f"`{n}`" for n in names) if names else "its name was not recorded"


def _relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` when possible (for Markdown links), else absolute."""
    import os

    return os.path.relpath(path.resolve(), start.resolve())
