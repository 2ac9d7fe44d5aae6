"""Finding and checking 2-D image files: formats, mask files and header checks.

PNG/JPEG/BMP/TIFF files are checked by their header only (fast). DICOM and NIfTI files are decoded by the
check (one frame or slice, with the given :class:`~monai_sam.data.image_reading.ReadOptions`), so that a
truncated, compressed-without-decoder or otherwise unusable file is named here, never in a DataLoader.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from monai_sam.data.dicom import DICOM_EXTENSIONS
from monai_sam.data.image_reading import (
    PIL_EXTENSIONS,
    ImageReadError,
    ReadOptions,
    SliceRequiredError,
    image_format,
    open_image,
)
from monai_sam.data.nifti import NIFTI_SUFFIXES

#: File name endings read as 2-D ultrasound images (lower case, with the dot); extension-less files are
#: read as DICOM when they carry the DICOM preamble.
IMAGE_EXTENSIONS: frozenset[str] = PIL_EXTENSIONS | DICOM_EXTENSIONS | frozenset(NIFTI_SUFFIXES)

#: Files that are never data and are skipped without a warning (DICOMDIR: the index of a DICOM export).
_IGNORED_NAMES = frozenset(
    {"thumbs.db", "desktop.ini", "readme.md", "readme.txt", "license", "license.txt", "dicomdir"}
)

#: BUSI masks are named ``benign (1)_mask.png`` or ``benign (1)_mask_1.png``.
_MASK_PATTERN = re.compile(r"_mask(_\d+)?$", re.IGNORECASE)

#: Smallest side (pixels) an image must have to be resized meaningfully; smaller files are skipped.
DEFAULT_MIN_SIZE = 32


def image_stem(path: str | Path) -> str:
    """The file name without its extension (``.nii.gz`` counts as one)."""
    name = Path(path).name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(path).stem


def is_mask_file(path: str | Path) -> bool:
    """Return True for a segmentation mask file such as ``benign (1)_mask.png``."""
    return bool(_MASK_PATTERN.search(image_stem(path)))


def is_image_file(path: str | Path) -> bool:
    """Return True for a file in a supported format: a known extension, or a DICOM preamble."""
    return image_format(path) is not None


def is_ignored_file(path: str | Path) -> bool:
    """Return True for hidden files and well-known non-data files (README, Thumbs.db...)."""
    name = Path(path).name
    return name.startswith(".") or name.lower() in _IGNORED_NAMES or name.lower().endswith((".json", ".csv"))


@dataclass(frozen=True)
class ImageHeader:
    """What an image header tells without decoding the pixels.

    Args:
        path: the file.
        width: width in pixels.
        height: height in pixels.
        mode: PIL mode (``L``, ``RGB``, ``RGBA``, ``I;16``...).
        format: PIL format name (``PNG``, ``JPEG``...).
    """

    path: str
    width: int
    height: int
    mode: str
    format: str


def read_header(path: str | Path) -> ImageHeader:
    """Open only the header of an image file.

    Raises:
        ValueError: when PIL cannot identify the file as an image (message names the file).
    """
    try:
        with Image.open(path) as img:
            return ImageHeader(str(path), img.width, img.height, img.mode, str(img.format))
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as err:  # PIL raises these for unreadable headers
        raise ValueError(f"unreadable image file {path}: {err}") from err


def check_image_file(
    path: str | Path,
    min_size: int = DEFAULT_MIN_SIZE,
    reader_options: ReadOptions | Mapping[str, Any] | None = None,
) -> str | None:
    """Return why an image file cannot be used, or None when it is fine.

    PIL formats: only the header is read (fast); truncated pixel data is found by the audit, which
    decodes. DICOM and NIfTI files are decoded (the frame or slice of ``reader_options``).

    Args:
        path: the file.
        min_size: smallest allowed width and height in pixels (after the DICOM region crop).
        reader_options: DICOM/NIfTI reading options (:class:`~monai_sam.data.image_reading.ReadOptions`).

    Raises:
        SliceRequiredError: a 3-D NIfTI volume and no ``nifti_slice``: a setting to fix, not a file to skip.
    """
    path = Path(path)
    if not path.is_file():
        return "file does not exist"
    kind = image_format(path)
    if kind is None:
        return f"unknown extension {path.suffix or '(none)'!r} (expected one of {sorted(IMAGE_EXTENSIONS)})"
    if kind == "pil":
        try:
            header = read_header(path)
        except ValueError as err:
            return str(err.__cause__ or err)
        width, height = header.width, header.height
    else:
        try:
            image = open_image(path, reader_options).image
        except SliceRequiredError:
            raise
        except ImageReadError as err:
            return err.reason
        width, height = image.width, image.height
    if min(width, height) < min_size:
        return f"image too small to resize ({width}x{height} px, minimum side {min_size} px)"
    return None
