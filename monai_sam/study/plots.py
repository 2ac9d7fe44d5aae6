"""Figures of a study report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from monai_sam.study.analysis import BOUNDED_METRICS, PERFORMANCE_METRICS, Comparison

__all__ = [
    "key_metric_name",
    "plot_curves",
    "plot_differences",
    "plot_external_generalization",
    "plot_metric_summary",
    "plot_sharpness_gap",
]


def _finite(values) -> np.ndarray:
    """Float array of ``values`` with None mapped to nan."""
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def _save(fig, path: Path) -> Path:
    """Save and close ``fig``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # long axis labels must not be clipped
    plt.close(fig)
    return path


def plot_metric_summary(summary: list[dict[str, Any]], metric: str, path: Path) -> Path:
    """Grouped bars: mean ``metric`` per optimizer (bars) and network (groups), with CI whiskers.

    A metric in [0, 1] (:data:`~monai_sam.study.analysis.PERFORMANCE_METRICS`) gets the axis [0, 1].
    Bars without a whisker had too few runs for an interval, which the title says.
    """
    networks = list(dict.fromkeys(s["network"] for s in summary))
    optimizers = list(dict.fromkeys(s["optimizer"] for s in summary))
    width = 0.8 / max(len(optimizers), 1)
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(networks) * max(1, len(optimizers) / 3)), 3.6))
    lookup = {(s["network"], s["optimizer"]): s for s in summary}
    missing = False
    for j, opt in enumerate(optimizers):
        xs, means, errs = [], [], [[], []]
        for i, net in enumerate(networks):
            entry = lookup.get((net, opt))
            if entry is None:
                continue
            mean, low, high = (entry[f"{metric}_{k}"] for k in ("mean", "ci_low", "ci_high"))
            missing |= math.isnan(low) or math.isnan(high)
            xs.append(i + (j - (len(optimizers) - 1) / 2) * width)
            means.append(mean)
            errs[0].append(0 if math.isnan(low) else mean - low)
            errs[1].append(0 if math.isnan(high) else high - mean)
        ax.bar(xs, means, width, yerr=errs, capsize=2, label=opt)
    ax.set_xticks(range(len(networks)), networks)
    name = metric.replace("_", " ")
    ax.set_ylabel(name)
    if metric in PERFORMANCE_METRICS:
        ax.set_ylim(0.0, 1.0)
    kind = "percentile bootstrap over runs" if metric in BOUNDED_METRICS else "t-interval"
    title = f"{name}: mean and 95% {kind}"
    if missing:
        title += "\n(no whisker: too few runs for an interval)"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=min(len(optimizers), 6))
    return _save(fig, path)


def plot_external_generalization(summary: list[dict[str, Any]], name: str, path: Path) -> Path:
    """Internal (open) and external (filled) AUC per optimizer and network, with bootstrap whiskers.

    Args:
        summary: entries of :func:`monai_sam.study.generalization.summarize_external`.
        name: the external set to draw.
        path: the PNG file.
    """
    entries = [s for s in summary if s["external"] == name]
    networks = list(dict.fromkeys(s["network"] for s in entries))
    optimizers = list(dict.fromkeys(s["optimizer"] for s in entries))
    lookup = {(s["network"], s["optimizer"]): s for s in entries}
    width = 0.8 / max(len(optimizers), 1)
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(networks) * max(1, len(optimizers) / 3)), 3.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, opt in enumerate(optimizers):
        color = colors[j % len(colors)]
        for i, net in enumerate(networks):
            entry = lookup.get((net, opt))
            if entry is None:
                continue
            x = i + (j - (len(optimizers) - 1) / 2) * width
            for key, offset, face in (("internal_auc", -0.15, "white"), ("auc", 0.15, color)):
                mean, low, high = (_finite([entry[f"{key}_{k}"]])[0] for k in ("mean", "ci_low", "ci_high"))
                err = [[0 if math.isnan(low) else mean - low], [0 if math.isnan(high) else high - mean]]
                ax.errorbar(x + offset * width, mean, yerr=err, fmt="o", color=color, mfc=face, capsize=2)
            ax.plot(
                [x - 0.15 * width, x + 0.15 * width],
                [entry["internal_auc_mean"], entry["auc_mean"]],
                color=color,
                alpha=0.6,
            )
    ax.set_xticks(range(len(networks)), networks)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("AUC, positive class vs the other mapped classes", fontsize=8)
    handles = [
        Line2D([], [], color=colors[j % len(colors)], marker="o", ls="", label=o)
        for j, o in enumerate(optimizers)
    ]
    handles += [
        Line2D([], [], color="grey", marker="o", mfc="white", ls="", label="internal (test folds)"),
        Line2D([], [], color="grey", marker="o", ls="", label=f"external ({name})"),
    ]
    ax.legend(handles=handles, fontsize=7, ncol=min(len(handles), 4))
    ax.set_title(
        f"internal and external AUC, mean and 95% percentile bootstrap over runs ({name})", fontsize=9
    )
    return _save(fig, path)


def key_metric_name(curves: dict[str, Any]) -> str | None:
    """Name of the validation key metric of a run's curves (the ``val_*`` curve equal to it), or None."""
    key = curves.get("val_key_metric")
    if not key:
        return None
    target = _finite(key)
    for name, values in curves.items():
        if (
            name in ("val_key_metric", "val_epoch")
            or not name.startswith("val_")
            or not isinstance(values, list)
        ):
            continue
        other = _finite(values) if all(isinstance(v, (int, float)) or v is None for v in values) else None
        if other is not None and other.shape == target.shape and np.allclose(other, target, equal_nan=True):
            return name
    return None


