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

from monai_sam.study.analysis import Comparison

__all__ = ["plot_curves", "plot_differences", "plot_metric_summary", "plot_sharpness_gap"]


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
    """Grouped bars: mean ``metric`` per optimizer (bars) and network (groups), with CI whiskers."""
    networks = list(dict.fromkeys(s["network"] for s in summary))
    optimizers = list(dict.fromkeys(s["optimizer"] for s in summary))
    width = 0.8 / max(len(optimizers), 1)
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(networks) * max(1, len(optimizers) / 3)), 3.6))
    lookup = {(s["network"], s["optimizer"]): s for s in summary}
    for j, opt in enumerate(optimizers):
        xs, means, errs = [], [], [[], []]
        for i, net in enumerate(networks):
            entry = lookup.get((net, opt))
            if entry is None:
                continue
            mean, low, high = (entry[f"{metric}_{k}"] for k in ("mean", "ci_low", "ci_high"))
            xs.append(i + (j - (len(optimizers) - 1) / 2) * width)
            means.append(mean)
            errs[0].append(0 if math.isnan(low) else mean - low)
            errs[1].append(0 if math.isnan(high) else high - mean)
        ax.bar(xs, means, width, yerr=errs, capsize=2, label=opt)
    ax.set_xticks(range(len(networks)), networks)
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"{metric.replace('_', ' ')}: mean and 95% t-interval")
    ax.legend(fontsize=7, ncol=min(len(optimizers), 6))
    return _save(fig, path)


def plot_curves(records: list[dict[str, Any]], path: Path) -> Path:
    """Per-epoch training loss and validation key metric, averaged over folds and seeds."""
    networks = list(dict.fromkeys(r["network"] for r in records))
    fig, axes = plt.subplots(2, max(len(networks), 1), figsize=(4 * max(len(networks), 1), 6), squeeze=False)
    for col, net in enumerate(networks):
        grouped: dict[str, list[dict]] = defaultdict(list)
        for rec in records:
            if rec["network"] == net and rec.get("curves"):
                grouped[rec["optimizer"]].append(rec["curves"])
        for opt, curves in grouped.items():
            for row, key in enumerate(("train_loss", "val_key_metric")):
                length = max(len(c.get(key, [])) for c in curves)
                if length == 0:
                    continue
                padded = np.full((len(curves), length), np.nan)
                for k, c in enumerate(curves):
                    values = _finite(c.get(key, []))
                    padded[k, : values.size] = values
                with np.errstate(invalid="ignore"):
                    mean = np.nanmean(padded, axis=0)
                axes[row, col].plot(np.arange(1, length + 1), mean, marker=".", label=opt)
        axes[0, col].set_title(net)
        axes[0, col].set_ylabel("training loss")
        axes[1, col].set_ylabel("validation key metric")
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
    """Mean paired difference to the baseline with bootstrap CIs, one row per network x optimizer."""
    comps = [c for c in comparisons if c.metric == metric]
    fig, ax = plt.subplots(figsize=(6, 0.35 * max(len(comps), 2) + 1.2))
    colours = {"improves": "tab:green", "hurts": "tab:red", "no evidence": "tab:gray"}
    for i, c in enumerate(comps):
        low = 0 if math.isnan(c.boot_low) else c.mean_diff - c.boot_low
        high = 0 if math.isnan(c.boot_high) else c.boot_high - c.mean_diff
        ax.errorbar(c.mean_diff, i, xerr=[[low], [high]], fmt="o", color=colours[c.verdict], capsize=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(comps)), [f"{c.network} / {c.optimizer}" for c in comps])
    ax.set_xlabel(f"{metric.replace('_', ' ')}: optimizer minus baseline\n(paired, bootstrap 95% CI)")
    ax.invert_yaxis()
    return _save(fig, path)
