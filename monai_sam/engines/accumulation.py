"""Gradient accumulation windows (MONAI's rule) and a gradient buffer kept apart from ``.grad``."""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["GradientBuffer", "accumulation_window", "optimizer_steps"]


def accumulation_window(iteration: int, epoch_length: int | None, steps: int) -> tuple[bool, bool]:
    """``(starts_window, ends_window)`` for the 1-based ``iteration``, exactly as MONAI 1.6's ``_iteration``.

    Windows restart every epoch when ``epoch_length`` is known, and the last window of an epoch is
    flushed (stepped) even when it holds fewer than ``steps`` micro-batches.
    """
    if steps == 1:
        return True, True
    if epoch_length is not None:
        local = (iteration - 1) % epoch_length
        return local % steps == 0, (local + 1) % steps == 0 or local + 1 == epoch_length
    local = iteration - 1
    return local % steps == 0, (local + 1) % steps == 0


def optimizer_steps(max_epochs: int, epoch_length: int, steps: int) -> int:
    """Optimizer steps of a run under :func:`accumulation_window` (each epoch flushes its last window)."""
    return max_epochs * -(-epoch_length // steps)


class GradientBuffer:
    """Sums per-micro-batch final gradients outside ``.grad``, so every micro-batch's passes start clean.

    Tensors are allocated on the first contribution of a window (a clone of that gradient) and handed
    over to ``.grad`` by :meth:`write_to_grads`, so no copy is made at the end of a window.
    """

    def __init__(self) -> None:
        self._sums: dict[torch.Tensor, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._sums)

    def add_grads(self, params: Iterable[torch.Tensor]) -> None:
        """Add the current ``.grad`` of ``params`` (None counts as zero) to the buffer."""
        existing_sums, existing_grads = [], []
        for p in params:
            if p.grad is None:
                continue
            total = self._sums.get(p)
            if total is None:
                self._sums[p] = p.grad.detach().clone()
            else:
                existing_sums.append(total)
                existing_grads.append(p.grad)
        if existing_sums:
            torch._foreach_add_(existing_sums, existing_grads)

    def write_to_grads(self, params: Iterable[torch.Tensor]) -> None:
        """Move the sums into ``.grad`` (None where no gradient came in the window); empties the buffer."""
        for p in params:
            p.grad = self._sums.pop(p, None)
        self._sums.clear()
