"""Finding and checking 2-D image files: extensions, mask files and cheap header checks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

#: File extensions read as 2-D ultrasound images (lower case, with the dot).
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

#: Files that are never data and are skipped without a warning.
_IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", "readme.md", "readme.txt", "license", "license.txt"})

#: BUSI masks are named ``benign (1)_mask.png`` or ``benign (1)_mask_1.png``.
_MASK_PATTERN = re.compile(r"_mask(_\d+)?$", re.IGNORECASE)

#: Smallest side (pixels) an image must have to be resized meaningfully; smaller files are skipped.
DEFAULT_MIN_SIZE = 32


def is_mask_file(path: str | Path) -> bool:
    """Return True for a segmentation mask file such as ``benign (1)_mask.png``."""
    return bool(_MASK_PATTERN.search(Path(path).stem))


def is_image_file(path: str | Path) -> bool:
    """Return True when the extension is one of :data:`IMAGE_EXTENSIONS`."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


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


def check_image_file(path: str | Path, min_size: int = DEFAULT_MIN_SIZE) -> str | None:
    """Return why an image file cannot be used, or None when its header is fine.

    Only the header is read (fast); truncated pixel data is found by the audit, which decodes.

    Args:
        path: the file.
        min_size: smallest allowed width and height in pixels.
    """
    path = Path(path)
    if not path.is_file():
        return "file does not exist"
    if not is_image_file(path):
        return f"unknown extension {path.suffix or '(none)'!r} (expected one of {sorted(IMAGE_EXTENSIONS)})"
    try:
        header = read_header(path)
    except ValueError as err:
        return str(err.__cause__ or err)
    if min(header.width, header.height) < min_size:
        return f"image too small to resize ({header.width}x{header.height} px, minimum side {min_size} px)"
    return None
