"""End to end on a mixed PNG/DICOM/NIfTI folder: audit, split, CNN-bundle train/evaluate/inference and a tiny
study run, and no planted patient value anywhere in what they write (files, TensorBoard events, console).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from clinical_files import (
    PHI_NEEDLES,
    PLANTED_PHI,
    smooth_image,
    write_dicom,
    write_junk_jpeg_dicom,
    write_nifti,
    write_sr_dicom,
)
from PIL import Image

from monai_sam.cli import main

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CNN = REPO / "bundles" / "breast_us_cnn" / "configs"
TINY = ["--image_size", "32", "--batch_size", "8", "--max_epochs", "1", "--progress", "False"]
TINY += ["--network_name", "resnet18", "--reader_options#nifti_slice", "middle"]


def _mixed_folder(root: Path) -> dict[str, Path]:
    """8 usable images per class (PNG, JPEG, five kinds of DICOM, NIfTI 2-D and 3-D) plus bad files."""
    for c, name in enumerate(("benign", "malignant", "normal")):
        folder = root / name
        folder.mkdir(parents=True)
        pics = [smooth_image(48, 64, seed=100 * c + i) for i in range(8)]
        Image.fromarray(pics[0]).save(folder / f"{name}_0.png")
        Image.fromarray(np.stack([pics[1]] * 3, -1)).save(folder / f"{name}_1.jpg", quality=95)
        write_dicom(folder / f"{name}_2.dcm", pics[2], phi=PLANTED_PHI, burned_in="YES")
        write_dicom(folder / f"IM{c}0003", 255 - pics[3], "MONOCHROME1", phi=PLANTED_PHI)  # extension-less
        write_dicom(folder / f"{name}_4.dcm", np.stack([pics[4], pics[4][::-1]]), phi=PLANTED_PHI)  # cine
        rgb = np.stack([pics[5], pics[5], np.clip(pics[5].astype(int) + 20, 0, 255).astype(np.uint8)], -1)
        write_dicom(
            folder / f"{name}_5.dcm",
            rgb,
            "YBR_FULL_422",
            phi=PLANTED_PHI,
            region=(4, 2, 59, 45),
            region_delta_cm=(0.01, 0.01),
            pixel_spacing_mm=(0.1, 0.1),
        )
        write_nifti(folder / f"{name}_6.nii.gz", pics[6])
        write_nifti(folder / f"{name}_7.nii", np.stack([pics[7] // 2, pics[7], pics[7] // 3], -1))  # a volume
    normal = root / "normal"
    write_dicom(
        normal / "dup_of_normal_0.dcm", np.asarray(Image.open(normal / "normal_0.png")), phi=PLANTED_PHI
    )
    good = normal / "normal_2.dcm"
    bad = {
        "truncated": normal / "truncated.dcm",
        "report": write_sr_dicom(normal / "report.dcm", phi=PLANTED_PHI),
        "four_d": write_nifti(normal / "series.nii.gz", np.zeros((48, 64, 3, 2), np.uint8)),
        "compressed": write_junk_jpeg_dicom(normal / "compressed.dcm", phi=PLANTED_PHI),
        "spacing": write_dicom(
            normal / "spacing.dcm",
            smooth_image(seed=7),
            phi=PLANTED_PHI,
            region=(0, 0, 40, 40),
            region_delta_cm=(0.02, 0.02),
            pixel_spacing_mm=(0.1, 0.1),
        ),
    }
    bad["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size - 1500])
    return bad


def _bundle(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    return output


def _contains(blob: bytes, needle: str) -> bool:
    """``needle`` occurs in ``blob``; an all-digit needle (a date) only when not inside a longer number."""
    token, start = needle.encode(), blob.find(needle.encode())
    while start != -1:
        end = start + len(token)
        if not needle.isdigit() or not (blob[start - 1 : start].isdigit() or blob[end : end + 1].isdigit()):
            return True
        start = blob.find(token, start + 1)
    return False


def _leaks(root: Path, texts: dict[str, str]) -> list[str]:
    """Every place and planted value found: all files under ``root`` (as bytes) and ``texts``."""
    blobs = {str(p): p.read_bytes for p in root.rglob("*") if p.is_file()}
    blobs.update({name: text.encode for name, text in texts.items()})
    found = []
    for where, read in blobs.items():
        blob = read()
        found += [f"{where}: {needle}" for needle in PHI_NEEDLES if _contains(blob, needle)]
    return found


@pytest.mark.filterwarnings("ignore::monai_sam.data.DataWarning")  # the logged skips of the bad files
def test_mixed_clinical_folder_end_to_end_without_patient_data(tmp_path, capsys, caplog):
    data, out = tmp_path / "data", tmp_path / "out"
    bad = _mixed_folder(data)
    assert _leaks(data, {}), "the planted values must be findable in the inputs"
    console: dict[str, str] = {}

    # audit: every format read, bad files named with their reason, identifying attributes by name
    assert main(["audit", str(data), "--json", str(out / "audit.json"), "--nifti-slice", "middle"]) == 0
    console["audit"] = "".join(capsys.readouterr())
    audit = json.loads((out / "audit.json").read_text())
    assert audit["formats"] == {"PNG": 3, "JPEG": 3, "DICOM": 13, "NIfTI": 6}
    assert audit["frames"] == {"2": 3, "3": 3}
    unreadable = {Path(u["image"]).name: u["reason"] for u in audit["unreadable"]}
    assert set(unreadable) == {p.name for p in bad.values()}
    assert "no pixel data" in unreadable["report.dcm"] and "pip install" in unreadable["compressed.dcm"]
    assert "disagrees" in unreadable["spacing.dcm"] and "4-D" in unreadable["series.nii.gz"]
    assert any(
        {"dup_of_normal_0.dcm", "normal_0.png"} <= {Path(p).name for p in g}
        for g in audit["exact_duplicates"]
    )
    assert len(audit["identifying"]) == 13 and len(audit["burned_in_annotation"]) == 3
    assert all({"PatientName", "PatientBirthDate"} <= set(i["attributes"]) for i in audit["identifying"])
    assert "patient-identifying attributes" in console["audit"] and "truncated.dcm" in console["audit"]

    # split, then the CNN bundle on the split: train, evaluate, inference
    split_dir = out / "split"
    assert main(["split", str(data), "--out", str(split_dir), "--folds", "0", "--nifti-slice", "middle"]) == 0
    console["split"] = "".join(capsys.readouterr())
    split = split_dir / "split.json"
    train_dir = out / "train"
    config = ["--config_file", str(CNN / "train.json")]
    console["train"] = _bundle(
        [*config, "--output_dir", str(train_dir), "--datalist", str(split), *TINY], tmp_path
    )
    assert (train_dir / "model.pt").is_file() and list((train_dir / "tensorboard").iterdir())
    evaluate = ["--config_file", repr([str(CNN / "train.json"), str(CNN / "evaluate.json")])]
    console["evaluate"] = _bundle(
        [*evaluate, "--output_dir", str(train_dir), "--datalist", str(split), *TINY], tmp_path
    )
    assert (train_dir / "eval_test_metrics.json").is_file()
    infer = [
        "--config_file",
        str(CNN / "inference.json"),
        "--input_dir",
        str(data),
        "--output_dir",
        str(out / "inf"),
    ]
    infer += ["--ckpt_path", str(train_dir / "model.pt"), "--network_name", "resnet18", "--image_size", "32"]
    console["inference"] = _bundle([*infer, "--reader_options#nifti_slice", "middle"], tmp_path)
    with open(out / "inf" / "predictions.csv", newline="") as handle:
        predicted = {Path(row["image"]).name for row in csv.DictReader(handle)}
    assert len(predicted) == 3 * 8 + 1 and not predicted & {p.name for p in bad.values()}
    assert "report.dcm" in console["inference"]  # the skip is logged, naming the file

    # a tiny study over the same folder (one run, its work folder kept)
    study_cfg = {
        "name": "phi",
        "data": {
            "source": "folder",
            "dataset_dir": str(data),
            "folds": 2,
            "reader_options": {"nifti_slice": 1},
        },
        "networks": ["resnet18"],
        "optimizers": ["adam", {"name": "sam", "rho": 0.05}],
        "folds": [0],
        "train": {"max_epochs": 1, "batch_size": 8, "image_size": 32},
        "sharpness": {"enabled": False},
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study_cfg))
    args = [
        "study",
        "--config",
        str(tmp_path / "study.yaml"),
        "--output",
        str(out / "study"),
        "--no-progress",
    ]
    assert main([*args, "--optimizers", "adam", "--keep-work"]) == 0
    console["study"] = "".join(capsys.readouterr())
    assert list((out / "study" / "runs").glob("*.json"))

    console["in-process logs"] = caplog.text
    assert "compressed.dcm" in caplog.text  # the skips were logged
    assert _leaks(out, console) == []
