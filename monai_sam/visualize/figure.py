"""The figures' common ground: matplotlib on the file-only Agg backend and saving a PNG."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["pyplot", "save_figure", "ticker"]


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def ticker() -> Any:
    """``matplotlib.ticker`` (axis tick locators)."""
    import matplotlib.ticker

    return matplotlib.ticker


def save_figure(fig: Any, path: str | os.PathLike) -> str:
    """Save ``fig`` as a PNG (creating the folder), close it and return the absolute path.

    Args:
        fig: the matplotlib figure.
        path: the PNG file.
    """
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return path
