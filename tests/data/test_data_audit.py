"""The audit on planted duplicates, conflicts, colour overlays and broken files, and on real BUSI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_sam.data import audit_dataset, hash_groups, perceptual_hash, simulate_bmode


@pytest.fixture
def audited_tree(tmp_path: Path) -> Path:
    """Class folders with planted exact/near duplicates, a conflict, a colour overlay, a truncated file."""
    rng = np.random.default_rng(0)
    images = simulate_bmode(["benign"] * 4 + ["malignant"] * 4 + ["normal"] * 3, 96, 0.3, rng)
    root = tmp_path / "tree"
    for name in ("benign", "malignant", "normal"):
        (root / name).mkdir(parents=True)
    for i in range(4):
        Image.fromarray(images[i]).save(root / "benign" / f"b{i}.png")
        Image.fromarray(images[4 + i]).convert("RGB").save(root / "malignant" / f"m{i}.png")
    for i in range(3):
        Image.fromarray(images[8 + i]).save(root / "normal" / f"n{i}.png")
    # exact duplicate in another encoding (BMP, RGB) in the same class
    Image.fromarray(images[0]).convert("RGB").save(root / "benign" / "b0_copy.bmp")
    # near-duplicate: same scan with a caliper cross and slight noise
    near = images[1].astype(np.int16) + rng.integers(-6, 7, images[1].shape)
    near[40:43, 30:60] = 255
    Image.fromarray(np.clip(near, 0, 255).astype(np.uint8)).save(root / "benign" / "b1_calipers.png")
    # label conflict: benign image b2 also filed as malignant
    Image.fromarray(images[2]).save(root / "malignant" / "m_from_b2.png")
    # colour annotation (a yellow text box) on a copy-free image
    coloured = np.stack([images[9]] * 3, axis=-1)
    coloured[5:15, 5:40] = (255, 220, 0)
    Image.fromarray(coloured).save(root / "normal" / "n1.png")
    # truncated PNG: the header reads, the pixels do not
    data = (root / "normal" / "n2.png").read_bytes()
    (root / "normal" / "n2_truncated.png").write_bytes(data[: len(data) // 2])
    return root


def test_audit_finds_every_planted_problem(audited_tree):
    report = audit_dataset(audited_tree)
    assert report.counts == {"benign": 6, "malignant": 5, "normal": 3}
    assert report.modes == {"L": 8, "RGB": 6}
    assert report.sizes == {"96x96": 14}
    assert [Path(u["image"]).name for u in report.unreadable] == ["n2_truncated.png"]
    assert "truncated" in report.unreadable[0]["reason"]
    exact = sorted(sorted(Path(p).name for p in g) for g in report.exact_duplicates)
    assert exact == [["b0.png", "b0_copy.bmp"], ["b2.png", "m_from_b2.png"]]
    near = [sorted(Path(p).name for p in g) for g in report.near_duplicates]
    assert near == [["b1.png", "b1_calipers.png"]]
    assert len(report.label_conflicts) == 1
    conflict = report.label_conflicts[0]
    assert sorted(Path(p).name for p in conflict["images"]) == ["b2.png", "m_from_b2.png"]
    assert sorted(conflict["classes"]) == ["benign", "malignant"]
    assert [Path(c["image"]).name for c in report.colour_annotated] == ["n1.png"]
    text = report.format_text()
    for needle in ("n2_truncated.png", "LABEL CONFLICTS", "m_from_b2.png", "b1_calipers.png", "n1.png"):
        assert needle in text


def test_audit_json_roundtrip(audited_tree, tmp_path):
    report = audit_dataset(audited_tree)
    saved = json.loads(report.save(tmp_path / "a.json").read_text())
    assert saved["summary"]["label_conflicts"] == 1
    assert saved["summary"]["unreadable"] == 1
    assert saved["hash"]["threshold_bits"] == report.hash_threshold
    groups = {Path(i["image"]).name: i["group"] for i in saved["items"]}
    assert groups["b1.png"] == groups["b1_calipers.png"] != groups["b3.png"]


def test_exact_duplicates_do_not_depend_on_the_perceptual_threshold(audited_tree):
    report = audit_dataset(audited_tree, hash_threshold=-1)  # no perceptual links at all
    assert report.near_duplicates == []
    assert len(report.exact_duplicates) == 2  # found by the pixel hash
    assert len(report.label_conflicts) == 1
    groups = {Path(i["image"]).name: i["group"] for i in report.items}
    assert groups["b0.png"] == groups["b0_copy.bmp"]  # identical images still share a split group
    assert groups["b1.png"] != groups["b1_calipers.png"]


def test_perceptual_hash_separates_different_scans_and_groups_transitively():
    images = simulate_bmode(["benign", "malignant", "normal"], 128, 0.5, np.random.default_rng(1))
    hashes = [perceptual_hash(Image.fromarray(im)) for im in images]
    assert len(set(hashes)) == 3
    assert hash_groups(hashes, threshold=10).tolist() == [0, 1, 2]
    a, b, c = 0b0, 0b111, 0b111111  # a~b (3 bits), b~c (3 bits), a!~c (6 bits): single linkage joins all
    assert len(set(hash_groups([a, b, c], threshold=3).tolist())) == 1
    assert len(set(hash_groups([a, c], threshold=3).tolist())) == 2


@pytest.mark.busi
def test_real_busi_duplicates_and_conflicts(busi_dir):
    report = audit_dataset(busi_dir)
    assert report.counts == {"benign": 269, "malignant": 136, "normal": 84}
    assert not report.unreadable

    def rel(paths):
        return sorted(str(Path(p).relative_to(Path(busi_dir).resolve())) for p in paths)

    # The identical image filed as benign and as malignant.
    assert [rel(g) for g in report.exact_duplicates] == [
        ["benign/benign (433).png", "malignant/malignant (145).png"]
    ]
    conflicts = sorted(rel(c["images"]) for c in report.label_conflicts)
    assert conflicts == [
        ["benign/benign (164).png", "benign/benign (85).png", "malignant/malignant (52).png"],
        ["benign/benign (333).png", "malignant/malignant (77).png"],
        ["benign/benign (406).png", "malignant/malignant (94).png"],
        ["benign/benign (433).png", "malignant/malignant (145).png"],
    ]
    near = [rel(g) for g in report.near_duplicates]
    assert len(near) == 65
    assert sum(len(g) for g in near) == 140
    for group in (
        [
            "normal/normal (41).png",
            "normal/normal (44).png",
            "normal/normal (47).png",
            "normal/normal (61).png",
        ],
        ["malignant/malignant (6).png", "malignant/malignant (8).png", "malignant/malignant (9).png"],
        ["benign/benign (105).png", "benign/benign (156).png"],
    ):
        assert group in near
    assert rel(c["image"] for c in report.colour_annotated) == [
        "benign/benign (240).png",
        "malignant/malignant (196).png",
    ]
