"""The end-to-end benchmark scripts run, and the pass-skipping modes really skip forward passes.

Both scripts run as subprocesses with tiny sizes (one intra-op thread, inherited from tests/conftest.py).
The forward passes are counted by a hook on the network inside the scripts, so a mode that silently ran
every pass (``interval`` or ``start_fraction`` ignored, LookSAM always taking the SAM step) fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# 10 steps: interval 5 -> full steps 0 and 5 -> 12 passes; late phase 0.5 -> steps 5..9 full -> 15 passes.
STEPS = 10
EXPECTED_PASSES = {"adam": 1.0, "sam": 2.0, "sam-interval5": 1.2, "looksam-k5": 1.2, "sam-late50": 1.5}


def run_script(*args: str) -> str:
    """Run a script of benchmarks/ from the repository root; return its stdout (fails on a non-zero exit)."""
    proc = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, f"{args[0]} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc.stdout


def parse_markdown_table(text: str) -> dict[str, dict[str, str]]:
    """Rows of the first Markdown table in ``text``, keyed by their first cell, as {column: cell}."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


@pytest.mark.slow
def test_bench_epoch_counts_skipped_passes(tmp_path):
    output = tmp_path / "epoch.json"
    stdout = run_script(
        "benchmarks/bench_epoch.py",
        *("--images", str(2 * STEPS), "--size", "32", "--batch", "2", "--repeats", "1"),
        *("--warmup-steps", "1", "--threads", "1", "--modes", ",".join(EXPECTED_PASSES)),
        *("--output", str(output)),
    )
    assert "torch " in stdout and "1 threads" in stdout
    assert "load average before" in stdout and "load average after" in stdout
    rows = parse_markdown_table(stdout)
    assert list(rows) == list(EXPECTED_PASSES)
    for mode, expected in EXPECTED_PASSES.items():
        row = rows[mode]
        assert int(row["steps"]) == STEPS
        counted = float(row["passes/step (counted)"])
        assert counted == pytest.approx(expected), mode
        assert float(row["passes/step (theory)"]) == pytest.approx(expected), mode
        assert float(row["epoch s"]) > 0 and float(row["x adam"]) > 0
    assert float(rows["adam"]["x adam"]) == pytest.approx(1.0)
    assert float(rows["sam-interval5"]["passes/step (counted)"]) < 2.0
    assert 1.0 < float(rows["sam-late50"]["passes/step (counted)"]) < 2.0
    saved = json.loads(output.read_text())
    assert [r["mode"] for r in saved["rows"]] == list(EXPECTED_PASSES)
    assert saved["settings"]["threads"] == 1


@pytest.mark.slow
def test_gpu_throughput_smoke_on_cpu(tmp_path):
    output = tmp_path / "gpu.json"
    stdout = run_script(
        "benchmarks/gpu_throughput.py", "--device", "cpu", "--smoke", "--no-compile", "--output", str(output)
    )
    assert f"wrote {output}" in stdout
    report = json.loads(output.read_text())
    assert report["environment"]["torch"] and report["environment"]["device"] == "cpu"
    assert report["settings"]["amp"] and report["settings"]["channels_last"]
    results = report["results"]
    methods = ["adam", "sam", "asam", "gsam", "sam-interval5", "looksam-k5"]
    expected = [(model, method) for model in ("resnet50", "vit") for method in methods]
    assert [(r["model"], r["method"]) for r in results] == expected
    for row in results:
        assert "error" not in row and "skipped" not in row, row
        assert row["images_per_s"] > 0 and row["timed_steps"] == 2
        # 3 steps (1 warm-up + 2 timed): a pass-skipping mode runs its full step at step 0 only.
        full = {"adam": 1.0, "sam-interval5": 4 / 3, "looksam-k5": 4 / 3}.get(row["method"], 2.0)
        assert row["passes_per_step"] == pytest.approx(full), row
        assert row["expected_passes_per_step"] == pytest.approx(full), row
        assert row["ratio_to_adam"] > 0
    assert all(r["ratio_to_adam"] == 1.0 for r in results if r["method"] == "adam")
    assert "images/s" in stdout and "looksam-k5" in stdout


@pytest.mark.slow
def test_bench_optimizer_step_runs_every_column():
    stdout = run_script(
        "benchmarks/bench_optimizer_step.py",
        *("--methods", "sam,asam,gsam,msam", "--models", "vit_small", "--size", "32", "--batch", "2"),
        *("--reps", "1", "--threads", "1"),
    )
    rows = [line.split() for line in stdout.splitlines() if line.startswith("vit_small")]
    assert [row[1] for row in rows] == ["sam", "asam", "gsam", "msam"]
    sam, asam, gsam, msam = rows
    assert msam[2] == "1"  # one pass per step
    assert sam[2] == "2" and sam[-1].endswith("x") and sam[-3].endswith("x")  # naive and exact loop timed
    assert asam[-3].endswith("x") and asam[-1] == "-"  # naive ASAM, no exact loop
    assert gsam[-1] == "-" and gsam[-3] == "-"
    assert all(float(row[5]) > 0 for row in rows)  # full-step ratio


@pytest.mark.slow
def test_bench_memory_calibrates_and_reports_one_buffer_for_sam():
    stdout = run_script("benchmarks/bench_memory.py", "--model", "vit_small", "--size", "32", "--base", "sgd")
    rows = {}
    for line in stdout.splitlines():
        cells = line.split()
        if len(cells) >= 6 and cells[-5] in ("full", "off-step"):
            rows[" ".join(cells[:-5])] = [float(c) for c in cells[-3:]]
    assert rows["calibration: SGD + 1 clone"] == pytest.approx([1.0, 0.0, 1.0], abs=0.05)
    for method in ("sam", "asam", "ssam", "msam"):
        assert rows[method][0] == pytest.approx(1.0, abs=0.05), method
    assert rows["sam (interval=5)"][2] == pytest.approx(0.0, abs=0.05)


def test_site_preprocessing_benchmark_runs_on_a_synthetic_second_site(tmp_path):
    """One variant, one fold, one epoch on the phantom, scored on the phantom redisplayed as another site."""
    from monai_sam.data import make_phantom_dataset, make_site_phantom

    busi = tmp_path / "busi"
    make_phantom_dataset(busi, num_per_class=15, image_size=48, seed=0)
    site = make_site_phantom(tmp_path / "site", num_per_class=6, image_size=48)
    out = tmp_path / "rows.json"
    args = ["--busi", str(busi), "--busbra", str(site), "--busbra-csv", "site.csv", "--folds", "0"]
    args += ["--variants", "standard", "flip", "--epochs", "1", "--image-size", "32", "--json", str(out)]
    stdout = run_script("benchmarks/bench_site_preprocessing.py", *args)
    rows = json.loads(out.read_text())
    assert [r["variant"] for r in rows] == ["standard", "flip"]
    for row in rows:
        for key in ("internal_macro_auc", "external_auc_pad", "external_auc_squash"):
            assert 0.0 <= row[key] <= 1.0
    assert "BUS-BRA AUC (squash)" in stdout and stdout.count("\nflip ") == 1
