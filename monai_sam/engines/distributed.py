"""DistributedDataParallel helpers for multi-pass iterations: ``no_sync`` scopes and gradient averaging."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

__all__ = ["all_reduce_mean", "average_gradients", "find_ddp", "no_sync"]


def find_ddp(network: torch.nn.Module) -> DistributedDataParallel | None:
    """The ``DistributedDataParallel`` module behind ``network`` (also under ``torch.compile``), or None."""
    module = getattr(network, "_orig_mod", network)
    return module if isinstance(module, DistributedDataParallel) else None


def no_sync(ddp: DistributedDataParallel | None, local: bool) -> contextlib.AbstractContextManager[Any]:
    """``ddp.no_sync()`` when ``local`` (wrap the forward AND the backward in it), else a null context."""
    return ddp.no_sync() if (ddp is not None and local) else contextlib.nullcontext()


def all_reduce_mean(value: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
    """Mean of a tensor over the ranks of ``group`` (returns a new tensor)."""
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out.div_(dist.get_world_size(group))


def average_gradients(params: Sequence[torch.Tensor], group: dist.ProcessGroup | None) -> None:
    """Replace every ``.grad`` by its mean over the ranks of ``group``, one collective per dtype.

    A rank without a gradient for a parameter contributes zeros; a parameter that has no gradient
    on any rank keeps ``grad=None`` (so the base optimizer skips it, as in a single process).
    Every rank must pass the same parameters in the same order (true for a DDP module's parameters).
    """
    world = dist.get_world_size(group)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in params:
        by_dtype.setdefault(p.dtype, []).append(p)
    for dtype in sorted(by_dtype, key=str):
        group_params = by_dtype[dtype]
        device = group_params[0].device
        pieces = [
            p.grad.detach().reshape(-1)
            if p.grad is not None
            else torch.zeros(p.numel(), dtype=dtype, device=device)
            for p in group_params
        ]
        flags = torch.tensor([p.grad is not None for p in group_params], dtype=dtype, device=device)
        flat = torch.cat([*pieces, flags])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
        flat.div_(world)
        present = (flat[-len(group_params) :] > 0).tolist()
        offset = 0
        for p, has_grad in zip(group_params, present):
            chunk = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
            if not has_grad:
                continue
            if p.grad is None:
                p.grad = chunk.clone()
            else:
                p.grad.copy_(chunk)
