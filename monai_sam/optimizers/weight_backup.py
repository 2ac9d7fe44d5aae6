"""The copy of the true weights ``w`` that a sharpness-aware step restores bit for bit.

A step moves the weights to perturbed points and back. Moving back by subtracting the perturbation is
not exact in floating point, so ``w`` is copied before the first move and copied back after the last
pass. The copies live in buffers allocated once per parameter and reused every step (MSAM also keeps
its true weights there between steps); they hold no training state and are never checkpointed.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from monai_sam.optimizers.ascent import move_to_offset_, restore_

__all__ = ["WeightBackup"]


class WeightBackup:
    """This step's copy of the weights that were moved, in persistent per-parameter buffers.

    Attributes:
        workspace: the persistent buffer of every parameter ever backed up.
        saved: the parameters backed up in the current step, each with its buffer (insertion order).
    """

    def __init__(self) -> None:
        self.workspace: dict[Tensor, Tensor] = {}
        self.saved: dict[Tensor, Tensor] = {}

    def buffer(self, p: Tensor) -> Tensor:
        """The persistent buffer of ``p`` (re-allocated only if ``p`` changed dtype, device or shape)."""
        buffer = self.workspace.get(p)
        if buffer is None or buffer.dtype != p.dtype or buffer.device != p.device or buffer.shape != p.shape:
            buffer = torch.empty_like(p, memory_format=torch.preserve_format)
            self.workspace[p] = buffer
        return buffer

    def save(self, params: list[Tensor]) -> None:
        """Copy the current values of ``params`` into their buffers."""
        if not params:
            return
        buffers = [self.buffer(p) for p in params]
        torch._foreach_copy_(buffers, params)
        self.saved.update(zip(params, buffers))

    def holds(self, p: Tensor) -> bool:
        """Whether ``p`` was backed up in the current step."""
        return p in self.saved

    def of(self, params: Iterable[Tensor]) -> list[Tensor]:
        """The saved values of ``params`` (each must have been backed up in this step)."""
        return [self.saved[p] for p in params]

    def move_to_plus(self, params: list[Tensor], offsets: list[Tensor], alpha: float = 1.0) -> None:
        """``w <- backup + alpha * offset`` (never by subtracting from the current point)."""
        move_to_offset_(params, self.of(params), offsets, alpha)

    def rewind(self) -> None:
        """Copy the saved values back into the parameters; the backups stay for the rest of the step."""
        restore_(list(self.saved), list(self.saved.values()))

    def restore(self) -> None:
        """Copy back every weight backed up in this step and forget the step's backups."""
        self.rewind()
        self.saved = {}
