"""Snapshot and bit-exact restore of everything a measurement may touch on a model."""

from __future__ import annotations

from types import TracebackType

import torch
from torch import nn


class ModelStateGuard:
    """Context manager that restores a model exactly as it was on entry.

    Saved on entry and copied back on exit (also after an exception): every parameter's values and
    ``requires_grad`` flag, every buffer (BatchNorm running statistics and ``num_batches_tracked``),
    each submodule's ``training`` flag, and the CPU and CUDA random-number states. Values are restored
    by ``copy_`` from clones, never by subtracting a perturbation, so the result is bit-exact.

    Args:
        model: the network to protect.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> ModelStateGuard:
        self._params = [(p, p.detach().clone(), p.requires_grad) for p in self.model.parameters()]
        self._buffers = [(b, b.detach().clone()) for b in self.model.buffers()]
        self._training = [(m, m.training) for m in self.model.modules()]
        self._cpu_rng = torch.get_rng_state()
        self._cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with torch.no_grad():
            for param, saved, requires_grad in self._params:
                param.copy_(saved)
                param.requires_grad_(requires_grad)
            for buffer, saved in self._buffers:
                buffer.copy_(saved)
        for module, training in self._training:
            module.training = training
        torch.set_rng_state(self._cpu_rng)
        if self._cuda_rng is not None:
            torch.cuda.set_rng_state_all(self._cuda_rng)
