"""resolve_datalist, the one call of the bundles, and find_busi_dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monai_sam.data import find_busi_dir, resolve_datalist

SMALL = {"num_per_class": 8, "image_size": 48}


def _all_images(split):
    return [item["image"] for key in ("training", "validation", "test") for item in split[key]]


def test_phantom_by_default_then_reused(tmp_path):
    split = resolve_datalist(None, None, str(tmp_path), phantom_kwargs=SMALL)
    assert split["classes"] == ["benign", "malignant", "normal"]
    assert set(split) == {"classes", "training", "validation", "test", "metadata"}
    images = _all_images(split)
    assert len(images) == 24 and len(set(images)) == 24
    assert all(Path(p).is_file() and str(tmp_path / "phantom") in p for p in images)
    assert (tmp_path / "data_split" / "split.json").is_file()
    assert (tmp_path / "data_split" / "audit.json").is_file()
    marker = tmp_path / "phantom" / "benign" / "benign (1).png"
    stamp = marker.stat().st_mtime_ns
    again = resolve_datalist("", "", str(tmp_path), phantom_kwargs=SMALL)
    assert marker.stat().st_mtime_ns == stamp  # same parameters: reused, not regenerated
    assert again["training"] == split["training"]
    resolve_datalist(None, None, str(tmp_path), phantom_kwargs={**SMALL, "num_per_class": 5})
    assert len(list((tmp_path / "phantom" / "benign").iterdir())) == 5  # new parameters: regenerated


def test_two_classes_and_seeded_split(tmp_path):
    a = resolve_datalist(None, None, str(tmp_path / "a"), num_classes=2, seed=1, phantom_kwargs=SMALL)
    b = resolve_datalist(None, None, str(tmp_path / "b"), num_classes=2, seed=2, phantom_kwargs=SMALL)
    assert a["classes"] == ["benign", "malignant"]
    assert {i["label"] for i in a["training"]} == {0, 1}
    names = [[Path(i["image"]).name for i in s["test"]] for s in (a, b)]
    assert names[0] != names[1]


def test_split_file_is_loaded_and_validated(tmp_path):
    split = resolve_datalist(None, None, str(tmp_path), phantom_kwargs=SMALL)
    path = tmp_path / "data_split" / "split.json"
    loaded = resolve_datalist(None, str(path), str(tmp_path / "other"))
    assert loaded["training"] == split["training"]
    with pytest.raises(ValueError, match="num_classes=2"):
        resolve_datalist(None, str(path), str(tmp_path), num_classes=2)
    broken = json.loads(path.read_text())
    broken["test"].append({"image": str(tmp_path / "missing.png"), "label": 0})
    path.write_text(json.dumps(broken))
    with pytest.raises(FileNotFoundError, match="missing"):
        resolve_datalist(None, str(path), str(tmp_path))


def test_dataset_dir_and_plain_datalist(tmp_path):
    phantom = tmp_path / "run" / "phantom"
    resolve_datalist(None, None, str(tmp_path / "run"), phantom_kwargs=SMALL)
    split = resolve_datalist(str(phantom), None, str(tmp_path / "dir"), seed=3)
    assert len(_all_images(split)) == 24
    from_json = resolve_datalist(None, str(phantom / "datalist.json"), str(tmp_path / "json"), seed=3)
    assert from_json["test"] == split["test"]


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset_dir does not exist"):
        resolve_datalist(str(tmp_path / "nope"), None, str(tmp_path))
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(NotADirectoryError):
        resolve_datalist(str(tmp_path / "file.txt"), None, str(tmp_path))
    (tmp_path / "empty" / "benign").mkdir(parents=True)
    with pytest.raises(ValueError, match="no usable images"):
        resolve_datalist(str(tmp_path / "empty"), None, str(tmp_path), num_classes=None)
    with pytest.raises(FileNotFoundError, match="datalist file"):
        resolve_datalist(None, str(tmp_path / "none.json"), str(tmp_path))
    with pytest.raises(ValueError, match="unknown phantom_kwargs"):
        resolve_datalist(None, None, str(tmp_path), phantom_kwargs={"size": 3})


def test_find_busi_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MONAI_SAM_BUSI_DIR", str(tmp_path))
    assert find_busi_dir() is None  # no class folders
    (tmp_path / "benign").mkdir()
    (tmp_path / "malignant").mkdir()
    assert find_busi_dir() == tmp_path
