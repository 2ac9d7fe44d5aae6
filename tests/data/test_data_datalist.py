"""Datalists from BUSI/class folders, CSV and JSON; every bad-input case gets a clear error or warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monai_sam.data import BUSI_CLASSES, DataWarning, build_datalist, is_mask_file


def _names(datalist) -> list[str]:
    return [Path(item["image"]).name for item in datalist.items]


def test_busi_layout_ignores_masks_and_keeps_busi_order(busi_like):
    data = build_datalist(busi_like)
    assert data.classes == list(BUSI_CLASSES)
    assert len(data) == 12
    assert not any("_mask" in name for name in _names(data))
    assert data.label_counts() == {"benign": 4, "malignant": 4, "normal": 4}
    for item in data.items:
        assert Path(item["image"]).is_absolute()
        assert Path(item["image"]).parent.name == data.classes[item["label"]]
    assert data["classes"] == data.classes  # dict-style access


def test_masks_on_request(busi_like):
    data = build_datalist(busi_like, with_masks=True)
    masks = {Path(i["image"]).name: [Path(m).name for m in i["masks"]] for i in data.items}
    assert masks["benign (1).png"] == ["benign (1)_mask.png"]
    assert masks["normal (4).jpg"] == ["normal (4)_mask.png"]
    assert "masks" not in build_datalist(busi_like).items[0]


def test_mask_pattern():
    assert is_mask_file("benign (1)_mask.png")
    assert is_mask_file("benign (1)_mask_2.png")
    assert not is_mask_file("benign (1).png")
    assert not is_mask_file("masked_lesion.png")


def test_benign_versus_malignant_drops_normal(busi_like):
    data = build_datalist(busi_like, num_classes=2)
    assert data.classes == ["benign", "malignant"]
    assert data.label_counts() == {"benign": 4, "malignant": 4}
    assert all("normal" not in item["image"] for item in data.items)


def test_generic_class_folders_sorted(tmp_path, image_writer):
    for name in ("zebra", "apple"):
        for i in range(2):
            image_writer(tmp_path / name / f"{i}.bmp", "RGB", seed=i)
    data = build_datalist(tmp_path, num_classes=None)
    assert data.classes == ["apple", "zebra"]
    assert [item["label"] for item in data.items] == [0, 0, 1, 1]
    data = build_datalist(tmp_path, num_classes=None, class_names=["zebra", "apple"])
    assert [Path(i["image"]).parent.name for i in data.items if i["label"] == 0] == ["zebra", "zebra"]


def test_class_count_mismatch_is_an_error(tmp_path, image_writer):
    for name in ("a", "b"):
        image_writer(tmp_path / name / "x.png")
    with pytest.raises(ValueError, match="num_classes=3"):
        build_datalist(tmp_path, num_classes=3)


def test_csv_with_names_relative_paths_and_header(busi_like):
    csv_path = busi_like / "labels.csv"
    csv_path.write_text(
        "filename,diagnosis\nbenign/benign (1).png,benign\nmalignant/malignant (2).png,malignant\n"
        "normal/normal (4).jpg,normal\n"
    )
    data = build_datalist(csv_path)
    assert data.classes == list(BUSI_CLASSES)
    assert [(Path(i["image"]).name, i["label"]) for i in data.items] == [
        ("benign (1).png", 0),
        ("malignant (2).png", 1),
        ("normal (4).jpg", 2),
    ]


def test_csv_headerless_integer_labels(busi_like):
    csv_path = busi_like / "ints.csv"
    csv_path.write_text(f"{busi_like}/benign/benign (1).png,0\n{busi_like}/malignant/malignant (1).png,1\n")
    data = build_datalist(csv_path, num_classes=2, class_names=["benign", "malignant"])
    assert [i["label"] for i in data.items] == [0, 1]


def test_csv_unknown_label_names_the_line(busi_like):
    csv_path = busi_like / "bad.csv"
    csv_path.write_text("image,label\nbenign/benign (1).png,benign\nbenign/benign (2).png,cancer\n")
    with pytest.raises(ValueError, match=r"line 3: 'cancer'"):
        build_datalist(csv_path, class_names=list(BUSI_CLASSES))


def test_csv_integer_label_out_of_range(busi_like):
    csv_path = busi_like / "range.csv"
    csv_path.write_text("image,label\nbenign/benign (1).png,0\nbenign/benign (2).png,7\n")
    with pytest.raises(ValueError, match="unknown label"):
        build_datalist(csv_path, class_names=list(BUSI_CLASSES))


def test_csv_without_usable_columns(busi_like):
    csv_path = busi_like / "cols.csv"
    csv_path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="image column"):
        build_datalist(csv_path)


def test_csv_missing_file_is_an_error(busi_like):
    csv_path = busi_like / "missing.csv"
    csv_path.write_text("image,label\nbenign/nothere.png,benign\n")
    with pytest.raises(FileNotFoundError, match=r"nothere\.png"):
        build_datalist(csv_path, num_classes=None)


def test_json_datalist_with_sections_and_classes(busi_like):
    split = {
        "classes": ["benign", "malignant"],
        "training": [{"image": "benign/benign (1).png", "label": 0}],
        "validation": [{"image": "malignant/malignant (1).png", "label": "malignant"}],
        "test": [{"image": "benign/benign (2).png", "label": 0}],
    }
    path = busi_like / "dl.json"
    path.write_text(json.dumps(split))
    data = build_datalist(path, num_classes=2)
    assert data.classes == ["benign", "malignant"]
    assert sorted(i["label"] for i in data.items) == [0, 0, 1]
    plain = busi_like / "plain.json"
    plain.write_text(json.dumps(split["training"] + split["test"]))
    assert len(build_datalist(plain, num_classes=None)) == 2


def test_invalid_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json"):
        build_datalist(bad)


def test_missing_directory():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_datalist("/no/such/dir")


def test_no_images_at_all(tmp_path):
    (tmp_path / "benign").mkdir()
    (tmp_path / "benign" / "notes.txt").write_text("x")
    with pytest.warns(DataWarning), pytest.raises(ValueError, match="no usable images"):
        build_datalist(tmp_path, num_classes=None)
    with pytest.raises(ValueError, match="no images found"):
        build_datalist(tmp_path / "benign")


def test_loose_images_without_class_folders(tmp_path, image_writer):
    image_writer(tmp_path / "a.png")
    with pytest.raises(ValueError, match="no class folders"):
        build_datalist(tmp_path)


def test_empty_class_is_an_error(busi_like):
    for f in (busi_like / "normal").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=r"\['normal'\] have no usable images"):
        build_datalist(busi_like)
    assert len(build_datalist(busi_like, num_classes=2)) == 8  # fine when normal is dropped


def test_class_emptied_by_a_corrupt_file_names_the_file(busi_like):
    for f in (busi_like / "normal").iterdir():
        f.unlink()
    (busi_like / "normal" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.warns(DataWarning), pytest.raises(ValueError) as err:
        build_datalist(busi_like)
    message = str(err.value)
    assert "['normal'] have no usable images" in message
    assert "every file of it was skipped" in message and str(busi_like / "normal" / "corrupt.png") in message


def test_folder_holding_only_a_corrupt_png_names_it(tmp_path):
    (tmp_path / "benign").mkdir()
    (tmp_path / "benign" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError) as err:
        build_datalist(tmp_path, num_classes=3)
    message = str(err.value)
    assert "1 classes ['benign'] but num_classes=3" in message  # the count is wrong, and
    assert "could not be used either" in message and "corrupt.png" in message  # the file is named
    with pytest.warns(DataWarning), pytest.raises(ValueError, match=r"no usable images.*corrupt\.png"):
        build_datalist(tmp_path, num_classes=None)


def test_unreadable_unknown_and_tiny_files_are_skipped_with_a_listed_warning(busi_like, image_writer):
    (busi_like / "benign" / "broken.png").write_bytes(b"\x89PNG not really")
    (busi_like / "benign" / "scan.dcm").write_bytes(b"DICM")
    image_writer(busi_like / "benign" / "tiny.png", size=(8, 8))
    with pytest.warns(DataWarning) as record:
        data = build_datalist(busi_like)
    message = str(record[0].message)
    for name in ("broken.png", "scan.dcm", "tiny.png"):
        assert name in message
    assert {Path(s["image"]).name for s in data.skipped} == {"broken.png", "scan.dcm", "tiny.png"}
    assert "too small" in next(s["reason"] for s in data.skipped if s["image"].endswith("tiny.png"))
    assert len(data) == 12
    with pytest.raises(ValueError, match=r"broken\.png"):
        build_datalist(busi_like, strict=True)


def test_unsupported_source(tmp_path):
    other = tmp_path / "x.txt"
    other.write_text("")
    with pytest.raises(ValueError, match="unsupported data source"):
        build_datalist(other)
