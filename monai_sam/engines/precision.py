"""Mixed precision for the sharpness-aware iteration: MONAI's ``amp`` on CUDA, an opt-in CPU autocast, an
owned GradScaler.

MONAI's ``SupervisedTrainer`` opens ``torch.autocast("cuda", **amp_kwargs)`` when ``amp=True``: on a CUDA
device that autocasts (fp16 by default), on any other device it does nothing, so ``amp=True`` trains a CPU
model in fp32. The iteration keeps exactly that meaning; CPU autocast is asked for by name
(``cpu_autocast_dtype``), never implied by ``amp``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["PrecisionPlan", "autocast_settings", "default_scaler_device", "parse_dtype"]

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


def autocast_settings(
    device_type: str,
    amp: bool,
    amp_kwargs: dict[str, Any] | None,
    amp_dtype: torch.dtype | None,
    cpu_autocast_dtype: torch.dtype | None,
) -> dict[str, Any] | None:
    """``torch.autocast`` keyword arguments for the passes on ``device_type``, or None for no autocast.

    Args:
        device_type: the engine's device type (``"cuda"``, ``"cpu"``, ...).
        amp: MONAI's ``amp``: autocast on CUDA only, as ``SupervisedTrainer`` does.
        amp_kwargs: MONAI's ``amp_kwargs`` (``dtype``, ``cache_enabled``...), used on CUDA.
        amp_dtype: overrides ``amp_kwargs["dtype"]`` on CUDA.
        cpu_autocast_dtype: the opt-in CPU autocast dtype; None keeps a CPU model in fp32.
    """
    if device_type == "cuda":
        if not amp:
            return None
        kwargs = dict(amp_kwargs or {})
        if amp_dtype is not None:
            kwargs["dtype"] = amp_dtype
        return kwargs
    if device_type == "cpu" and cpu_autocast_dtype is not None:
        return {"dtype": cpu_autocast_dtype}
    return None


def default_scaler_device() -> str:
    """Device type of the GradScaler an iteration creates: ``"cuda"`` if CUDA is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class PrecisionPlan:
    """How one iteration runs its passes: autocast settings and whether the GradScaler is used.

    Attributes:
        device_type: the engine's device type (``engine.state.device``).
        autocast_kwargs: keyword arguments for ``torch.autocast`` (``dtype``, ``cache_enabled``...),
            None when the passes do not autocast.
        scaler: the GradScaler to use, or None.
    """

    device_type: str
    autocast_kwargs: dict[str, Any] | None = None
    scaler: torch.amp.GradScaler | None = None
    _context: Callable[[], contextlib.AbstractContextManager[Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.autocast_kwargs is None:
            self._context = contextlib.nullcontext
        else:
            kwargs = self.autocast_kwargs
            self._context = lambda: torch.autocast(self.device_type, **kwargs)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """A fresh autocast context (a null context when AMP is off)."""
        return self._context()

    def describe(self) -> str:
        """The precision in words, for messages (``"under bfloat16 autocast on cpu"``)."""
        if self.autocast_kwargs is None or self.autocast_kwargs.get("enabled") is False:
            text = "without autocast (fp32 or the model's own dtype)"
        else:
            dtype = self.autocast_kwargs.get("dtype") or torch.get_autocast_dtype(self.device_type)
            text = f"under {str(dtype).removeprefix('torch.')} autocast on {self.device_type}"
        return text + (" with a GradScaler" if self.scaler is not None else "")

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of ``loss``, scaled by the GradScaler when one is used."""
        scaled = self.scaler.scale(loss) if self.scaler is not None else loss
        scaled.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
