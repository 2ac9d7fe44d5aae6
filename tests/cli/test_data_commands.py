"""The ``audit``, ``split`` and ``phantom`` commands through ``monai_sam.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from monai_sam.cli import main


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "phantom"
    assert (
        main(["phantom", "--out", str(out), "--num-per-class", "10", "--image-size", "48", "--seed", "2"])
        == 0
    )
    return out


def test_phantom_command(phantom_dir, tmp_path, capsys):
    assert sorted(p.name for p in phantom_dir.iterdir()) == ["benign", "datalist.json", "malignant", "normal"]
    args = ["phantom", "--out", str(tmp_path / "p"), "--num-per-class", "2", "--image-size", "32"]
    assert main([*args, "--classes", "benign", "malignant", "--json", str(tmp_path / "p.json")]) == 0
    assert "phantom: 4 images" in capsys.readouterr().out
    assert json.loads((tmp_path / "p.json").read_text())["counts"] == {"benign": 2, "malignant": 2}


def test_audit_command_reports_conflict(phantom_dir, tmp_path, capsys):
    conflict = tmp_path / "data"
    for name in ("benign", "malignant"):
        (conflict / name).mkdir(parents=True)
        for f in sorted((phantom_dir / name).glob("*.png"))[:3]:
            Image.open(f).save(conflict / name / f.name)
    Image.open(phantom_dir / "benign" / "benign (1).png").save(conflict / "malignant" / "dup.png")
    report = tmp_path / "audit.json"
    assert main(["audit", str(conflict), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "LABEL CONFLICTS (duplicates filed under different classes): 1" in out
    assert "benign/benign (1).png <-> malignant/dup.png" in out
    assert json.loads(report.read_text())["summary"]["label_conflicts"] == 1
    assert main(["audit", str(conflict), "--strict"]) == 1


def test_split_command_kfold_and_single(phantom_dir, tmp_path, capsys):
    out = tmp_path / "folds"
    assert main(["split", str(phantom_dir), "--folds", "3", "--seed", "4", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "fold_0.json",
        "fold_1.json",
        "fold_2.json",
        "split_summary.json",
    ]
    fold = json.loads((out / "fold_2.json").read_text())
    assert set(fold) == {"classes", "training", "validation", "test", "metadata"}
    assert fold["metadata"]["fold"] == 2 and fold["metadata"]["num_folds"] == 3
    assert "fold 2:" in capsys.readouterr().out
    single = tmp_path / "single"
    args = ["split", str(phantom_dir), "--folds", "0", "--test-fraction", "0.3", "--num-classes", "2"]
    assert main([*args, "--out", str(single), "--json", str(tmp_path / "s.json")]) == 0
    split = json.loads((single / "split.json").read_text())
    assert split["classes"] == ["benign", "malignant"]
    assert json.loads((tmp_path / "s.json").read_text())["num_folds"] == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["audit", "/no/such/dir"],
        ["split", "/no/such/dir", "--out", "x"],
        ["phantom", "--out", "PLACEHOLDER", "--difficulty", "2"],
    ],
)
def test_errors_exit_2_with_a_message(argv, tmp_path, capsys):
    argv = [str(tmp_path / "o") if a == "PLACEHOLDER" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"monai-sam {argv[0]}: error:")
    assert "/no/such/dir" in err or "difficulty" in err
