"""Keep BatchNorm running statistics out of the extra passes of a sharpness-aware step.

The reference (JAX) SAM keeps the BN state of the clean pass and discards the state of the perturbed
passes. :func:`frozen_running_stats` does exactly that by snapshotting the running buffers and copying
them back; :func:`bn_momentum_zero` is the common PyTorch idiom (momentum 0 during the pass), kept for
compatibility: it still increments ``num_batches_tracked``, which matters when ``momentum=None``.
BatchNorm stays in train mode in both: the pass must normalise with batch statistics like the clean one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase

__all__ = ["bn_momentum_zero", "frozen_running_stats", "running_stat_buffers"]

_STAT_NAMES = ("running_mean", "running_var", "num_batches_tracked")


def running_stat_buffers(module: nn.Module) -> list[torch.Tensor]:
    """Every running-statistics buffer of the normalisation layers in ``module`` (BatchNorm, SyncBatchNorm,
    MONAI's norm layers, InstanceNorm with ``track_running_stats``)."""
    buffers = []
    for m in module.modules():
        if isinstance(m, _NormBase):
            for name in _STAT_NAMES:
                buf = getattr(m, name, None)
                if isinstance(buf, torch.Tensor):
                    buffers.append(buf)
    return buffers


@contextmanager
def frozen_running_stats(module: nn.Module) -> Iterator[None]:
    """Context manager: a pass run inside it leaves all running statistics of ``module`` bit-identical.

    Snapshots ``running_mean``, ``running_var`` and ``num_batches_tracked`` on entry and copies them back
    in place on exit (also when the pass raises). Costs one copy of the BN buffers only.

    Args:
        module: any ``nn.Module``; modules without normalisation layers are fine (nothing to do).

    Example::

        with frozen_running_stats(model):
            loss_fn(model(x), y).backward()   # perturbed pass
    """
    buffers = running_stat_buffers(module)
    saved = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in zip(buffers, saved):
                buf.copy_(value)


@contextmanager
def bn_momentum_zero(module: nn.Module) -> Iterator[None]:
    """Context manager: ``momentum = 0`` on every BatchNorm of ``module``, restored on exit.

    The running mean/var stay unchanged, but ``num_batches_tracked`` still increments (which changes the
    cumulative average of layers built with ``momentum=None``); prefer :func:`frozen_running_stats`.
    """
    layers = [m for m in module.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in layers]
    try:
        for m in layers:
            m.momentum = 0.0
        yield
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
