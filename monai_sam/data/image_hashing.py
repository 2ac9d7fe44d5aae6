"""Content hashes (exact duplicates) and a DCT perceptual hash (near-duplicates) of 2-D images."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image
from scipy.fft import dctn
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

#: Default Hamming-distance threshold (out of 64 bits) at or below which two images are near-duplicates.
#: On the BUSI subset the pair-distance histogram has a gap: 0-12 bits are re-saved, re-annotated or
#: consecutive frames of one lesion, from 14 bits on different lesions appear (see docs/data.md).
DEFAULT_HASH_THRESHOLD = 10

_HASH_SIDE = 32  # the image is reduced to 32x32 before the DCT
_HASH_FREQ = 8  # the 8x8 lowest frequencies give the 64 bits


def content_hash(img: Image.Image) -> str:
    """SHA-256 of the decoded RGB pixels and size: equal for identical images whatever the file encoding.

    Float (``F``) images, the [0, 1] grey of DICOM and NIfTI data other than 8-bit, are hashed on their
    float32 values (an RGB conversion would clip them to 0 and 1).
    """
    if img.mode == "F":
        digest = hashlib.sha256(f"F{img.width}x{img.height}".encode())
        digest.update(np.asarray(img, dtype=np.float32).tobytes())
        return digest.hexdigest()
    rgb = img.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def perceptual_hash(img: Image.Image) -> int:
    """64-bit DCT perceptual hash (pHash) of an image.

    The grayscale image is box-filtered to 32x32, its 2-D DCT taken, and each of the 8x8 lowest-frequency
    coefficients compared with their median (DC excluded). Robust to re-encoding, resizing, small
    intensity changes and thin overlays such as calipers. Float (``F``) images in [0, 1] are used as they
    are (the hash compares coefficients with their median, so the intensity scale does not matter).
    """
    grey = img if img.mode == "F" else img.convert("L")
    small = grey.resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.BOX)
    coeffs = dctn(np.asarray(small, dtype=np.float64), norm="ortho")[:_HASH_FREQ, :_HASH_FREQ].ravel()
    bits = coeffs > np.median(coeffs[1:])
    return int(np.packbits(bits).view(">u8")[0])


def hash_groups(hashes: list[int], threshold: int = DEFAULT_HASH_THRESHOLD) -> np.ndarray:
    """Group images whose perceptual hashes differ in at most ``threshold`` bits (single linkage).

    Args:
        hashes: one 64-bit perceptual hash per image.
        threshold: largest Hamming distance that links two images.

    Returns:
        An int array with one group id per image; images in one group share the id.
    """
    n = len(hashes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    values = np.array(hashes, dtype=np.uint64)
    rows, cols = [], []
    chunk = max(1, 2_000_000 // n)  # bounds the memory of the pairwise distance block
    for start in range(0, n, chunk):
        block = np.bitwise_count(values[start : start + chunk, None] ^ values[None, :])
        r, c = np.nonzero(block <= threshold)
        rows.append(r + start)
        cols.append(c)
    rows_all, cols_all = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(rows_all), dtype=np.int8), (rows_all, cols_all)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes."""
    return int(a ^ b).bit_count()
