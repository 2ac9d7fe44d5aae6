"""Synthetic DICOM (pydicom) and NIfTI (nibabel) files for the tests; nothing is downloaded.

A plain module (not ``conftest``): imported by name from the tests of this folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

#: Distinctive values planted in every identifying attribute; none may appear in anything we write.
PLANTED_PHI: dict[str, str] = {
    "PatientName": "Qzxvlimpt^Wrobhyrk",
    "PatientID": "PID-7Q3ZX9W1",
    "PatientBirthDate": "18930517",
    "OtherPatientIDs": "OPID-K8V2M4",
    "OtherPatientNames": "Fyrnwalde^Oskvig",
    "PatientAddress": "17 Quillonby Lane Zarnwick",
    "InstitutionName": "Hospital of Saint Vrelmundo",
    "InstitutionAddress": "Plaxtonbury Road 99",
    "ReferringPhysicianName": "Drumvalley^Ysolde",
    "PerformingPhysicianName": "Kestrivane^Ottoline",
    "OperatorsName": "Brammelow^Tilda",
    "AccessionNumber": "ACC5K7Q2Z8",
    "StudyID": "STQ9X4",
    "StationName": "USSTATION-ZQ71",
    "DeviceSerialNumber": "SN-WQ9921X",
    "StudyDate": "18940203",
    "SeriesDate": "18950304",
    "AcquisitionDate": "18960405",
    "ContentDate": "18970506",
}

#: The strings searched for: every planted value and the parts of the person names.
PHI_NEEDLES: tuple[str, ...] = tuple(
    sorted({part for value in PLANTED_PHI.values() for part in [value, *value.split("^")] if len(part) >= 5})
)


def smooth_image(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A uint8 grey ``(H, W)`` picture with large blobs (hashes and chroma subsampling behave)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.full((height, width), 40.0)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(5, 16)
        image += rng.uniform(60, 150) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _base(multi_frame: bool) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sop = UltrasoundMultiFrameImageStorage if multi_frame else UltrasoundImageStorage
    ds.file_meta.MediaStorageSOPClassUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = sop
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    return ds


def _region(box: tuple[int, int, int, int], delta_cm: tuple[float, float] | None) -> Dataset:
    x0, y0, x1, y1 = box
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = x0, y0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = x1, y1
    if delta_cm is not None:
        region.PhysicalUnitsXDirection = 3
        region.PhysicalUnitsYDirection = 3
        region.PhysicalDeltaX, region.PhysicalDeltaY = delta_cm
    return region


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits: int = 8,
    phi: Mapping[str, str] | None = None,
    modality: str = "US",
    burned_in: str | None = None,
    region: tuple[int, int, int, int] | None = None,
    region_delta_cm: tuple[float, float] | None = None,
    pixel_spacing_mm: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write an uncompressed DICOM file.

    Args:
        path: output file (any name; extension-less works).
        pixels: uint8/uint16 ``(H, W)`` grey, ``(H, W, 3)`` RGB, or ``(F, H, W[, 3])`` for multi-frame.
            For ``YBR_FULL``/``YBR_FULL_422`` give RGB; it is converted (and 4:2:2 subsampled) here.
        photometric: MONOCHROME1, MONOCHROME2, RGB, YBR_FULL or YBR_FULL_422.
        bits: BitsStored.
        phi: identifying attributes to set (keyword -> value).
        modality: the Modality attribute.
        burned_in: BurnedInAnnotation value, or None to leave it out.
        region: one 2-D ultrasound region ``(x0, y0, x1, y1)`` (inclusive), or None.
        region_delta_cm: the region's physical pixel size (x, y) in cm.
        pixel_spacing_mm: PixelSpacing (row, column) in mm.
        rescale: (RescaleSlope, RescaleIntercept).
        extra: any other attributes.
    """
    multi = pixels.ndim == 4 or (pixels.ndim == 3 and photometric.startswith("MONO"))
    ds = _base(multi)
    ds.Modality = modality
    for keyword, value in (phi or {}).items():
        setattr(ds, keyword, value)
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        ybr = convert_color_space(pixels, "RGB", "YBR_FULL")
        if photometric == "YBR_FULL":
            ds.set_pixel_data(ybr, "YBR_FULL", 8)
        else:
            _set_ybr_422(ds, ybr)
    else:
        ds.set_pixel_data(pixels, photometric, bits)
    if region is not None:
        ds.SequenceOfUltrasoundRegions = Sequence([_region(region, region_delta_cm)])
    if pixel_spacing_mm is not None:
        ds.PixelSpacing = list(pixel_spacing_mm)
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _set_ybr_422(ds: Dataset, ybr: np.ndarray) -> None:
    """Native YBR_FULL_422: per pair of pixels Y1 Y2 Cb Cr (chroma averaged over the pair)."""
    height, width = ybr.shape[:2]
    y = ybr[..., 0]
    cb = ybr[..., 1].reshape(height, width // 2, 2).mean(-1).round().astype(np.uint8)
    cr = ybr[..., 2].reshape(height, width // 2, 2).mean(-1).round().astype(np.uint8)
    packed = np.stack([y[:, 0::2], y[:, 1::2], cb, cr], axis=-1).astype(np.uint8)
    ds.Rows, ds.Columns = height, width
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = packed.tobytes()


def write_junk_jpeg_dicom(path: Path, phi: Mapping[str, str] | None = None) -> Path:
    """A DICOM claiming JPEG Baseline compression over bytes that are not a JPEG stream."""
    ds = _base(False)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.Modality = "US"
    for keyword, value in (phi or {}).items():
        setattr(ds, keyword, value)
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 48, 64, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([b"\x00not a jpeg stream" * 8])
    ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_sr_dicom(path: Path, phi: Mapping[str, str] | None = None) -> Path:
    """A structured report: a DICOM file without pixel data."""
    ds = _base(False)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = (
        "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    )
    ds.Modality = "SR"
    for keyword, value in (phi or {}).items():
        setattr(ds, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_nifti(path: Path, image: np.ndarray) -> Path:
    """Write a numpy ``(H, W)`` (or ``(H, W, Z...)``) ``image`` as a NIfTI in MONAI's ``(x, y, ...)``."""
    data = np.swapaxes(image, 0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), np.eye(4)), str(path))
    return path
