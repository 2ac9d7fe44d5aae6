"""DICOM and NIfTI reading: pixel rules, options, bad input and the audit's DICOM findings."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
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

from monai_sam.bundle.inputs import image_folder_datalist
from monai_sam.data import DataWarning, audit_dataset, build_datalist, check_image_file, load_ultrasound_image
from monai_sam.data.dicom import DicomReadError
from monai_sam.data.image_files import is_image_file, is_mask_file
from monai_sam.data.image_reading import ReadOptions, SliceRequiredError, open_image
from monai_sam.data.nifti import NiftiReadError


@pytest.fixture
def grey() -> np.ndarray:
    return smooth_image(48, 64, seed=3)


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def test_8bit_dicom_and_nifti_read_exactly_like_the_png(tmp_path, grey):
    png = load_ultrasound_image(str(_png(tmp_path / "a.png", grey)))
    dicom = write_dicom(tmp_path / "IM000123", grey)  # extension-less PACS export
    nifti = write_nifti(tmp_path / "a.nii.gz", grey)
    assert is_image_file(dicom) and is_image_file(nifti) and not is_image_file(tmp_path / "nothing")
    for path in (dicom, nifti):
        assert check_image_file(path) is None
        np.testing.assert_array_equal(load_ultrasound_image(str(path)), png)
    np.testing.assert_array_equal(
        load_ultrasound_image(str(dicom), in_channels=3), load_ultrasound_image(str(tmp_path / "a.png"), 3)
    )
    assert is_mask_file(tmp_path / "case_mask.nii.gz") and not is_mask_file(nifti)


def test_monochrome1_is_inverted(tmp_path, grey):
    mono2 = load_ultrasound_image(str(write_dicom(tmp_path / "m2.dcm", grey)))
    mono1 = load_ultrasound_image(str(write_dicom(tmp_path / "m1.dcm", 255 - grey, "MONOCHROME1")))
    np.testing.assert_allclose(mono1, mono2, atol=1e-6)


def test_multi_frame_frame_option(tmp_path, grey):
    frames = np.stack([grey, 255 - grey, grey // 2])
    path = write_dicom(tmp_path / "cine.dcm", frames)
    for frame, expected in ((0, grey), (1, 255 - grey), ("middle", 255 - grey), (2, grey // 2)):
        got = load_ultrasound_image(str(path), reader_options={"frame": frame})
        np.testing.assert_allclose(got[0], expected / 255.0, atol=1e-6)
    assert open_image(path).frames == 3
    with pytest.raises(DicomReadError, match=r"cine\.dcm.*has 3 frames: frame 3 does not exist"):
        open_image(path, ReadOptions(frame=3))
    single = write_dicom(tmp_path / "single.dcm", grey)  # single-frame files ignore the option
    np.testing.assert_allclose(
        load_ultrasound_image(str(single), reader_options={"frame": 2})[0], grey / 255.0
    )


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL", "YBR_FULL_422"])
def test_colour_dicom_becomes_grey_like_the_colour_png(tmp_path, grey, photometric):
    rgb = np.stack([grey, grey, np.clip(grey.astype(int) + 30, 0, 255).astype(np.uint8)], axis=-1)
    rgb[10:14, 20:40] = (255, 200, 0)  # a coloured caliper mark
    expected = load_ultrasound_image(str(_png(tmp_path / "rgb.png", rgb)))
    path = write_dicom(tmp_path / f"{photometric}.dcm", rgb, photometric)
    assert open_image(path).image.mode == "RGB"
    got = load_ultrasound_image(str(path))
    tolerance = {"RGB": 0.0, "YBR_FULL": 1.5 / 255, "YBR_FULL_422": 0.06}[photometric]  # YBR rounding, 4:2:2
    assert np.abs(got - expected).max() <= tolerance + 1e-6
    if photometric != "YBR_FULL_422":
        assert np.abs(got - expected).mean() < 1.0 / 255


def test_rescale_slope_intercept_and_stored_range(tmp_path, grey):
    raw = grey.astype(np.uint16) * 16  # 12-bit data
    up = load_ultrasound_image(str(write_dicom(tmp_path / "up.dcm", raw, bits=12, rescale=(2.0, -100.0))))
    np.testing.assert_allclose(up[0], raw / 4095.0, atol=1e-6)  # scaled by the stored range, not the max
    down = load_ultrasound_image(str(write_dicom(tmp_path / "down.dcm", raw, bits=12, rescale=(-1.0, 0.0))))
    np.testing.assert_allclose(down[0], 1.0 - raw / 4095.0, atol=1e-6)  # a negative slope flips the scale
    mono1 = load_ultrasound_image(str(write_dicom(tmp_path / "m1.dcm", raw, "MONOCHROME1", bits=12)))
    np.testing.assert_allclose(mono1[0], 1.0 - raw / 4095.0, atol=1e-6)
    flat = write_dicom(tmp_path / "flat.dcm", raw, bits=12, rescale=(0.0, 1.0))
    assert "RescaleSlope/RescaleIntercept are not usable" in check_image_file(flat)


def test_ultrasound_region_crop(tmp_path, grey):
    box = (8, 4, 39, 35)  # x0, y0, x1, y1 inclusive
    path = write_dicom(
        tmp_path / "r.dcm", grey, region=box, region_delta_cm=(0.01, 0.01), pixel_spacing_mm=(0.1, 0.1)
    )
    cropped = load_ultrasound_image(str(path))
    np.testing.assert_allclose(cropped[0], grey[4:36, 8:40] / 255.0)
    assert open_image(path).dicom.cropped
    whole = load_ultrasound_image(str(path), reader_options={"crop_region": False})
    np.testing.assert_allclose(whole[0], grey / 255.0)
    outside = write_dicom(tmp_path / "out.dcm", grey, region=(0, 0, 80, 20))
    with pytest.raises(DicomReadError, match=r"out\.dcm.*outside the 64x48 image"):
        open_image(outside)
    mismatch = write_dicom(
        tmp_path / "spacing.dcm", grey, region=box, region_delta_cm=(0.01, 0.02), pixel_spacing_mm=(0.1, 0.1)
    )
    assert "disagrees with its ultrasound region" in check_image_file(mismatch)


def test_bad_dicom_files_are_named_with_a_reason(tmp_path, grey):
    good = write_dicom(tmp_path / "good.dcm", grey)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cut_header = tmp_path / "cut_header.dcm"
    cut_header.write_bytes(good.read_bytes()[:200])
    junk = write_junk_jpeg_dicom(tmp_path / "junk_jpeg.dcm")
    no_decoder = write_dicom(tmp_path / "jpegls.dcm", grey)
    _set_transfer_syntax(no_decoder, "1.2.840.10008.1.2.4.80")  # JPEG-LS: no plugin installed here
    sr = write_sr_dicom(tmp_path / "report.dcm")
    reasons = {p.name: check_image_file(p) for p in (truncated, cut_header, junk, no_decoder, sr)}
    assert "truncated or inconsistent pixel data" in reasons["truncated.dcm"]
    assert reasons["cut_header.dcm"]
    assert "pip install pylibjpeg" in reasons["junk_jpeg.dcm"]
    assert (
        "no decoder is installed: pip install" in reasons["jpegls.dcm"] and "JPEG-LS" in reasons["jpegls.dcm"]
    )
    assert "no pixel data" in reasons["report.dcm"] and "structured report" in reasons["report.dcm"]
    for path in (truncated, junk, no_decoder, sr):
        with pytest.raises(ValueError, match=f"cannot read image .*{path.name}"):
            load_ultrasound_image(str(path))


def _set_transfer_syntax(path: Path, uid: str) -> None:
    import pydicom
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = uid
    ds.PixelData = encapsulate([ds.PixelData])
    ds["PixelData"].VR = "OB"
    ds.save_as(path)


def test_nifti_volumes_need_a_named_slice(tmp_path, grey):
    volume = np.stack([grey, 255 - grey, grey // 2], axis=-1)
    path = write_nifti(tmp_path / "benign" / "vol.nii.gz", volume)
    write_nifti(tmp_path / "malignant" / "flat.nii", grey[..., None])  # trailing size-1 axis: a 2-D image
    with pytest.raises(SliceRequiredError, match=r"vol\.nii\.gz.*3-D volume .*nifti_slice"):
        build_datalist(tmp_path, num_classes=None)
    np.testing.assert_allclose(
        load_ultrasound_image(str(path), reader_options={"nifti_slice": 2})[0], (grey // 2) / 255
    )
    middle = load_ultrasound_image(str(path), reader_options={"nifti_slice": "middle"})
    np.testing.assert_allclose(middle[0], (255 - grey) / 255)
    assert len(build_datalist(tmp_path, num_classes=None, reader_options={"nifti_slice": 0})) == 2
    with pytest.raises(NiftiReadError, match="has 3 slices: slice 5"):
        open_image(path, ReadOptions(nifti_slice=5))
    four_d = write_nifti(tmp_path / "t.nii", np.zeros((48, 64, 3, 2), np.uint8))
    assert "4-D NIfTI" in check_image_file(four_d, reader_options={"nifti_slice": 0})
    floats = write_nifti(tmp_path / "f.nii", grey.astype(np.float32) * 3 + 7)
    got = load_ultrasound_image(str(floats))[0]
    np.testing.assert_allclose(got, (grey - grey.min()) / float(grey.max() - grey.min()), atol=1e-5)


def test_reader_options_are_validated():
    with pytest.raises(ValueError, match=r"unknown reader option\(s\) \['slice'\]"):
        ReadOptions.coerce({"slice": 3})
    with pytest.raises(ValueError, match="frame must be an index >= 0 or 'middle'"):
        ReadOptions(frame=-1)
    assert (
        ReadOptions.coerce(None) == ReadOptions()
        and ReadOptions.coerce({"frame": "middle"}).frame == "middle"
    )


def test_datalist_skips_bad_clinical_files_with_a_warning(tmp_path, grey):
    for name in ("benign", "malignant"):
        write_dicom(tmp_path / name / f"{name}.dcm", grey)
        write_nifti(tmp_path / name / f"{name}.nii.gz", grey)
    write_sr_dicom(tmp_path / "benign" / "sr.dcm")
    write_dicom(tmp_path / "benign" / "DICOMDIR", grey)  # the index of an export: ignored by name
    with pytest.warns(DataWarning, match=r"sr\.dcm: no pixel data"):
        data = build_datalist(tmp_path, num_classes=None)
    assert len(data) == 4 and [Path(s["image"]).name for s in data.skipped] == ["sr.dcm"]


def test_inference_folder_lists_clinical_files_and_skips_bad_ones(tmp_path, grey, caplog):
    write_dicom(tmp_path / "IM0001", grey)
    write_nifti(tmp_path / "b.nii", grey)
    _png(tmp_path / "c.png", grey)
    write_junk_jpeg_dicom(tmp_path / "junk.dcm")
    with caplog.at_level(logging.WARNING):
        items = image_folder_datalist(tmp_path)
    assert [Path(i["image"]).name for i in items] == ["IM0001", "b.nii", "c.png"]
    assert "junk.dcm" in caplog.text and "cannot decode the pixel data" in caplog.text


def test_audit_cross_format_duplicates_and_dicom_findings(tmp_path, grey):
    other = smooth_image(48, 64, seed=11)
    _png(tmp_path / "benign" / "a.png", grey)
    write_dicom(tmp_path / "benign" / "a.dcm", grey, phi=PLANTED_PHI, burned_in="YES")
    write_nifti(tmp_path / "benign" / "a.nii.gz", grey)
    write_dicom(tmp_path / "malignant" / "ct.dcm", other, modality="CT")
    write_dicom(tmp_path / "malignant" / "cine.dcm", np.stack([other[::-1], other]))
    write_dicom(tmp_path / "malignant" / "odd.dcm", other.T.copy(), modality="ZZPHI")
    third = smooth_image(48, 64, seed=21)
    colour = np.stack([third, third, np.clip(third.astype(int) + 30, 0, 255).astype(np.uint8)], axis=-1)
    _png(tmp_path / "normal" / "c.png", colour)
    write_dicom(tmp_path / "normal" / "c.dcm", colour, "YBR_FULL_422")  # lossy: a near duplicate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = audit_dataset(tmp_path)
    names = sorted(sorted(Path(p).name for p in group) for group in report.exact_duplicates)
    assert names == [["a.dcm", "a.nii.gz", "a.png"]]
    assert [sorted(Path(p).name for p in group) for group in report.near_duplicates] == [["c.dcm", "c.png"]]
    assert report.formats == {"PNG": 2, "DICOM": 5, "NIfTI": 1} and report.frames == {"2": 1}
    assert report.modes["MONOCHROME2 8-bit"] == 4
    (identified,) = report.identifying
    assert Path(identified["image"]).name == "a.dcm"
    assert {
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "InstitutionName",
        "AccessionNumber",
        "StudyDate",
    } <= set(identified["attributes"])
    assert [Path(p).name for p in report.burned_in_annotation] == ["a.dcm"]
    other_modality = {Path(o["image"]).name: o["modality"] for o in report.other_modality}
    assert other_modality == {"ct.dcm": "CT", "odd.dcm": "other"}  # non-standard codes are never echoed
    written = json.dumps(report.to_dict()) + report.format_text()
    assert "PatientName" in written and "ZZPHI" not in written
    assert not [needle for needle in PHI_NEEDLES if needle in written]
