"""Named per-parameter buffers of a sharpness-aware method (g0 kept for the combination, a momentum, ...).

A method declares each tensor it keeps per parameter once, on its class::

    class GSAM(SharpnessAwareOptimizer):
        clean_grad = ParamBuffer("sam_clean_grad")            # peak: lives within one step

    class LookSAM(SharpnessAwareOptimizer):
        orthogonal = ParamBuffer("looksam_gv", persistent=True)  # kept between steps, checkpointed

and reads it through the optimizer (``self.clean_grad.take()``). The values live in the optimizer's
``method_state[p][key]``, so the key is the buffer's name in checkpoints and never changes: state dicts
saved by earlier versions load as they are. Buffers that are not ``persistent`` are dropped whenever a
step's passes are closed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any, overload

import torch
from torch import Tensor

if TYPE_CHECKING:
    from monai_sam.optimizers.base import SharpnessAwareOptimizer

__all__ = ["BoundBuffer", "ParamBuffer"]


class ParamBuffer:
    """Declaration of one named per-parameter buffer (a class attribute of a method).

    Args:
        key: its name in ``method_state`` and in checkpoints.
        persistent: kept between steps (and checkpointed); otherwise a peak buffer of one step.
    """

    def __init__(self, key: str, *, persistent: bool = False) -> None:
        self.key = key
        self.persistent = persistent

    @overload
    def __get__(self, optimizer: None, owner: type | None = None) -> ParamBuffer: ...

    @overload
    def __get__(self, optimizer: SharpnessAwareOptimizer, owner: type | None = None) -> BoundBuffer: ...

    def __get__(
        self, optimizer: SharpnessAwareOptimizer | None, owner: type | None = None
    ) -> ParamBuffer | BoundBuffer:
        if optimizer is None:
            return self
        return BoundBuffer(self.key, optimizer.method_state, optimizer.param_groups)


class BoundBuffer:
    """One method buffer of one optimizer: a mapping from parameter to tensor, in param-group order.

    Args:
        key: the buffer's key in ``method_state``.
        state: the optimizer's ``method_state``.
        param_groups: the optimizer's param groups (the order of :meth:`take`).
    """

    __slots__ = ("_groups", "_state", "key")

    def __init__(
        self, key: str, state: MutableMapping[Tensor, dict[str, Any]], param_groups: list[dict[str, Any]]
    ) -> None:
        self.key = key
        self._state = state
        self._groups = param_groups

    def __contains__(self, p: Tensor) -> bool:
        return p in self._state and self.key in self._state[p]

    def __getitem__(self, p: Tensor) -> Tensor:
        value: Tensor = self._state[p][self.key]
        return value

    def __setitem__(self, p: Tensor, value: Tensor) -> None:
        self._state[p][self.key] = value

    def get(self, p: Tensor) -> Tensor | None:
        """The buffer of ``p``, or None when it has none."""
        return self[p] if p in self else None

    def of(self, params: Iterable[Tensor]) -> list[Tensor]:
        """The buffers of ``params`` (each must have one)."""
        return [self._state[p][self.key] for p in params]

    def holders(self) -> Iterator[Tensor]:
        """The parameters that hold this buffer, in param-group order."""
        for group in self._groups:
            for p in group["params"]:
                if p in self:
                    yield p

    def stash(self, params: Iterable[Tensor]) -> None:
        """Move the gradients of ``params`` into the buffer (no copy) and clear their ``.grad``."""
        for p in params:
            self._state[p][self.key] = p.grad
            p.grad = None

    def accumulate(self, params: list[Tensor], values: list[Tensor]) -> None:
        """``buffer[p] += value``; a parameter's first value is stored itself (no copy)."""
        new_p, new_v, old_acc, old_v = [], [], [], []
        for p, v in zip(params, values):
            acc = self.get(p)
            if acc is None:
                new_p.append(p)
                new_v.append(v)
            else:
                old_acc.append(acc)
                old_v.append(v)
        for p, v in zip(new_p, new_v):
            self[p] = v
        if old_acc:
            torch._foreach_add_(old_acc, old_v)

    def take(self) -> dict[Tensor, Tensor]:
        """Remove and return every parameter's buffer (identity-keyed, param-group order)."""
        return {p: self._state[p].pop(self.key) for p in list(self.holders())}
