"""Process-group set-up for ``torchrun`` bundle runs: NCCL on GPUs, Gloo on CPUs."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from monai.handlers import CheckpointSaver, MetricLogger, MetricsSaver, StatsHandler, TensorBoardStatsHandler

from monai_sam.handlers import (
    ClassificationPlots,
    EpochProgressBar,
    MetricsJSONWriter,
    PredictionWriter,
    TestAfterTraining,
    TrainingCurves,
)

#: Handlers that only write logs or files: on ranks other than 0 they would duplicate or race.
OUTPUT_HANDLERS: tuple[type, ...] = (
    CheckpointSaver,
    ClassificationPlots,
    EpochProgressBar,
    MetricLogger,
    MetricsJSONWriter,
    MetricsSaver,
    PredictionWriter,
    StatsHandler,
    TensorBoardStatsHandler,
    TestAfterTraining,
    TrainingCurves,
)

__all__ = [
    "OUTPUT_HANDLERS",
    "close_distributed",
    "init_distributed",
    "is_main_process",
    "main_process_first",
    "rank_handlers",
]


def init_distributed(backend: str | None = None) -> torch.device:
    """Join the ``torchrun`` process group (once) and return this rank's device.

    Args:
        backend: ``"nccl"``, ``"gloo"`` or None: NCCL when CUDA is available, else Gloo (CPU runs).

    Returns:
        ``cuda:<LOCAL_RANK>`` (made the current CUDA device) or ``cpu``.

    Raises:
        RuntimeError: not launched by ``torchrun`` (no ``RANK``/``WORLD_SIZE`` in the environment).
    """
    if not dist.is_initialized():
        if "WORLD_SIZE" not in os.environ:
            raise RuntimeError(
                "multi_gpu_train.json must be launched with torchrun, e.g. torchrun --standalone "
                "--nproc_per_node=2 -m monai.bundle run --config_file \"['configs/train.json',"
                "'configs/multi_gpu_train.json']\""
            )
        dist.init_process_group(backend=backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    if torch.cuda.is_available():
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def is_main_process() -> bool:
    """True on rank 0, and in runs without a process group."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def main_process_first(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` on rank 0 first, then (after a barrier) on the other ranks.

    For set-up that writes shared files (the phantom, the split files): rank 0 creates them, the other
    ranks then find and reuse them. Without a process group this is a plain call.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return fn(*args, **kwargs)
    result = fn(*args, **kwargs) if dist.get_rank() == 0 else None
    dist.barrier()
    if dist.get_rank() != 0:
        result = fn(*args, **kwargs)
    dist.barrier()
    return result


def close_distributed() -> None:
    """End a torchrun run: wait for every rank, then destroy the process group (no-op without one).

    Rank 0 does more at the end (summaries, plots, files) than the others. Without the barrier a rank that
    finished first tears down its Gloo connections while rank 0 still holds them, which can abort the
    process ("terminate called without an active exception") after a successful run.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rank_handlers(handlers: list[Any]) -> list[Any]:
    """The handlers this rank should attach: all on rank 0, only the control handlers elsewhere.

    Handlers in :data:`OUTPUT_HANDLERS` (logging, TensorBoard, checkpoints, metrics files, progress bars)
    run on rank 0 only; everything else (LR and rho schedules, validation, early stopping, unknown
    handlers) runs on every rank, since all ranks must take the same training decisions.
    """
    handlers = [h for h in handlers if h is not None]
    if is_main_process():
        return handlers
    return [h for h in handlers if not isinstance(h, OUTPUT_HANDLERS)]