def _network_key_metric(records: list[dict[str, Any]], network: str) -> str:
    """The key metric's name for the axis of ``network`` (all its runs), or a plain description."""
    names = {key_metric_name(r.get("curves") or {}) for r in records if r["network"] == network}
    names.discard(None)
    return f"validation {names.pop()}" if len(names) == 1 else "validation key metric"


def plot_curves(records: list[dict[str, Any]], path: Path) -> Path:
    """Per-epoch training loss and validation key metric (named on the axis), mean over folds and seeds."""
    networks = list(dict.fromkeys(r["network"] for r in records))
    fig, axes = plt.subplots(2, max(len(networks), 1), figsize=(4 * max(len(networks), 1), 6), squeeze=False)
    for col, net in enumerate(networks):
        grouped: dict[str, list[dict]] = defaultdict(list)
        for rec in records:
            if rec["network"] == net and rec.get("curves"):
                grouped[rec["optimizer"]].append(rec["curves"])
        for opt, curves in grouped.items():
            for row, (key, epochs) in enumerate((("train_loss", "epoch"), ("val_key_metric", "val_epoch"))):
                length = max(len(c.get(key, [])) for c in curves)
                if length == 0:
                    continue
                padded = np.full((len(curves), length), np.nan)
                for k, c in enumerate(curves):
                    values = _finite(c.get(key, []))
                    padded[k, : values.size] = values
                with np.errstate(invalid="ignore"):
                    mean = np.nanmean(padded, axis=0)
                longest = max(curves, key=lambda c: len(c.get(key, [])))
                xs = longest.get(epochs) or list(range(1, length + 1))  # validation may skip epochs
                axes[row, col].plot(np.asarray(xs[:length]), mean, marker=".", label=opt)
        axes[0, col].set_title(net)
        axes[0, col].set_ylabel("training loss")
        axes[1, col].set_ylabel(_network_key_metric(records, net))
        axes[1, col].set_xlabel("epoch")
        axes[1, col].xaxis.get_major_locator().set_params(integer=True)
        axes[0, col].xaxis.get_major_locator().set_params(integer=True)
        axes[0, col].legend(fontsize=7)
    return _save(fig, path)


def plot_sharpness_gap(
    rows: list[dict[str, Any]], measures: list[str], path: Path, gap: str = "gap_loss"
) -> Path:
    """Scatter of each sharpness measure against the generalization gap, one colour per optimizer."""
    measures = measures or ["(none)"]
    fig, axes = plt.subplots(1, len(measures), figsize=(4.2 * len(measures), 3.6), squeeze=False)
    optimizers = list(dict.fromkeys(r["optimizer"] for r in rows))
    networks = list(dict.fromkeys(r["network"] for r in rows))
    markers = "os^Dv<>p*"
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, measure in zip(axes[0], measures):
        for j, opt in enumerate(optimizers):
            for k, net in enumerate(networks):
                sel = [r for r in rows if r["optimizer"] == opt and r["network"] == net]
                xs, ys = _finite([r.get(measure) for r in sel]), _finite([r.get(gap) for r in sel])
                style = {"marker": markers[k % len(markers)], "color": colours[j % len(colours)]}
                ax.scatter(xs, ys, label=f"{opt} / {net}", alpha=0.8, **style)
        xs_all = _finite([r.get(measure) for r in rows])
        if (
            np.all(xs_all[~np.isnan(xs_all)] > 0)
            and np.nanmax(xs_all, initial=0) / max(np.nanmin(xs_all, initial=1), 1e-12) > 50
        ):
            ax.set_xscale("log")
        ax.set_xlabel(measure.replace("sharpness_", ""))
        ax.set_ylabel(f"{gap.replace('_', ' ')} (test - train)")
    axes[0, 0].legend(fontsize=6)
    return _save(fig, path)


def plot_differences(comparisons: list[Comparison], metric: str, path: Path) -> Path:
    """Mean paired difference to the baseline with bootstrap CIs, one row per network x optimizer.

    The colour is the verdict and the legend says which; a comparison with too few pairs for a
    bootstrap interval is drawn as a hollow marker without whiskers, and the legend says so.
    """
    comps = [c for c in comparisons if c.metric == metric]
    fig, ax = plt.subplots(figsize=(6, 0.35 * max(len(comps), 2) + 1.6))
    colours = {"improves": "tab:green", "hurts": "tab:red", "no evidence": "tab:gray"}
    verdicts, too_few = [], set()
    for i, c in enumerate(comps):
        colour = colours[c.verdict]
        verdicts.append(c.verdict)
        if math.isnan(c.boot_low) or math.isnan(c.boot_high):
            ax.plot(c.mean_diff, i, "o", mfc="white", mec=colour, ms=7)
            too_few.add(c.n)
        else:
            low, high = c.mean_diff - c.boot_low, c.boot_high - c.mean_diff
            ax.errorbar(c.mean_diff, i, xerr=[[low], [high]], fmt="o", color=colour, capsize=3)
    handles = [
        Line2D([], [], marker="o", ls="none", color=colours[v], label=f"verdict: {v}")
        for v in colours
        if v in verdicts
    ]
    if too_few:
        pairs = "/".join(str(n) for n in sorted(too_few))
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="none",
                mfc="white",
                mec="tab:gray",
                label=f"no CI: {pairs} pairs (< 3)",
            )
        )
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="best")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(comps)), [f"{c.network} / {c.optimizer}" for c in comps])
    ax.set_xlabel(
        f"{metric.replace('_', ' ')}: optimizer minus baseline\n(mean paired difference, bootstrap 95% CI)"
    )
    ax.invert_yaxis()
    return _save(fig, path)
