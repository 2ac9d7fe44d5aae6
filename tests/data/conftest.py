"""Fixtures for the data tests: small generated image files in every supported format."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_images import write_image

from monai_sam.data import find_busi_dir


@pytest.fixture
def busi_like(tmp_path: Path) -> Path:
    """A BUSI-layout directory: 4 images per class in mixed formats, plus mask files to be ignored."""
    root = tmp_path / "busi_like"
    formats = [("png", "L"), ("png", "RGB"), ("png", "RGBA"), ("jpg", "RGB")]
    for c, name in enumerate(("benign", "malignant", "normal")):
        for i, (ext, mode) in enumerate(formats):
            write_image(root / name / f"{name} ({i + 1}).{ext}", mode, seed=10 * c + i)
            write_image(root / name / f"{name} ({i + 1})_mask.png", "L", seed=100 + 10 * c + i)
    write_image(root / "benign" / "benign (9)_mask_1.png", "L", seed=999)
    return root


@pytest.fixture
def image_writer():
    """The :func:`write_image` helper (fixtures avoid importing ``conftest`` by name)."""
    return write_image


@pytest.fixture(scope="session")
def busi_dir() -> Path:
    """The real BUSI subset; skips the test when it is absent."""
    found = find_busi_dir()
    if found is None:
        pytest.skip("BUSI data not found (set MONAI_SAM_BUSI_DIR or provide ../shared/data/busi)")
    return found
