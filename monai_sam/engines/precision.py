"""Mixed precision for the sharpness-aware iteration: autocast on the engine's device, owned GradScaler."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["PrecisionPlan", "default_scaler_device", "parse_dtype"]

_DTYPES = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
}


def parse_dtype(dtype: torch.dtype | str | None, name: str = "amp_dtype") -> torch.dtype | None:
    """``dtype`` as a ``torch.dtype``; names such as ``"bfloat16"`` or ``"torch.float16"`` are accepted."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"`{name}` must be one of {sorted(_DTYPES)} or a torch.dtype, got {dtype!r}.")
    return _DTYPES[key]


def default_scaler_device() -> str:
    """Device type of the GradScaler an iteration creates: ``"cuda"`` if CUDA is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class PrecisionPlan:
    """How one iteration runs its passes: autocast settings and whether the GradScaler is used.

    Attributes:
        device_type: autocast device type, taken from ``engine.state.device`` (MONAI hard-codes ``"cuda"``).
        autocast_kwargs: keyword arguments for ``torch.autocast`` (``dtype``, ``cache_enabled``...),
            empty when autocast is off.
        scaler: the GradScaler to use, or None.
    """

    device_type: str
    autocast_kwargs: dict[str, Any] | None = None
    scaler: torch.amp.GradScaler | None = None
    _context: Callable[[], contextlib.AbstractContextManager] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.autocast_kwargs is None:
            self._context = contextlib.nullcontext
        else:
            kwargs = self.autocast_kwargs
            self._context = lambda: torch.autocast(self.device_type, **kwargs)

    def autocast(self) -> contextlib.AbstractContextManager:
        """A fresh autocast context (a null context when AMP is off)."""
        return self._context()

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of ``loss``, scaled by the GradScaler when one is used."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
