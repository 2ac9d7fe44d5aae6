"""External validation in the study: the config key, the records of a real tiny study with a synthetic second
site, and the report's "External generalization" section and claims from synthetic runs."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from study_fakes import FakeExternalRun, make_config

from monai_sam.data import make_site_phantom
from monai_sam.metrics import delong_paired
from monai_sam.study.analysis import claims_table, flatten_run
from monai_sam.study.config import StudyConfig, preset_dict
from monai_sam.study.generalization import compare_external, external_group_table, summarize_external
from monai_sam.study.report import write_report
from monai_sam.study.runner import load_runs, run_study
from monai_sam.study.statistics import holm

SITE = {"name": "site", "csv": "site.csv", "id_column": "ID", "case_column": "Case", "group_column": "Device"}


def _external_config(**changes) -> StudyConfig:
    return make_config(
        data={"source": "phantom", "folds": 5, "external": [{"name": "site", "source": "x"}]}, **changes
    )


def test_config_key_is_validated_and_fingerprinted():
    raw = preset_dict("quick")
    without = StudyConfig.from_dict(raw).fingerprint()
    raw["data"]["external"] = []
    assert StudyConfig.from_dict(raw).fingerprint() == without  # no set: the fingerprint is unchanged
    raw["data"]["external"] = [{"name": "site", "source": "/data/site"}]
    config = StudyConfig.from_dict(raw)
    assert config.fingerprint() != without
    assert config.data["external"] == [
        {"name": "site", "source": "/data/site", "positive": "malignant", "score": "conditional"}
    ]
    assert StudyConfig.from_dict(config.to_dict()).fingerprint() == config.fingerprint()
    raw["data"]["external"] = [{"name": "site", "source": "/data/other"}]
    assert StudyConfig.from_dict(raw).fingerprint() != config.fingerprint()
    raw["data"]["external"] = [{"name": "site", "source": "x", "score": "max"}]
    with pytest.raises(ValueError, match=r"study.yaml: data.external\[0\].score: 'max'"):
        StudyConfig.from_dict(raw, source="study.yaml")


def test_comparisons_on_the_same_external_images(tmp_path):
    config = _external_config()  # 5 folds x 2 seeds = 10 pairs, 2 networks, adam / sam / asam
    run_study(config, tmp_path, run_fn=FakeExternalRun(), progress=False)
    records = load_runs(tmp_path)
    rows = [flatten_run(r) for r in records]
    row = rows[0]
    assert row["external_site_auc_drop"] == pytest.approx(
        row["external_site_internal_auc"] - row["external_site_auc"]
    )
    comparisons, delong = compare_external(rows, records, config)
    comps = {(c.network, c.optimizer, c.metric): c for c in comparisons}
    for net in ("resnet18", "vit_small"):
        sam, asam = comps[(net, "sam", "external_site_auc")], comps[(net, "asam", "external_site_auc")]
        assert sam.n == 10 and sam.wilcoxon_p < 0.01 and sam.verdict == "improves" and sam.mean_diff > 0
        assert asam.verdict == "hurts" and np.isnan(sam.nb_p)  # no corrected t-test on a fixed test set
        # DeLong on the probabilities averaged over the ten paired runs, scored p(m) / (p(b) + p(m))
        mean = {
            opt: np.mean(
                [
                    r["external"]["site"]["predictions"]["probs"]
                    for r in records
                    if r["network"] == net and r["optimizer"] == opt
                ],
                axis=0,
            )
            for opt in ("adam", "sam")
        }
        score = {k: v[:, 1] / (v[:, 0] + v[:, 1]) for k, v in mean.items()}
        reference = delong_paired(np.repeat([0, 1], 20), score["sam"], score["adam"])
        assert sam.delong_n == 40 and sam.delong_p == pytest.approx(reference.p_value)
        assert delong[("site", net, "sam")].auc_a == pytest.approx(reference.auc_a)
        assert sam.delong_p <= sam.delong_p_holm <= 4 * sam.delong_p  # Holm over the 4 AUC comparisons
        drop = comps[(net, "sam", "external_site_auc_drop")]
        assert drop.mean_diff < 0 and drop.verdict == "improves"  # a smaller drop is better
    auc = [c for c in comparisons if c.metric == "external_site_auc"]
    assert [c.delong_p_holm for c in auc] == pytest.approx(list(holm([c.delong_p for c in auc])))
    claims = {r["claim"]: r for r in claims_table(comparisons, config)}
    assert claims["SAM improves generalization to another hospital (site)"]["status"] == "supported"
    assert claims["ASAM improves generalization to another hospital (site)"]["status"] == "contradicted"
    assert (
        "drop resnet18: improves"
        in claims["SAM improves generalization to another hospital (site)"]["evidence"]
    )
    summary = {(s["network"], s["optimizer"]): s for s in summarize_external(rows, config)}
    sam_runs = [r for r in rows if r["network"] == "resnet18" and r["optimizer"] == "sam"]
    assert summary[("resnet18", "sam")]["auc_mean"] == pytest.approx(
        np.mean([r["external_site_auc"] for r in sam_runs])
    )
    assert summary[("resnet18", "sam")]["auc_ci_low"] <= summary[("resnet18", "sam")]["auc_mean"]
    devices = {(g["network"], g["optimizer"], g["group"]): g for g in external_group_table(records, config)}
    assert (
        np.isnan(devices[("resnet18", "sam", "C")]["auc_mean"])
        and devices[("resnet18", "sam", "C")]["n"] == 2
    )
    assert devices[("resnet18", "sam", "A")]["runs"] == 10


def test_report_section_and_files(tmp_path):
    config = _external_config()
    run_study(config, tmp_path, run_fn=FakeExternalRun(), progress=False)
    report = write_report(tmp_path, config).read_text()
    section = report[report.index("## External generalization: site") : report.index("## The paper's claims")]
    assert "40 images of 20 patients (20 benign, 20 malignant)" in section
    assert "`p(malignant) / (p(benign) + p(malignant))`" in section
    assert "### Paired comparison with adam on site" in section and "### site per device" in section
    assert re.search(
        r"\| resnet18 \| sam \| 10 \| \+0\.\d{3} \[", section
    )  # AUC difference with its interval
    assert "internal validation split" in section and "What this cannot support" in section
    assert (tmp_path / "study_external_site.png").stat().st_size > 0
    with open(tmp_path / "comparisons.csv") as f:
        metrics = {row["metric"] for row in csv.DictReader(f)}
    assert {"test_macro_auc", "external_site_auc", "external_site_auc_drop", "external_site_ece"} <= metrics
    assert (tmp_path / "external_summary.csv").is_file() and (tmp_path / "external_groups.csv").is_file()
    claims = report[report.index("## The paper's claims") :]
    assert "| SAM improves generalization to another hospital (site) |" in claims


def test_study_without_external_sets_says_so():
    rows = claims_table([], make_config())
    assert rows[-1] == {
        "claim": "Sharpness-aware training improves generalization to another hospital",
        "evidence": "no external test set in this study (data.external)",
        "status": "not tested",
    }


@pytest.mark.slow
def test_tiny_study_with_a_synthetic_second_site(tmp_path):
    site = make_site_phantom(tmp_path / "site", num_per_class=6, image_size=32)
    raw = preset_dict("quick")
    raw["data"]["phantom"] = {"num_per_class": 12, "image_size": 32}
    raw["data"]["external"] = [{**SITE, "source": str(site)}]
    raw["train"].update(max_epochs=1, image_size=32)
    raw.update(
        folds=[0], networks=["resnet18"], sharpness={"enabled": False}, optimizers=raw["optimizers"][:2]
    )
    config = StudyConfig.from_dict(raw, source="tiny external")
    run_study(config, tmp_path / "study", progress=False)
    records = load_runs(tmp_path / "study")
    assert len(records) == 2
    for record in records:
        entry = record["external"]["site"]
        pred, metrics = entry["predictions"], entry["metrics"]
        assert len(pred["ids"]) == len(pred["probs"]) == len(pred["cases"]) == 12
        assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in pred["ids"] + pred["cases"])
        assert len(set(pred["ids"])) == 12 and len(set(pred["cases"])) == 6  # two images per patient
        assert set(pred["groups"]) == {"site-B scanner 1", "site-B scanner 2"}
        assert (entry["positive"], entry["mapped"], entry["score_rule"]) == (1, [0, 1], "conditional")
        assert metrics["operating_point"]["source"] == "internal validation split"
        assert metrics["bootstrap"]["unit"] == "case (patient)" and metrics["bootstrap"]["clusters"] == 6
        assert 0 <= metrics["auc"] <= 1 and 0 <= metrics["brier"] <= 1
        # the operating point: the fold's validation images of the mapped classes (benign, malignant)
        validation = json.loads((tmp_path / "study" / "splits" / "fold_0.json").read_text())["validation"]
        assert metrics["operating_point"]["n"] == sum(item["label"] in (0, 1) for item in validation)
        # the internal AUC: the test fold's benign and malignant images, the same score rule
        test = record["test_predictions"]
        keep = [i for i, label in enumerate(test["labels"]) if label in (0, 1)]
        probs = np.asarray(test["probs"])[keep]
        malignant = np.asarray(test["labels"])[keep] == 1
        score = probs[:, 1] / (probs[:, 0] + probs[:, 1])
        pairs = [(a > b) + 0.5 * (a == b) for a in score[malignant] for b in score[~malignant]]
        assert metrics["internal"]["n"] == len(keep)
        assert metrics["internal"]["auc"] == pytest.approx(np.mean(pairs), abs=1e-4)
        text = json.dumps(record)
        assert "site_benign" not in text and "site_malignant" not in text and "b000" not in text
    report = write_report(tmp_path / "study").read_text()
    assert "## External generalization: site" in report and "| resnet18 | sam | 1 |" in report
    assert "SAM improves generalization to another hospital (site) |" in report
