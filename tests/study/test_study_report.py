"""Report of a study from synthetic runs: summaries, paired tests, verdicts, claims and files."""

import csv
import json

import numpy as np
import pytest
import yaml
from scipy import stats
from study_fakes import FakeRun, make_config

from monai_sam.cli import main
from monai_sam.study.analysis import (
    chance_level_runs,
    claims_table,
    compare_to_baseline,
    flatten_run,
    single_class_runs,
    summarize,
)
from monai_sam.study.report import write_report
from monai_sam.study.runner import load_runs, run_study


def _rows(tmp_path, config, run_fn):
    run_study(config, tmp_path, run_fn=run_fn, progress=False)
    return [flatten_run(r) for r in load_runs(tmp_path)]


def test_verdicts_with_enough_pairs(tmp_path):
    config = make_config()  # 5 folds x 2 seeds = 10 pairs per comparison
    rows = _rows(tmp_path, config, FakeRun(sam_gain=0.05, asam_loss=0.05))
    comps = {
        (c.network, c.optimizer): c for c in compare_to_baseline(rows, config) if c.metric == "test_macro_auc"
    }
    assert len(comps) == 4
    for net in ("resnet18", "vit_small"):
        sam, asam = comps[(net, "sam")], comps[(net, "asam")]
        assert sam.n == 10 and sam.method == "exact"
        assert sam.wilcoxon_p == pytest.approx(2 / 2**10)
        assert sam.wilcoxon_p < sam.p_holm <= 4 * sam.wilcoxon_p  # Holm over 4 comparisons
        assert sam.verdict == "improves" and not sam.underpowered
        assert asam.verdict == "hurts"
        assert sam.mean_diff == pytest.approx(0.05, abs=0.02)
        assert sam.boot_low < sam.mean_diff < sam.boot_high
    claims = {r["claim"]: r["status"] for r in claims_table(list(comps.values()), config)}
    assert claims["SAM improves generalization for every model"] == "supported"
    assert claims["ASAM improves the CNNs"] == "contradicted"
    assert claims["SAM is the only sharpness-based optimizer that helps consistently"] == "supported"
    assert claims["GSAM is inconsistent across models"] == "not tested"


def test_no_effect_is_no_evidence(tmp_path):
    config = make_config()
    rows = _rows(tmp_path, config, FakeRun(sam_gain=0.0, noise=0.02))
    comps = [c for c in compare_to_baseline(rows, config) if c.metric == "test_accuracy"]
    assert {c.verdict for c in comps} == {"no evidence"}


def test_few_pairs_flagged_underpowered(tmp_path):
    config = make_config(seeds=[0], folds=[0, 1, 2])
    rows = _rows(tmp_path, config, FakeRun(sam_gain=0.2))
    comps = compare_to_baseline(rows, config)
    assert all(c.underpowered and c.verdict == "no evidence" for c in comps)
    claims = {r["claim"]: r["status"] for r in claims_table(comps, config)}
    assert claims["SAM improves generalization for every model"].startswith("inconclusive")


def test_summary_ci_is_t_interval_for_unbounded_and_bootstrap_for_bounded(tmp_path):
    config = make_config()
    rows = _rows(tmp_path, config, FakeRun())
    entry = next(s for s in summarize(rows) if s["network"] == "resnet18" and s["optimizer"] == "sam")
    mine = [r for r in rows if r["network"] == "resnet18" and r["optimizer"] == "sam"]
    gaps = [r["gap_loss"] for r in mine]
    low, high = stats.t.interval(0.95, len(gaps) - 1, loc=np.mean(gaps), scale=stats.sem(gaps))
    assert entry["n"] == 10
    assert (entry["gap_loss_ci_low"], entry["gap_loss_ci_high"]) == pytest.approx((low, high))
    aucs = [r["test_macro_auc"] for r in mine]
    ref = stats.bootstrap(
        (np.array(aucs),), np.mean, n_resamples=10000, method="percentile", random_state=0
    ).confidence_interval
    assert (entry["test_macro_auc_ci_low"], entry["test_macro_auc_ci_high"]) == pytest.approx(
        (ref.low, ref.high), abs=2e-3
    )  # same method as scipy's percentile bootstrap (other random draws)


