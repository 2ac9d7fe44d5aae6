"""DICOM ultrasound files: recognising them, decoding one frame to a 2-D picture, and header facts.

What ultrasound DICOM holds, and what :func:`read_dicom` does with it:

- **Multi-frame (cine) files**: one frame is read, ``frame`` (default 0, the first; ``"middle"`` for the
  middle one). Single-frame files are read whatever ``frame`` says.
- **Colour** (``RGB``, ``YBR_FULL``, ``YBR_FULL_422``; ``YBR_ICT``/``YBR_RCT`` of JPEG 2000): converted to
  8-bit RGB by pydicom, then handled by the same code as an RGB PNG (grey by PIL's ITU-R 601-2 luma).
- **Grey** (``MONOCHROME2``; ``MONOCHROME1`` is inverted so that white is always bright): 8-bit unsigned
  data without a rescale is kept as 8 bits (exactly an 8-bit PNG). Otherwise ``RescaleSlope`` and
  ``RescaleIntercept`` are applied and the result is scaled to [0, 1] by the range the stored bits can
  hold after that rescale (never by the image's own maximum).
- **The ultrasound region** (``SequenceOfUltrasoundRegions``): with ``crop_region`` (default) the picture
  is cropped to the bounding box of the 2-D (B-mode, ``RegionSpatialFormat`` 1) regions, which drops the
  scanner's text and colour bars around the image. A region outside the image, or a ``PixelSpacing``
  that disagrees with the region's physical pixel size, is an error.
- **Compressed transfer syntaxes** are decoded by pydicom's plugins; when none is installed, or the data
  cannot be decoded, the error names the file and the package to install.

Patient data: the header facts of :class:`DicomFacts` hold attribute *names* and coded values from fixed
lists, never a header value as found in the file, and no error message quotes one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DICOM_EXTENSIONS",
    "IDENTIFYING_ATTRIBUTES",
    "DicomFacts",
    "DicomReadError",
    "has_dicom_preamble",
    "identifying_attributes",
    "read_dicom",
]

#: Extensions of DICOM files; files without a known extension are DICOM when they carry the preamble.
DICOM_EXTENSIONS: frozenset[str] = frozenset({".dcm", ".dicom", ".dic"})

#: Attributes that identify a patient (or the people and places of the exam). The audit reports which
#: of them a file carries (by name), along with every date (DA/DT) attribute and private tags.
IDENTIFYING_ATTRIBUTES: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientBirthTime",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientMotherBirthName",
    "IssuerOfPatientID",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "AccessionNumber",
    "StudyID",
    "StationName",
    "DeviceSerialNumber",
)

#: Photometric interpretations (DICOM defined terms) that may be echoed in reports and errors.
_PHOTOMETRIC_TERMS = frozenset(
    {
        "MONOCHROME1",
        "MONOCHROME2",
        "PALETTE COLOR",
        "RGB",
        "HSV",
        "ARGB",
        "CMYK",
        "YBR_FULL",
        "YBR_FULL_422",
        "YBR_PARTIAL_422",
        "YBR_PARTIAL_420",
        "YBR_ICT",
        "YBR_RCT",
    }
)
_COLOUR_TERMS = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})

#: Modality defined terms (PS3.3 C.7.3.1.1.1) that may be echoed; anything else is reported as "other".
_MODALITY_TERMS = frozenset(
    "AR ASMT AU BDUS BI BMD CR CT CTPROTOCOL DG DMS DOC DX ECG EEG EMG EOG EPS ES FID GM HC HD IO IOL IVOCT "
    "IVUS KER KO LEN LS MG MR M3D NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PA PLAN POS PR PT PX REG "
    "RESP RF RTDOSE RTIMAGE RTINTENT RTPLAN RTRAD RTRECORD RTSEGANN RTSTRUCT RWV SEG SM SMR SR SRF STAIN "
    "TEXTUREMAP TG US VA XA XAPROTOCOL XC".split()
)

#: pip packages that decode a compressed transfer syntax (pydicom's decoder plugins), by UID prefix.
_DECODER_PACKAGES = (
    ("1.2.840.10008.1.2.4.8", "pylibjpeg pylibjpeg-libjpeg (or pyjpegls)"),  # JPEG-LS
    ("1.2.840.10008.1.2.4.9", "pylibjpeg pylibjpeg-openjpeg"),  # JPEG 2000
    ("1.2.840.10008.1.2.4.20", "pylibjpeg pylibjpeg-openjpeg"),  # HTJ2K
    ("1.2.840.10008.1.2.4.", "pylibjpeg pylibjpeg-libjpeg"),  # JPEG baseline, extended, lossless
)
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_CM_UNITS = 3  # PhysicalUnitsX/YDirection code of centimetres
_SPACING_TOLERANCE = 0.01  # relative disagreement allowed between PixelSpacing and the region


_QUIET_LOCK = threading.Lock()
_QUIET_STATE = {"depth": 0, "level": logging.NOTSET}


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's warnings and log records while reading (thread-safe, nestable).

    pydicom warns and logs about invalid header values quoting them, and its decoders log a traceback
    before raising; the error we raise instead names the file and the reason.
    """
    logger = logging.getLogger("pydicom")
    with _QUIET_LOCK:
        if _QUIET_STATE["depth"] == 0:
            _QUIET_STATE["level"] = logger.level
            logger.setLevel(logging.CRITICAL + 1)
        _QUIET_STATE["depth"] += 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        with _QUIET_LOCK:
            _QUIET_STATE["depth"] -= 1
            if _QUIET_STATE["depth"] == 0:
                logger.setLevel(_QUIET_STATE["level"])


