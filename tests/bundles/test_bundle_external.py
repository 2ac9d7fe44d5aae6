"""External validation in evaluate.json: a synthetic second site through the real CLI, both bundles' knob."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from bundle_cli import BUNDLES, CNN_NET, TINY, config, run_cli
from PIL import Image
from scipy import stats
from test_bundle_configs import workflow

from monai_sam.data import make_site_phantom
from monai_sam.metrics import youden_operating_point
from monai_sam.networks import build_network

SITE = {"name": "site", "csv": "site.csv", "id_column": "ID", "case_column": "Case", "group_column": "Device"}
FILES = ("metrics.json", "predictions.csv", "groups.csv", "roc.png", "reliability.png")


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _conditional(row: dict) -> float:
    """p(malignant) / (p(benign) + p(malignant)) from a predictions CSV row."""
    benign, malignant = float(row["prob_benign"]), float(row["prob_malignant"])
    return malignant / (benign + malignant)


def _auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney U / (n_pos n_neg) from scipy."""
    u = stats.mannwhitneyu(scores[positive], scores[~positive]).statistic
    return float(u / (positive.sum() * (~positive).sum()))


def _evaluate(out, dataset_dir, *extra, check=True):
    args = ["run", "--config_file", config("cnn", "train", "evaluate"), "--output_dir", str(out)]
    return run_cli(
        [*args, "--dataset_dir", str(dataset_dir), *TINY, *CNN_NET, *extra], cwd=out.parent, check=check
    )


@pytest.mark.slow
def test_evaluate_writes_the_external_site(trained_cnn, phantom_dir, tmp_path):
    out = tmp_path / "eval"
    shutil.copytree(trained_cnn, out)
    site = make_site_phantom(tmp_path / "site", num_per_class=8, image_size=48)
    # Internal images join the site under their own patient: one benign test image (the same pipeline must
    # predict it as the test evaluation did), and the validation split's benign and malignant images, whose
    # predictions then show which threshold the internal validation split gives.
    split = json.loads((out / "data_split" / "split.json").read_text())
    names = ("benign", "malignant")
    copies = {"test_0": next(i for i in split["test"] if i["label"] == 0)}
    copies.update({f"val_{k}": i for k, i in enumerate(split["validation"]) if i["label"] in (0, 1)})
    with open(site / "site.csv", "a") as f:
        for stem, item in copies.items():
            shutil.copy(item["image"], site / names[item["label"]] / f"{stem}.png")
            f.write(f"{stem},{stem},{names[item['label']]},site-B scanner 1\n")
    proc = _evaluate(out, phantom_dir, "--external", repr([{**SITE, "source": str(site)}]))

    for name in FILES:
        assert (out / f"external_site_{name}").stat().st_size > 0
        assert str(out / f"external_site_{name}") in proc.stdout  # the summary lists every file
    assert "external site auc:" in proc.stdout and (out / "eval_test_metrics.json").is_file()
    for png in ("roc", "reliability"):
        with Image.open(out / f"external_site_{png}.png") as image:
            assert image.format == "PNG" and min(image.size) > 300

    result = json.loads((out / "external_site_metrics.json").read_text())
    rows = _rows(out / "external_site_predictions.csv")
    n = 16 + len(copies)
    assert (result["n"], len(rows), result["bootstrap"]["clusters"]) == (n, n, 8 + len(copies))
    assert result["score"]["definition"] == "p(malignant) / (p(benign) + p(malignant))"
    assert result["set"]["negative_classes"] == ["benign"] and result["ckpt_path"].endswith("model.pt")
    assert result["settings"]["network"] == "resnet18" and result["bootstrap"]["unit"] == "case (patient)"
    # the AUC and scores, recomputed from the written probabilities (Mann-Whitney)
    scores = np.array([_conditional(r) for r in rows])
    positive = np.array([r["positive"] == "1" for r in rows])
    assert scores == pytest.approx([float(r["score"]) for r in rows], abs=1e-5)
    assert result["auc"] == pytest.approx(_auc(positive, scores), abs=1e-4)
    raw = np.array([float(r["prob_malignant"]) for r in rows])
    assert result["auc_by_score_rule"]["raw"] == pytest.approx(_auc(positive, raw), abs=1e-4)
    # one pipeline: the copied test image gets the test evaluation's probabilities
    tested = {r["image"]: r for r in _rows(out / "eval_test_predictions.csv")}
    copied = next(r for r in rows if r["relpath"] == "benign/test_0.png")
    for c in ("benign", "malignant", "normal"):
        assert float(copied[f"prob_{c}"]) == pytest.approx(
            float(tested[copies["test_0"]["image"]][f"prob_{c}"]), abs=1e-5
        )
    # the operating point: Youden's J on the validation split's benign and malignant images
    val = [r for r in rows if r["relpath"].split("/")[1].startswith("val_")]
    expected = youden_operating_point(
        [r["positive"] == "1" for r in val], [_conditional(r) for r in val], "internal validation split"
    )
    op = result["operating_point"]
    assert op["source"] == "internal validation split" and op["rule"] == "youden" and op["n"] == len(val)
    # JSON has no infinity: a threshold above every score (J <= 0 everywhere) is null, with a note
    threshold = op["threshold"] if op["threshold"] is not None else float("inf")
    assert threshold == pytest.approx(expected.threshold, abs=1e-4) and op["note"] == expected.note
    called = np.array([r["called_positive"] == "1" for r in rows])
    assert np.array_equal(called, scores >= threshold)
    assert result["sensitivity"] == pytest.approx(called[positive].mean())
    assert result["specificity"] == pytest.approx(1 - called[~positive].mean())
    # the internal AUC of the same task: the evaluated (test) split's benign and malignant images
    internal = [r for r in tested.values() if r["label"] in names]
    assert result["internal"]["split"] == "test" and result["internal"]["n"] == len(internal)
    assert result["internal"]["auc"] == pytest.approx(
        _auc(
            np.array([r["label"] == "malignant" for r in internal]),
            np.array([_conditional(r) for r in internal]),
        ),
        abs=1e-4,
    )
    groups = {r["group"]: r for r in _rows(out / "external_site_groups.csv")}
    assert set(groups) == {"site-B scanner 1", "site-B scanner 2"}
    assert sum(int(g["n"]) for g in groups.values()) == n
    assert int(groups["site-B scanner 2"]["n"]) == 8  # 4 patients x 2 images
    low, high = result["bootstrap"]["intervals"]["auc"]
    assert low <= result["auc"] <= high


