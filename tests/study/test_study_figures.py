"""Honest study figures and tables: bounded intervals, named axes, and plots that draw their legends."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
from study_fakes import FakeRun, make_config

from monai_sam.study import plots
from monai_sam.study.analysis import compare_to_baseline, flatten_run, summarize
from monai_sam.study.report import write_report
from monai_sam.study.runner import load_runs, run_study
from monai_sam.study.statistics import bootstrap_mean_ci


class SensitivityRun(FakeRun):
    """FakeRun whose malignant sensitivity swings between 0 and 1 (a t-interval leaves [0, 1])."""

    def __call__(self, spec):
        record = super().__call__(spec)
        record["test"]["malignant_sensitivity"] = [0.0, 1.0, 0.0][spec.fold % 3]
        record["curves"]["val_auc"] = list(record["curves"]["val_key_metric"])
        record["curves"]["val_accuracy"] = [0.1, 0.2]
        return record


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions save, by file name (kept open for inspection)."""
    saved = {}

    def keep(fig, path):
        saved[path.name] = fig
        return path

    monkeypatch.setattr(plots, "_save", keep)
    yield saved
    for fig in saved.values():
        plt.close(fig)


def _study(tmp_path, folds):
    config = make_config(seeds=[0], folds=folds)
    run_study(config, tmp_path, run_fn=SensitivityRun(), progress=False)
    return config, [flatten_run(r) for r in load_runs(tmp_path)]


def test_bootstrap_interval_of_a_bounded_metric_stays_in_range():
    mean, low, high = bootstrap_mean_ci([0.0, 1.0, 0.0, 1.0, 0.0])
    assert mean == pytest.approx(0.4) and 0.0 <= low < mean < high <= 1.0
    assert bootstrap_mean_ci([0.2, 0.4, 0.9], seed=3) == bootstrap_mean_ci([0.2, 0.4, 0.9], seed=3)
    assert all(math.isnan(v) for v in bootstrap_mean_ci([0.5, 0.6])[1:])  # too few values


def test_summary_intervals_of_bounded_metrics_stay_in_range(tmp_path):
    _, rows = _study(tmp_path, [0, 1, 2])
    for entry in summarize(rows):
        for metric in ("test_malignant_sensitivity", "test_macro_auc", "test_accuracy"):
            low, high = entry[f"{metric}_ci_low"], entry[f"{metric}_ci_high"]
            assert 0.0 <= low <= high <= 1.0, (metric, low, high)  # t would give [-0.10, 0.77] here


def test_metric_chart_axis_stays_in_the_metric_range(tmp_path, figures):
    _, rows = _study(tmp_path, [0, 1, 2])
    plots.plot_metric_summary(summarize(rows), "test_malignant_sensitivity", tmp_path / "m.png")
    ax = figures["m.png"].axes[0]
    assert ax.get_ylim() == (0.0, 1.0)
    assert "bootstrap" in ax.get_title()


def test_differences_plot_draws_the_intervals_its_legend_names(tmp_path, figures):
    config, rows = _study(tmp_path, [0, 1, 2])
    comps = compare_to_baseline(rows, config)
    plots.plot_differences(comps, "test_macro_auc", tmp_path / "d.png")
    ax = figures["d.png"].axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 4  # every comparison has 3 pairs: every one gets its interval
    for bar, comp in zip(bars, [c for c in comps if c.metric == "test_macro_auc"]):
        segment = bar.lines[2][0].get_segments()[0]
        assert np.allclose(sorted(segment[:, 0]), [comp.boot_low, comp.boot_high])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["verdict: no evidence"]


def test_differences_plot_and_table_explain_missing_intervals(tmp_path, figures):
    _study(tmp_path, [0, 1])  # 2 pairs: too few for a bootstrap interval
    text = write_report(tmp_path).read_text()
    assert "[-, -]" not in text
    assert "(no CI: 2 pairs, the bootstrap needs at least 3)" in text
    ax = figures["study_differences.png"].axes[0]
    assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert "no CI: 2 pairs (< 3)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_curves_axis_names_the_key_metric(tmp_path, figures):
    _study(tmp_path, [0, 1])
    text = write_report(tmp_path).read_text()
    ax = figures["study_curves.png"].axes
    assert ax[2].get_ylabel() == "validation val_auc"  # second row, first column (resnet18)
    assert "validation key metric (`val_auc`)" in text


def test_power_note_states_the_range_of_pairs(tmp_path):
    config = make_config(seeds=[0], folds=[0, 1, 2, 3, 4])
    run_study(config, tmp_path, run_fn=SensitivityRun(), progress=False)
    for fold in (3, 4):  # ASAM misses two folds: 3 pairs against SAM's 5
        for net in ("resnet18", "vit_small"):
            (tmp_path / "runs" / f"{net}__asam__fold{fold}__seed0.json").unlink()
    text = write_report(tmp_path, config=config).read_text()
    assert "between n = 3 and n = 5 paired runs" in text
    assert (
        "With the most pairs, the exact two-sided Wilcoxon test cannot return p below 2/2^n = 0.0625" in text
    )
