"""External test sets: the declaration, class folders with a per-image CSV, CSV sources, the label map and
the errors that name a bad set; BUS-BRA itself when ../shared holds it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from synthetic_images import write_image

from monai_sam.data import (
    DataWarning,
    ExternalSetSpec,
    load_external_set,
    load_external_sets,
    make_site_phantom,
    parse_external_specs,
)

MODEL = ["benign", "malignant", "normal"]
BUSBRA = Path(__file__).resolve().parents[3] / "shared" / "data" / "busbra"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A synthetic second site: 6 benign and 6 malignant phantom images, 2 per patient, 2 scanners."""
    return make_site_phantom(tmp_path_factory.mktemp("site"), num_per_class=6, image_size=32)


def _spec(folder: Path, **changes) -> dict:
    spec = {
        "name": "site",
        "source": str(folder),
        "csv": "site.csv",
        "id_column": "ID",
        "label_column": "Pathology",
        "case_column": "Case",
        "group_column": "Device",
    }
    spec.update(changes)
    return {k: v for k, v in spec.items() if v is not None}


def _rewrite_csv(src: Path, dst: Path, keep=lambda row: True, change=lambda row: row) -> None:
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(dst, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(change(dict(r)) for r in rows if keep(r))


def _copy(site: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(site, tmp_path / "copy"))


def test_class_folder_with_per_image_csv(site):
    ext = load_external_set(_spec(site), MODEL)
    assert len(ext.items) == 12 and ext.root == site
    assert ext.positive_index == 1 and ext.mapped_indices == [0, 1]
    assert ext.binary_labels().sum() == 6
    first = ext.items[0]
    assert first["relpath"] == "benign/site_benign_000.png" and first["external_label"] == "benign"
    assert (first["case"], first["group"], first["label"]) == ("b000", "site-B scanner 1", 0)
    info = ext.describe()
    assert info["cases"] == 6 and info["model_classes"] == {"benign": 6, "malignant": 6}
    assert info["negative_classes"] == ["benign"] and info["spec"]["score"] == "conditional"


def test_source_expands_environment_variables(site, monkeypatch):
    monkeypatch.setenv("SITE_B_DIR", str(site))
    ext = load_external_set(_spec(site, source="$SITE_B_DIR"), MODEL)
    assert len(ext.items) == 12 and ext.root == site
    monkeypatch.delenv("SITE_B_DIR")
    with pytest.raises(FileNotFoundError, match=r"set the environment variable SITE_B_DIR"):
        load_external_set(_spec(site, source="${SITE_B_DIR}"), MODEL)


def test_label_map_renames_and_leaves_out(site, tmp_path):
    folder = _copy(site, tmp_path)
    (folder / "benign").rename(folder / "B")
    (folder / "malignant").rename(folder / "M")
    write_image(folder / "unsure" / "u1.png", size=(40, 40))
    ext = load_external_set(
        {
            "name": "renamed",
            "source": str(folder),
            "label_map": {"B": "benign", "M": "malignant", "unsure": None},
        },
        MODEL,
    )
    assert ext.excluded == {"unsure": 1} and len(ext.items) == 12
    assert {i["external_label"] for i in ext.items if i["label"] == 1} == {"M"}
    assert all(i["case"] is None and i["group"] is None for i in ext.items)


def test_label_map_errors_name_the_problem(site, tmp_path):
    with pytest.raises(
        ValueError, match=r"external class\(es\) \['malignant'\] are not covered by label_map"
    ):
        load_external_set(_spec(site, label_map={"benign": "benign"}), MODEL)
    with pytest.raises(ValueError, match=r"label_map target\(s\) \['cancer'\] are not model classes"):
        load_external_set(_spec(site, label_map={"benign": "benign", "malignant": "cancer"}), MODEL)
    with pytest.raises(ValueError, match="positive class 'malignant'"):
        load_external_set(_spec(site, label_map={"benign": "benign", "malignant": "normal"}), MODEL)
    with pytest.raises(
        ValueError, match=r"target\(s\) \['malignant'\] are not model classes.*\['benign', 'normal'\]"
    ):
        load_external_set(_spec(site), ["benign", "normal"])
    with pytest.warns(DataWarning, match=r"label_map key\(s\) \['Benign'\]"):
        load_external_set(
            _spec(site, label_map={"benign": "benign", "malignant": "malignant", "Benign": "benign"}), MODEL
        )


def test_one_class_set_is_an_error(site, tmp_path):
    folder = _copy(site, tmp_path)
    import shutil

    shutil.rmtree(folder / "benign")
    with pytest.raises(ValueError, match=r"one class only .* AUC is undefined"):
        load_external_set({"name": "m", "source": str(folder)}, MODEL)
    with pytest.raises(ValueError, match="one class only"):
        load_external_set(
            {"name": "m", "source": str(site), "label_map": {"benign": None, "malignant": "malignant"}}, MODEL
        )


def test_csv_ids_without_images_and_images_without_rows(site, tmp_path):
    folder = _copy(site, tmp_path)
    (folder / "malignant" / "site_malignant_004.png").unlink()
    (folder / "malignant" / "site_malignant_005.png").unlink()
    with pytest.raises(
        ValueError, match=r"2 of 12 id\(s\) in column 'ID' .* site_malignant_004, site_malignant_005"
    ):
        load_external_set(_spec(folder), MODEL)
    _rewrite_csv(site / "site.csv", folder / "site.csv", keep=lambda r: r["ID"] != "site_benign_001")
    (folder / "malignant" / "site_malignant_004.png").write_bytes(
        (site / "malignant" / "site_malignant_004.png").read_bytes()
    )
    (folder / "malignant" / "site_malignant_005.png").write_bytes(
        (site / "malignant" / "site_malignant_005.png").read_bytes()
    )
    with pytest.raises(ValueError, match=r"1 image\(s\) have no row in .*site.csv.*site_benign_001"):
        load_external_set(_spec(folder), MODEL)


def test_unknown_columns_and_label_conflicts(site, tmp_path):
    with pytest.raises(
        ValueError, match=r"has no column group_column 'Scanner'; its columns are \['ID', 'Case'"
    ):
        load_external_set(_spec(site, group_column="Scanner"), MODEL)
    folder = _copy(site, tmp_path)
    swap = {"benign": "malignant", "malignant": "benign"}
    _rewrite_csv(
        site / "site.csv",
        folder / "site.csv",
        change=lambda r: {**r, "Pathology": swap[r["Pathology"]]} if r["ID"] == "site_benign_002" else r,
    )
    with pytest.raises(
        ValueError,
        match=r"1 image\(s\) are in another class .*site_benign_002 \(folder 'benign', CSV 'malignant'\)",
    ):
        load_external_set(_spec(folder), MODEL)
    _rewrite_csv(
        site / "site.csv",
        folder / "site.csv",
        change=lambda r: {**r, "Case": ""} if r["ID"].endswith("3") else r,
    )
    with pytest.raises(ValueError, match="empty cells"):
        load_external_set(_spec(folder), MODEL)


def test_csv_source_by_stem_and_relative_path(site, tmp_path):
    table = tmp_path / "copy" / "labels.csv"
    folder = _copy(site, tmp_path)
    with open(site / "site.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows[0]["ID"] = "benign/site_benign_000.png"  # a relative path instead of a stem
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    spec = {
        "name": "csv",
        "source": str(table),
        "id_column": "ID",
        "label_column": "Pathology",
        "case_column": "Case",
    }
    ext = load_external_set(spec, MODEL)
    assert len(ext.items) == 12 and ext.root == folder and ext.items[0]["case"] == "b000"
    write_image(folder / "extra" / "site_benign_001.png", size=(40, 40))  # now the stem is ambiguous
    with pytest.raises(ValueError, match="match several images"):
        load_external_set(spec, MODEL)
    rows[1]["ID"] = "nowhere_17"
    with open(table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ValueError, match=r"1 of 12 id\(s\) .* have no image below .*: nowhere_17"):
        load_external_set(spec, MODEL)


def test_declaration_errors_name_the_key():
    parse = ExternalSetSpec.parse
    with pytest.raises(ValueError, match=r"data.external\[0\]: unknown key\(s\) \['labelmap'\]"):
        parse_external_specs([{"name": "a", "source": "x", "labelmap": {}}], "data.external")
    with pytest.raises(ValueError, match="'source' is required"):
        parse({"name": "a"})
    with pytest.raises(ValueError, match="names files"):
        parse({"name": "bus bra", "source": "x"})
    with pytest.raises(ValueError, match="score: 'softmax'"):
        parse({"name": "a", "source": "x", "score": "softmax"})
    with pytest.raises(ValueError, match="need a CSV"):
        parse({"name": "a", "source": "folder", "case_column": "Case"})
    with pytest.raises(ValueError, match="id_column: required"):
        parse({"name": "a", "source": "folder", "csv": "meta.csv"})
    with pytest.raises(ValueError, match="label_column: required"):
        parse({"name": "a", "source": "t.csv", "id_column": "ID"})
    with pytest.raises(ValueError, match=r"names must be unique, \['a'\] repeat"):
        parse_external_specs([{"name": "a", "source": "x"}, {"name": "a", "source": "y"}])
    with pytest.raises(ValueError, match="expected a list"):
        parse_external_specs({"name": "a", "source": "x"})
    with pytest.raises(FileNotFoundError, match="external set 'a': source does not exist"):
        load_external_set({"name": "a", "source": "/no/such/folder"}, MODEL)
    spec = parse({"name": "a", "source": "x", "label_map": {"b": None}})
    assert parse(spec.to_dict()) == spec and load_external_sets(None, MODEL) == []


@pytest.mark.skipif(not (BUSBRA / "bus_data.csv").is_file(), reason="needs ../shared/data/busbra")
def test_busbra():
    (busbra,) = load_external_sets(
        [
            {
                "name": "busbra",
                "source": str(BUSBRA),
                "csv": "bus_data.csv",
                "id_column": "ID",
                "label_column": "Pathology",
                "case_column": "Case",
                "group_column": "Device",
                "label_map": {"benign": "benign", "malignant": "malignant"},
            }
        ],
        MODEL,
    )
    info = busbra.describe()
    assert info["n"] == 976 and info["cases"] == 552
    assert info["model_classes"] == {"benign": 626, "malignant": 350}
    assert len({i["group"] for i in busbra.items}) == 4


def test_unusable_image_is_skipped_with_its_row(site, tmp_path):
    folder = _copy(site, tmp_path)
    write_image(folder / "benign" / "site_benign_000.png", size=(20, 20))  # below the 32-pixel minimum
    with pytest.warns(DataWarning, match="image too small"):
        ext = load_external_set(_spec(folder), MODEL)
    assert len(ext.items) == 11 and len(ext.skipped) == 1