@pytest.mark.slow
def test_bad_external_set_fails_before_evaluating(trained_cnn, phantom_dir, tmp_path):
    out = tmp_path / "eval"
    shutil.copytree(trained_cnn, out)
    site = make_site_phantom(tmp_path / "site", num_per_class=3, image_size=32)
    spec = {**SITE, "source": str(site), "label_map": {"benign": "benign"}}
    proc = _evaluate(out, phantom_dir, "--external", repr([spec]), check=False)
    assert proc.returncode != 0
    assert (
        proc.stderr.rstrip()
        .splitlines()[-1]
        .startswith(
            "ValueError: external set 'site': external class(es) ['malignant'] are not covered by label_map"
        )
    )
    assert not (out / "eval_test_metrics.json").exists()  # nothing was evaluated


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_external_knob_of_both_bundles(bundle, phantom_dir, tmp_path):
    site = make_site_phantom(tmp_path / "site", num_per_class=3, image_size=32)
    wf = workflow(
        bundle,
        ("train", "evaluate"),
        "train",
        output_dir=str(tmp_path),
        image_size=32,
        external=[{**SITE, "source": str(site)}],
    )
    net = build_network(wf.parser["network_name"], 3, image_size=32, pretrained=False)
    torch.save(net.state_dict(), tmp_path / "model.pt")
    wf.parser["dataset_dir"] = str(phantom_dir)
    wf.initialize()
    evaluation = wf.parser.get_parsed_content("external_evaluation")
    (external,) = evaluation.sets
    assert external.name == "site" and len(external.items) == 6
    assert evaluation.preprocessing is wf.parser.get_parsed_content("validate#preprocessing")  # one pipeline
    assert len(evaluation.operating_items) == len(wf.parser.get_parsed_content("datalist_dict")["validation"])
    default = workflow(bundle, ("train", "evaluate"), "train", output_dir=str(tmp_path), image_size=32)
    assert default.parser["external"] == []
