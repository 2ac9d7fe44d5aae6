"""Small generated image files for the data tests (a module, so test files can import it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, mode: str = "L", size: tuple[int, int] = (48, 64), seed: int = 0) -> Path:
    """Write a random textured image of ``size`` (W, H) in ``mode``; the format follows the extension."""
    rng = np.random.default_rng(seed)
    width, height = size
    gray = rng.integers(0, 256, (height, width), dtype=np.uint8)
    img = Image.fromarray(gray, "L")
    if mode != "L":
        img = img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