class DicomReadError(ValueError):
    """A DICOM file that cannot be used; ``reason`` says why (without any header value)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class DicomFacts:
    """What the audit reports about a DICOM file; no field holds a header value as found in the file.

    Args:
        frames: number of frames in the file.
        mode: photometric interpretation (a DICOM defined term, else ``"other"``) and stored bits.
        identifying_attributes: names of the identifying attributes present with a value.
        burned_in_annotation: ``BurnedInAnnotation`` is ``YES``.
        modality: the modality code when it is a DICOM defined term, ``"other"`` for anything else,
            None when absent.
        cropped: the picture was cropped to the ultrasound region.
    """

    frames: int
    mode: str
    identifying_attributes: tuple[str, ...]
    burned_in_annotation: bool
    modality: str | None
    cropped: bool


def has_dicom_preamble(path: str | Path) -> bool:
    """True when the file carries the DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def read_dicom(
    path: str | Path, frame: int | str = 0, crop_region: bool = True
) -> tuple[np.ndarray, DicomFacts]:
    """Decode one frame of a DICOM image.

    Args:
        path: the DICOM file.
        frame: frame of a multi-frame file (0-based) or ``"middle"``; ignored for single-frame files.
        crop_region: crop to the 2-D ultrasound region(s) of ``SequenceOfUltrasoundRegions``.

    Returns:
        ``(array, facts)``: the picture as uint8 ``(H, W)`` (8-bit grey), uint8 ``(H, W, 3)`` (RGB) or
        float32 ``(H, W)`` in [0, 1] (other grey data), and the header facts.

    Raises:
        DicomReadError: not readable, no pixel data, an unsupported or undecodable encoding, a frame that
            does not exist or an inconsistent ultrasound region (the message names the file).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    with _quiet_pydicom():
        try:
            ds = pydicom.dcmread(path, force=path.suffix.lower() in DICOM_EXTENSIONS)
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as err:
            raise DicomReadError(
                path, f"not a readable DICOM file (truncated or damaged: {type(err).__name__})"
            ) from err
        if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
            raise DicomReadError(
                path, f"no pixel data ({_sop_class_name(ds)}, e.g. a structured report): not an image"
            )
        if "PixelData" not in ds:
            raise DicomReadError(path, "float pixel data is not supported (export the images as integers)")
        frames = _frame_count(ds)
        index = _frame_index(path, frame, frames)
        array = _decode(path, ds, index if frames > 1 else None)
        photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        picture = _to_picture(path, ds, array, photometric)
        cropped = False
        if crop_region:
            box = _region_box(path, ds, picture.shape[:2])
            if box is not None:
                y0, y1, x0, x1 = box
                picture = np.ascontiguousarray(picture[y0:y1, x0:x1])
                cropped = True
        shown = photometric if photometric in _PHOTOMETRIC_TERMS else "other"
        facts = DicomFacts(
            frames=frames,
            mode=f"{shown} {int(ds.get('BitsStored', 0) or 0)}-bit",
            identifying_attributes=identifying_attributes(ds),
            burned_in_annotation=str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES",
            modality=_modality(ds),
            cropped=cropped,
        )
    return picture, facts


def identifying_attributes(ds) -> tuple[str, ...]:
    """Names of the identifying attributes of ``ds`` that hold a value (nested sequences included).

    Every attribute of :data:`IDENTIFYING_ATTRIBUTES`, every date or date-time (VR DA/DT) and, as
    ``"private tags"``, any private attribute. Only names are returned, never values.

    Args:
        ds: a pydicom ``Dataset``.
    """
    found: set[str] = set()
    wanted = set(IDENTIFYING_ATTRIBUTES)
    for elem in ds.iterall():
        if elem.tag.is_private:
            found.add("private tags")
            continue
        if elem.VR == "SQ":
            if elem.keyword in wanted and len(elem.value):
                found.add(elem.keyword)
            continue
        if elem.keyword in wanted or elem.VR in ("DA", "DT"):
            if not elem.is_empty:
                found.add(elem.keyword or str(elem.tag))
    return tuple(sorted(found))


def _sop_class_name(ds) -> str:
    uid = ds.get("SOPClassUID")
    name = getattr(uid, "name", "") if uid is not None else ""
    return f"SOP class {name}" if name and name != str(uid) else "unknown SOP class"


def _modality(ds) -> str | None:
    if "Modality" not in ds or not str(ds.Modality).strip():
        return None
    code = str(ds.Modality).strip().upper()
    return code if code in _MODALITY_TERMS else "other"


def _frame_count(ds) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _frame_index(path: Path, frame: int | str, frames: int) -> int:
    if frames == 1:
        return 0
    index = frames // 2 if frame == "middle" else int(frame)
    if not 0 <= index < frames:
        raise DicomReadError(path, f"has {frames} frames: frame {frame} does not exist (frames are 0-based)")
    return index


def _decoder_package(uid: str) -> str:
    return next((package for prefix, package in _DECODER_PACKAGES if uid.startswith(prefix)), "pylibjpeg")


def _decode(path: Path, ds, index: int | None) -> np.ndarray:
    """Decode the pixel data (one frame when ``index`` is given); YBR colour comes back as RGB."""
    from pydicom.pixels import get_decoder, pixel_array
    from pydicom.uid import ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    uid = (meta.get("TransferSyntaxUID") if meta is not None else None) or ImplicitVRLittleEndian
    compressed = bool(getattr(uid, "is_compressed", False))
    if compressed:
        try:
            decoder = get_decoder(uid)
        except NotImplementedError as err:
            raise DicomReadError(
                path,
                f"pixel data compressed as {uid.name}, which pydicom cannot decode "
                "(export single images, uncompressed or JPEG)",
            ) from err
        if not decoder.is_available:
            raise DicomReadError(
                path,
                f"pixel data compressed as {uid.name} and no decoder is installed: "
                f"pip install {_decoder_package(str(uid))}",
            )
    try:
        return pixel_array(ds, index=index)
    except Exception as err:  # pydicom's decoders raise many types; all mean "cannot decode"
        hint = (
            f"damaged compressed data, or a decoder that cannot read it (try: pip install "
            f"{_decoder_package(str(uid))})"
            if compressed
            else "truncated or inconsistent pixel data"
        )
        raise DicomReadError(path, f"cannot decode the pixel data: {hint} ({type(err).__name__})") from err


def _to_picture(path: Path, ds, array: np.ndarray, photometric: str) -> np.ndarray:
    """Grey or RGB picture from the decoded array (see the module docstring for the rules)."""
    shown = photometric if photometric in _PHOTOMETRIC_TERMS else "other"
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
    if samples == 3:
        if photometric not in _COLOUR_TERMS:
            raise DicomReadError(path, f"unsupported colour photometric interpretation {shown}")
        if array.dtype != np.uint8 or array.ndim != 3:
            raise DicomReadError(path, f"only 8-bit colour is supported ({shown} with {bits} bits)")
        return np.ascontiguousarray(array)
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2") or array.ndim != 2:
        raise DicomReadError(
            path,
            f"unsupported photometric interpretation {shown} with {samples} sample(s) per pixel "
            "(expected MONOCHROME1/2, RGB or YBR_FULL/YBR_FULL_422)",
        )
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    slope = _number(ds, "RescaleSlope", 1.0)
    intercept = _number(ds, "RescaleIntercept", 0.0)
    if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0:
        raise DicomReadError(path, "RescaleSlope/RescaleIntercept are not usable (zero or not finite)")
    if bits == 8 and not signed and slope == 1.0 and intercept == 0.0:
        grey = array.astype(np.uint8)
        return 255 - grey if photometric == "MONOCHROME1" else grey
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    low, high = sorted((low * slope + intercept, high * slope + intercept))
    values = array.astype(np.float64) * slope + intercept
    scaled = np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0)
    if photometric == "MONOCHROME1":
        scaled = 1.0 - scaled
    return scaled.astype(np.float32)


def _number(ds, keyword: str, default: float) -> float:
    """A numeric attribute as float; ``default`` when absent or empty."""
    value = ds.get(keyword)
    return default if value is None or value == "" else float(value)


def _region_box(path: Path, ds, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` (end exclusive) of the 2-D ultrasound regions, or None without any."""
    regions = [r for r in ds.get("SequenceOfUltrasoundRegions", []) if r.get("RegionSpatialFormat") == 1]
    if not regions:
        return None
    try:
        x0 = min(int(r.RegionLocationMinX0) for r in regions)
        y0 = min(int(r.RegionLocationMinY0) for r in regions)
        x1 = max(int(r.RegionLocationMaxX1) for r in regions)
        y1 = max(int(r.RegionLocationMaxY1) for r in regions)
    except (AttributeError, TypeError, ValueError) as err:
        raise DicomReadError(path, "an ultrasound region lacks its RegionLocation coordinates") from err
    height, width = shape
    if not (0 <= x0 <= x1 < width and 0 <= y0 <= y1 < height):
        raise DicomReadError(
            path,
            f"ultrasound region x {x0}..{x1}, y {y0}..{y1} lies outside the {width}x{height} image "
            "(set crop_region false to read the whole image)",
        )
    _check_spacing(path, ds, regions)
    return y0, y1 + 1, x0, x1 + 1


def _check_spacing(path: Path, ds, regions) -> None:
    """PixelSpacing (mm, row then column) must match the physical size of the regions' pixels (cm)."""
    spacing = ds.get("PixelSpacing")
    if not spacing or len(spacing) != 2:
        return
    row_mm, col_mm = float(spacing[0]), float(spacing[1])
    for region in regions:
        if (
            region.get("PhysicalUnitsXDirection") != _CM_UNITS
            or region.get("PhysicalUnitsYDirection") != _CM_UNITS
        ):
            continue
        dx_mm, dy_mm = 10.0 * float(region.PhysicalDeltaX), 10.0 * float(region.PhysicalDeltaY)
        if not (
            math.isclose(row_mm, dy_mm, rel_tol=_SPACING_TOLERANCE)
            and math.isclose(col_mm, dx_mm, rel_tol=_SPACING_TOLERANCE)
        ):
            raise DicomReadError(
                path,
                f"PixelSpacing {row_mm:g} x {col_mm:g} mm disagrees with its ultrasound region's pixel size "
                f"{dy_mm:g} x {dx_mm:g} mm: an inconsistent export (crop_region false ignores the regions)",
            )
