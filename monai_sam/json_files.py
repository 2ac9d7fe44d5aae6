"""Atomic JSON files: a result file is either the old one or the complete new one, never half written."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["json_ready", "write_json"]


def json_ready(value: Any) -> Any:
    """A strict-JSON copy of ``value``: numpy/torch scalars to numbers, NaN/inf to ``None``.

    Args:
        value: a scalar, or mappings and sequences of them (nested).
    """
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(
    path: str | os.PathLike,
    content: Any,
    *,
    nan_as_null: bool = True,
    indent: int = 2,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Write ``content`` to ``path`` atomically, creating the folder.

    The JSON goes to a unique temporary file in the same folder, then ``os.replace`` puts it in place, so a
    crash never leaves half a file (the temporary is removed on failure).

    Args:
        path: the JSON file.
        content: what to write.
        nan_as_null: convert NaN/inf to ``null`` and numpy/torch scalars to numbers (strict JSON); False
            keeps Python's ``NaN`` tokens, which ``json.load`` reads back as floats.
        indent: JSON indentation.
        default: ``json.dump``'s fallback for values it cannot serialise (e.g. ``str``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json_ready(content) if nan_as_null else content
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=indent, default=default)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
