"""One way to open every supported image file: PNG/JPEG/BMP/TIFF (PIL), DICOM (pydicom) and NIfTI (nibabel).

:func:`open_image` returns an in-memory PIL image for every format, so the transforms and the audit treat
all files alike: an 8-bit grey DICOM or NIfTI becomes an ``L`` image, colour DICOM an ``RGB`` image
(grey is then made from it by PIL, exactly as for a colour PNG), other grey data an ``F`` image in [0, 1].
The reading rules of each format are in :mod:`monai_sam.data.dicom` and :mod:`monai_sam.data.nifti`;
:class:`ReadOptions` holds their settings (the bundles' ``reader_options`` knob).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from monai_sam.data.dicom import DICOM_EXTENSIONS, DicomFacts, DicomReadError, has_dicom_preamble, read_dicom
from monai_sam.data.nifti import NiftiReadError, SliceRequiredError, is_nifti_name, read_nifti

__all__ = [
    "PIL_EXTENSIONS",
    "DecodedImage",
    "ImageReadError",
    "ReadOptions",
    "SliceRequiredError",
    "image_format",
    "open_image",
]

#: Extensions read by PIL (lower case, with the dot).
PIL_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

#: Every reader error carries ``path`` and ``reason`` (a message without the path).
ImageReadError = (DicomReadError, NiftiReadError)


@dataclass(frozen=True)
class ReadOptions:
    """How DICOM and NIfTI files are turned into one 2-D picture (PNG and JPEG files ignore these).

    Args:
        frame: frame of multi-frame (cine) DICOM files, 0-based, or ``"middle"``; default the first.
            Single-frame files are read whatever it says.
        nifti_slice: slice of 3-D NIfTI volumes along their last axis, 0-based, or ``"middle"``; None
            (default) makes a volume an error, since a 2-D model cannot use it.
        crop_region: crop DICOM images to their 2-D ultrasound region (``SequenceOfUltrasoundRegions``),
            dropping the scanner's text and bars around the image; default on.
    """

    frame: int | str = 0
    nifti_slice: int | str | None = None
    crop_region: bool = True

    def __post_init__(self) -> None:
        for name in ("frame", "nifti_slice"):
            value = getattr(self, name)
            if value is None and name == "nifti_slice":
                continue
            if value == "middle":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"reader option {name} must be an index >= 0 or 'middle', got {value!r}")
        if not isinstance(self.crop_region, (bool, np.bool_)):
            raise ValueError(f"reader option crop_region must be true or false, got {self.crop_region!r}")

    @classmethod
    def coerce(cls, value: ReadOptions | Mapping[str, Any] | None) -> ReadOptions:
        """A :class:`ReadOptions` from itself, a mapping of its fields (a bundle knob) or None (defaults).

        Raises:
            ValueError: unknown keys or bad values (the message names them).
        """
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(
                f"reader_options must be a mapping of {[f.name for f in fields(cls)]}, got {value!r}"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown reader option(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(value))


@dataclass
class DecodedImage:
    """A decoded image file.

    Args:
        image: the picture, loaded in memory (``L``, ``RGB``, ``F``... as PIL reads it).
        format: ``PNG``, ``JPEG``... (PIL's name), ``DICOM`` or ``NIfTI``.
        mode: what the audit lists as the mode: PIL's mode, the DICOM photometric interpretation and
            bits, or the NIfTI data type.
        frames: frames (DICOM) or slices (NIfTI) in the file; 1 for a plain image.
        dicom: DICOM header facts (names only), None for other formats.
    """

    image: Image.Image
    format: str
    mode: str
    frames: int = 1
    dicom: DicomFacts | None = None


def image_format(path: str | Path) -> str | None:
    """``"pil"``, ``"dicom"`` or ``"nifti"`` for a supported file, None otherwise.

    DICOM files are recognised by extension (``.dcm``, ``.dicom``, ``.dic``) or, whatever their name, by
    the ``DICM`` preamble (PACS exports are often extension-less).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PIL_EXTENSIONS:
        return "pil"
    if is_nifti_name(path):
        return "nifti"
    if suffix in DICOM_EXTENSIONS or (path.is_file() and has_dicom_preamble(path)):
        return "dicom"
    return None


def open_image(path: str | Path, options: ReadOptions | Mapping[str, Any] | None = None) -> DecodedImage:
    """Decode any supported image file into a :class:`DecodedImage`.

    Args:
        path: the file.
        options: :class:`ReadOptions` (or a mapping of them) for DICOM and NIfTI files.

    Raises:
        FileNotFoundError: the file does not exist.
        SliceRequiredError: a 3-D NIfTI volume without ``nifti_slice``.
        DicomReadError, NiftiReadError: an unusable DICOM or NIfTI file (``reason`` says why).
        ValueError: an unknown format or a file PIL cannot decode (the message names the file).
    """
    opts = ReadOptions.coerce(options)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file does not exist: {path}")
    kind = image_format(path)
    if kind == "dicom":
        array, facts = read_dicom(path, frame=opts.frame, crop_region=opts.crop_region)
        return DecodedImage(_to_pil(array), "DICOM", facts.mode, facts.frames, facts)
    if kind == "nifti":
        array, slices, dtype = read_nifti(path, opts.nifti_slice)
        return DecodedImage(_to_pil(array), "NIfTI", f"NIfTI {dtype}", slices)
    try:
        with Image.open(path) as img:
            img.load()
            frames = int(getattr(img, "n_frames", 1))
            return DecodedImage(img.copy(), str(img.format), img.mode, frames)  # closing frees img
    except (OSError, SyntaxError, ValueError) as err:  # PIL raises these for unreadable files
        raise ValueError(f"cannot read image {path}: {err}") from err


def _to_pil(array: np.ndarray) -> Image.Image:
    """uint8 (H, W) -> ``L``, uint8 (H, W, 3) -> ``RGB``, float (H, W) -> ``F`` (PIL infers the mode)."""
    data = array if array.dtype == np.uint8 else array.astype(np.float32)
    image = Image.fromarray(np.ascontiguousarray(data))
    if image.mode not in ("L", "RGB", "F"):
        raise ValueError(f"unexpected decoded picture {array.shape} {array.dtype}")
    return image