def test_report_files_and_report_only_cli(tmp_path):
    config = make_config(seeds=[0], folds=[0, 1, 2])
    run_study(config, tmp_path, run_fn=FakeRun(), progress=False)
    report = write_report(tmp_path)
    text = report.read_text()
    for needle in ("Paired comparison with adam", "Wilcoxon", "Holm", "can reach significance", "claims"):
        assert needle.lower() in text.lower()
    assert "no comparison can reach significance" in text
    for name in (
        "runs.csv",
        "summary.csv",
        "comparisons.csv",
        "study_metric.png",
        "study_curves.png",
        "study_sharpness_gap.png",
        "study_differences.png",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    with (tmp_path / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 18 and "sharpness_hessian_top_eigenvalue" in rows[0] and "gap_loss" in rows[0]
    (tmp_path / "report.md").unlink()
    assert main(["study", "--report-only", "--output", str(tmp_path)]) == 0
    assert (tmp_path / "report.md").read_text() == text


def test_report_of_empty_study(tmp_path):
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(make_config().to_dict()))
    assert "No run has finished yet" in write_report(tmp_path).read_text()


def test_single_class_runs_flagged(tmp_path):
    config = make_config(seeds=[0], folds=[0, 1, 2])
    run_study(config, tmp_path, run_fn=FakeRun(), progress=False)
    path = tmp_path / "runs" / "vit_small__adam__fold1__seed0.json"
    record = json.loads(path.read_text())
    record["test"]["balanced_accuracy"] = 1 / 3  # what predicting one class gives with 3 classes
    path.write_text(json.dumps(record))
    assert single_class_runs(load_runs(tmp_path), 3) == ["vit_small__adam__fold1__seed0"]
    assert "1 of 18 runs predict a single class" in write_report(tmp_path).read_text()


def test_single_class_is_read_from_the_predictions(tmp_path):
    # Balanced accuracy 1/3 is also what a run gets that finds every malignant image and no other one,
    # predicting malignant or normal (a busi-cpu ViT run did): that run is at chance, not one-class.
    config = make_config(seeds=[0], folds=[0, 1, 2])
    run_study(config, tmp_path, run_fn=FakeRun(), progress=False)
    labels = [0, 0, 1, 1, 2, 2]
    for run_id, argmax in (
        ("resnet18__adam__fold1__seed0", [1, 2, 1, 1, 1, 1]),
        ("resnet18__sam__fold1__seed0", [0] * 6),
    ):
        path = tmp_path / "runs" / f"{run_id}.json"
        record = json.loads(path.read_text())
        probs = [[0.8 if c == k else 0.1 for c in range(3)] for k in argmax]
        record["test_predictions"] = {"ids": [str(i) for i in range(6)], "labels": labels, "probs": probs}
        record["test"]["balanced_accuracy"] = 1 / 3
        path.write_text(json.dumps(record))
    records = load_runs(tmp_path)
    assert single_class_runs(records, 3) == ["resnet18__sam__fold1__seed0"]
    assert chance_level_runs(records, 3) == ["resnet18__adam__fold1__seed0"]
    text = write_report(tmp_path).read_text()
    assert "1 of 18 runs predict a single class" in text and "`resnet18__sam__fold1__seed0`" in text
    assert "1 of 18 runs predict several classes but with a test balanced accuracy at or below chance" in text


def test_runs_outside_the_grid_are_counted(tmp_path):
    run_study(make_config(seeds=[0], folds=[0, 1, 2]), tmp_path, run_fn=FakeRun(), progress=False)
    text = write_report(tmp_path, config=make_config(seeds=[0], folds=[0, 1])).read_text()
    assert "**12 of 12** in the grid, plus 6 runs" in text


def test_gap_metrics_improve_when_smaller(tmp_path):
    config = make_config()  # 10 pairs; FakeRun's gap_loss is 0.95 - value, so SAM's gain shrinks the gap
    rows = _rows(tmp_path, config, FakeRun(sam_gain=0.05))
    gap = {(c.network, c.optimizer): c for c in compare_to_baseline(rows, config) if c.metric == "gap_loss"}
    assert gap[("resnet18", "sam")].mean_diff < 0
    assert gap[("resnet18", "sam")].verdict == "improves"
