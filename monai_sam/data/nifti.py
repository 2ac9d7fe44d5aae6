"""NIfTI images (``.nii``, ``.nii.gz``) read through MONAI's ``NibabelReader`` as one 2-D picture.

Layout and slice rule:

- The array is MONAI's (nibabel's) ``(x, y[, z])``: ``x`` runs along the image width, ``y`` along its
  height, as in MONAI's ``LoadImage`` for every reader. It is transposed to numpy/PIL ``(H, W)`` order,
  so a NIfTI made from a PNG with MONAI (``LoadImage`` then ``SaveImage``) gives back the PNG's picture.
  The affine is not applied (no reorientation, as ``LoadImage`` by default).
- Trailing dimensions of size 1 are dropped. A 2-D image is read as it is. A 3-D volume ``(x, y, z)`` is
  cut along its last axis ``z``: the slice must be named (``nifti_slice``, 0-based, or ``"middle"`` for
  ``z // 2``), because the 2-D networks cannot use a volume and no slice is a safe default. Four or more
  dimensions (time series, vector fields) are not images.
- Intensities: uint8 data is divided by 255, exactly like an 8-bit PNG. Any other data type is scaled
  to [0, 1] by the minimum and maximum of the whole volume (a constant image reads as zeros).

The NIfTI header (its ``descrip`` and ``aux_file`` texts may hold anything) is never passed on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["NIFTI_SUFFIXES", "NiftiReadError", "SliceRequiredError", "is_nifti_name", "read_nifti"]

#: Name endings of NIfTI files (lower case).
NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")


class NiftiReadError(ValueError):
    """A NIfTI file that cannot be used; ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = str(path)
        self.reason = reason


class SliceRequiredError(NiftiReadError):
    """A 3-D volume given where a 2-D image is needed and no slice was named (a setting, not a bad file)."""


def is_nifti_name(path: str | Path) -> bool:
    """True when the file name ends in ``.nii`` or ``.nii.gz``."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


def read_nifti(path: str | Path, nifti_slice: int | str | None = None) -> tuple[np.ndarray, int, str]:
    """Read a NIfTI file as one 2-D picture.

    Args:
        path: the ``.nii`` or ``.nii.gz`` file.
        nifti_slice: slice of a 3-D volume along its last axis (0-based) or ``"middle"``; required for
            volumes, ignored for 2-D images.

    Returns:
        ``(array, slices, dtype)``: uint8 ``(H, W)`` for uint8 data, else float32 ``(H, W)`` in [0, 1];
        the number of slices (1 for a 2-D image) and the stored data type's name.

    Raises:
        SliceRequiredError: a 3-D volume and ``nifti_slice`` is None.
        NiftiReadError: unreadable, not 2-D or 3-D, a slice that does not exist, colour or non-finite data.
    """
    from monai.data import NibabelReader

    path = Path(path)
    reader = NibabelReader()
    try:
        image = reader.read(str(path))
        shape = [int(n) for n in image.shape]
    except Exception as err:  # nibabel raises ImageFileError, OSError, EOFError, zlib errors...
        raise NiftiReadError(path, f"not a readable NIfTI file ({type(err).__name__})") from err
    while len(shape) > 2 and shape[-1] == 1:
        shape.pop()
    if len(shape) < 2 or len(shape) > 3:
        raise NiftiReadError(
            path,
            f"a {len(shape)}-D NIfTI {tuple(image.shape)} is not an image (expected 2-D, or a 3-D volume)",
        )
    slices = shape[2] if len(shape) == 3 else 1
    index = 0
    if len(shape) == 3:
        if nifti_slice is None:
            raise SliceRequiredError(
                path,
                f"a 3-D volume {tuple(shape)} given to a 2-D model: name the slice along its last axis "
                "(nifti_slice: an index from 0, or 'middle')",
            )
        index = slices // 2 if nifti_slice == "middle" else int(nifti_slice)
        if not 0 <= index < slices:
            raise NiftiReadError(path, f"has {slices} slices: slice {nifti_slice} does not exist (0-based)")
    try:
        data, _ = reader.get_data(image)  # the header dictionary is dropped on purpose
    except Exception as err:  # truncated or damaged data surfaces here
        raise NiftiReadError(path, f"cannot read the image data ({type(err).__name__})") from err
    data = np.asarray(data)
    if data.dtype.fields is not None:
        raise NiftiReadError(path, "colour (RGB) NIfTI data is not supported: save one grey channel")
    data = data.reshape(shape)
    if data.dtype == np.uint8:
        picture = data if data.ndim == 2 else data[:, :, index]
        return np.ascontiguousarray(picture.T), slices, "uint8"
    values = data.astype(np.float64)
    if not np.isfinite(values).all():
        raise NiftiReadError(path, "holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    picture = values if values.ndim == 2 else values[:, :, index]
    scaled = (picture - low) / (high - low) if high > low else np.zeros_like(picture)
    return np.ascontiguousarray(scaled.T.astype(np.float32)), slices, str(data.dtype)
