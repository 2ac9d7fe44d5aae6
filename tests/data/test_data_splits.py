"""Leakage-free splits: stratified, groups never split, deterministic per seed, conflicts excluded."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_sam.data import allocate_groups, audit_dataset, load_split, make_phantom_dataset, make_splits

SPLIT_KEYS = ("training", "validation", "test")


@pytest.fixture(scope="module")
def dup_tree(tmp_path_factory) -> Path:
    """A phantom (30/20/10 per class) plus planted duplicate groups and one benign/malignant conflict."""
    root = tmp_path_factory.mktemp("splits") / "data"
    make_phantom_dataset(root, num_per_class=30, image_size=64, seed=4, difficulty=0.2)
    for f in sorted((root / "malignant").glob("*.png"))[20:]:
        f.unlink()
    for f in sorted((root / "normal").glob("*.png"))[10:]:
        f.unlink()
    for i in range(1, 5):  # each benign (i) gets i extra copies: groups of 2..5 images
        source = Image.open(root / "benign" / f"benign ({i}).png")
        for k in range(i):
            source.save(root / "benign" / f"copy{i}_{k}.png")
    Image.open(root / "benign" / "benign (9).png").save(root / "malignant" / "conflict.png")
    return root


@pytest.fixture(scope="module")
def dup_audit(dup_tree):
    return audit_dataset(dup_tree)


def _groups(audit):
    return {item["image"]: item["group"] for item in audit.items}


def test_kfold_partitions_items_and_keeps_groups_together(dup_tree, dup_audit):
    splits = make_splits(dup_tree, num_folds=5, seed=0, audit=dup_audit)
    group_of = _groups(dup_audit)
    excluded = {e["image"] for e in splits[0]["metadata"]["excluded"]}
    usable = set(group_of) - excluded
    tests = [item["image"] for split in splits for item in split["test"]]
    assert sorted(tests) == sorted(usable)  # every usable image is tested exactly once
    for split in splits:
        seen = {key: {group_of[i["image"]] for i in split[key]} for key in SPLIT_KEYS}
        assert not seen["training"] & seen["test"]
        assert not seen["training"] & seen["validation"]
        assert not seen["validation"] & seen["test"]
        images = [i["image"] for key in SPLIT_KEYS for i in split[key]]
        assert sorted(images) == sorted(usable)
        assert set(split) == {"classes", *SPLIT_KEYS, "metadata"}


def test_kfold_is_stratified(dup_tree, dup_audit):
    splits = make_splits(dup_tree, num_folds=5, seed=0, audit=dup_audit)
    per_fold = [Counter(i["label"] for i in s["test"]) for s in splits]
    for label in range(3):
        counts = [c[label] for c in per_fold]
        assert max(counts) - min(counts) <= 5 if label == 0 else max(counts) - min(counts) <= 1, counts
    for split in splits:
        val = Counter(i["label"] for i in split["validation"])
        assert all(val[label] >= 1 for label in range(3))
        n_all = sum(len(split[k]) for k in SPLIT_KEYS)
        assert 0.05 < len(split["validation"]) / n_all < 0.16


def test_same_seed_same_splits_other_seed_differs(dup_tree, dup_audit):
    a = make_splits(dup_tree, num_folds=5, seed=7, audit=dup_audit)
    b = make_splits(dup_tree, num_folds=5, seed=7, audit=dup_audit)
    c = make_splits(dup_tree, num_folds=5, seed=8, audit=dup_audit)
    assert a == b
    assert [s["test"] for s in a] != [s["test"] for s in c]


def test_conflicts_excluded_by_default_and_kept_on_request(dup_tree, dup_audit):
    split = make_splits(dup_tree, num_folds=0, seed=0, audit=dup_audit)[0]
    excluded = {Path(e["image"]).name: e["reason"] for e in split["metadata"]["excluded"]}
    assert set(excluded) == {"conflict.png", "benign (9).png"}
    assert all("label conflict" in reason for reason in excluded.values())
    listed = {Path(i["image"]).name for key in SPLIT_KEYS for i in split[key]}
    assert not listed & set(excluded)
    kept = make_splits(dup_tree, num_folds=0, seed=0, audit=dup_audit, exclude_conflicts=False)[0]
    assert kept["metadata"]["excluded"] == []
    where = {Path(i["image"]).name: key for key in SPLIT_KEYS for i in kept[key]}
    assert where["conflict.png"] == where["benign (9).png"]  # kept, but never across splits


def test_single_split_fractions(dup_tree, dup_audit):
    split = make_splits(dup_tree, num_folds=0, seed=1, val_fraction=0.1, test_fraction=0.3, audit=dup_audit)[
        0
    ]
    n = {key: len(split[key]) for key in SPLIT_KEYS}
    total = sum(n.values())
    assert abs(n["test"] / total - 0.3) < 0.06
    assert abs(n["validation"] / total - 0.1) < 0.06
    assert split["metadata"]["fold"] is None and split["metadata"]["num_folds"] == 0


def test_written_files_and_summary(dup_tree, dup_audit, tmp_path):
    make_splits(dup_tree, num_folds=3, seed=0, audit=dup_audit, out_dir=tmp_path / "folds")
    files = sorted(p.name for p in (tmp_path / "folds").iterdir())
    assert files == ["fold_0.json", "fold_1.json", "fold_2.json", "split_summary.json"]
    fold = load_split(tmp_path / "folds" / "fold_1.json", num_classes=3)
    assert fold["classes"] == ["benign", "malignant", "normal"]
    assert fold["metadata"]["fold"] == 1 and fold["metadata"]["seed"] == 0
    assert all(Path(i["image"]).is_absolute() and isinstance(i["label"], int) for i in fold["training"])
    summary = json.loads((tmp_path / "folds" / "split_summary.json").read_text())
    assert summary["num_folds"] == 3 and len(summary["counts"]) == 3
    make_splits(dup_tree, num_folds=0, seed=0, audit=dup_audit, out_dir=tmp_path / "single")
    assert (tmp_path / "single" / "split.json").is_file()


def test_allocate_groups_balances_each_class():
    labels = [0] * 40 + [1] * 10
    sizes = [3] * 5 + [1] * 35 + [1] * 10
    bins = allocate_groups(labels, sizes, [0.5, 0.25, 0.25], seed=0)
    per_bin = np.zeros((3, 2))
    for b, label, size in zip(bins, labels, sizes):
        per_bin[b, label] += size
    np.testing.assert_allclose(per_bin[:, 0], [25, 12.5, 12.5], atol=2)
    np.testing.assert_allclose(per_bin[:, 1], [5, 2.5, 2.5], atol=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_folds": -1}, "folds"),
        ({"num_folds": 0, "val_fraction": 0.5, "test_fraction": 0.5}, "no training data"),
        ({"val_fraction": 1.5}, "val_fraction"),
    ],
)
def test_bad_split_arguments(dup_tree, dup_audit, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_splits(dup_tree, audit=dup_audit, **kwargs)


def test_load_split_validation(tmp_path, dup_tree):
    image = str(next((dup_tree / "benign").glob("*.png")))
    good = {"classes": ["a", "b"], "training": [{"image": image, "label": 1}], "validation": [], "test": []}
    cases = [
        ({**good, "test": [{"image": str(tmp_path / "gone.png"), "label": 0}]}, FileNotFoundError, "gone"),
        ({**good, "training": [{"image": image, "label": 2}]}, ValueError, "not in 0..1"),
        ({k: v for k, v in good.items() if k != "test"}, ValueError, "lacks key"),
        ({**good, "training": []}, ValueError, "empty training"),
    ]
    for i, (content, error, match) in enumerate(cases):
        path = tmp_path / f"s{i}.json"
        path.write_text(json.dumps(content))
        with pytest.raises(error, match=match):
            load_split(path)
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(good))
    with pytest.raises(ValueError, match="num_classes=3"):
        load_split(path, num_classes=3)
    assert load_split(path, num_classes=2)["training"][0]["label"] == 1
    with pytest.raises(FileNotFoundError):
        load_split(tmp_path / "none.json")
