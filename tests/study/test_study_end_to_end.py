"""The quick preset through the real training path (bundle train.json via ConfigWorkflow), at a tiny size."""

import json
import logging

import pytest

from monai_sam.cli import main
from monai_sam.study.config import StudyConfig, preset_dict
from monai_sam.study.grid import expand_grid
from monai_sam.study.runner import load_runs, run_study
from monai_sam.study.training import BundleRunFunction

pytestmark = pytest.mark.slow

TINY = ["--max-epochs", "1", "--image-size", "32", "--folds", "0", "1", "--optimizers", "adam", "sam"]


def _tiny_quick() -> StudyConfig:
    raw = preset_dict("quick")
    raw["data"]["phantom"] = {"num_per_class": 12, "image_size": 32}
    raw["train"].update(max_epochs=1, image_size=32)
    raw["folds"] = [0]
    raw["networks"] = ["resnet18"]
    raw["sharpness"] = {"enabled": False}
    raw["optimizers"] = raw["optimizers"][:2]
    return StudyConfig.from_dict(raw, source="tiny quick")


def test_quick_preset_cli_end_to_end(tmp_path):
    out = tmp_path / "quick"
    args = [
        "study",
        "--preset",
        "quick",
        "--output",
        str(out),
        "--no-progress",
        *TINY,
        "--networks",
        "vit_small",
    ]
    assert main(args) == 0
    records = load_runs(out)
    assert len(records) == 4
    sam = next(r for r in records if r["optimizer"] == "sam")
    adam = next(r for r in records if r["optimizer"] == "adam")
    assert sam["passes"] == 2 * sam["iterations"] and adam["passes"] == adam["iterations"] > 0
    for rec in records:
        test = rec["test"]
        assert 0 <= test["accuracy"] <= 1 and 0 <= test["macro_auc"] <= 1
        assert 0 <= test["malignant_sensitivity"] <= 1 and 0 <= test["malignant_specificity"] <= 1
        assert rec["gap"]["loss"] == pytest.approx(test["cross_entropy"] - rec["train"]["cross_entropy"])
        assert set(rec["sharpness"]) == {"hessian_top_eigenvalue", "sam_sharpness"}
        assert len(rec["curves"]["train_loss"]) == 1 and len(rec["curves"]["val_key_metric"]) == 1
        assert rec["checkpoint"].startswith("best") and rec["bundle"] == "breast_us_vit"
        assert rec["train_wall_s"] > 0
    assert not list((out / "work").iterdir())  # per-run bundle outputs cleaned up
    loggers = [logging.getLogger(), *logging.root.manager.loggerDict.values()]
    open_logs = [
        h
        for lg in loggers
        if isinstance(lg, logging.Logger)
        for h in lg.handlers
        if isinstance(h, logging.FileHandler) and str(out) in h.baseFilename
    ]
    assert not open_logs  # the bundles' per-run log files are closed
    report = (out / "report.md").read_text()
    assert "vit_small" in report and "Paired comparison with adam" in report
    assert (out / "study_curves.png").stat().st_size > 0


def test_real_run_resumes_after_crash(tmp_path):
    config = _tiny_quick()
    real = BundleRunFunction(config, tmp_path)
    calls = []

    def crash_on_second(spec):
        calls.append(spec.run_id)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated kill")  # not an Exception: nothing is recorded
        return real(spec)

    with pytest.raises(KeyboardInterrupt):
        run_study(config, tmp_path, run_fn=crash_on_second, progress=False)
    first = tmp_path / "runs" / f"{calls[0]}.json"
    saved = first.read_text()
    assert [r["run_id"] for r in load_runs(tmp_path)] == [calls[0]]
    resumed = []

    def counting(spec):
        resumed.append(spec.run_id)
        return real(spec)

    run_study(config, tmp_path, run_fn=counting, progress=False)
    assert resumed == [s.run_id for s in expand_grid(config)][1:]
    assert first.read_text() == saved
    assert json.loads(first.read_text())["status"] == "ok"
