"""Trainer handler: the ``resume`` knob: load a resume checkpoint into the run's objects, with clear errors.

MONAI's ``CheckpointSaver``/``CheckpointLoader`` restore the network, optimizer, schedulers and trainer
counters; :class:`ResumeHandler` loads the same checkpoints (``resume``: a path, ``"auto"`` or empty) and
checks them first, so a wrong file fails with what went wrong before training can overwrite anything. The
random streams and the validation state a bit-exact continuation also needs are
:mod:`monai_sam.handlers.resume_state`.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from torch import nn

__all__ = ["CHECKPOINT_PATTERN", "ResumeHandler", "find_resume_checkpoint"]

logger = logging.getLogger(__name__)


CHECKPOINT_PATTERN = "checkpoint*.pt"
"""File names of the resume checkpoints written by the bundles' epoch-level ``CheckpointSaver``."""


def find_resume_checkpoint(
    resume: str | os.PathLike[str] | None, output_dir: str | os.PathLike[str]
) -> str | None:
    """The checkpoint file the ``resume`` knob points to, or None to start fresh.

    Args:
        resume: ``""``/None (start fresh), ``"auto"`` (the newest ``checkpoint*.pt`` in ``output_dir``,
            or a fresh start when there is none: convenient for preemptible jobs), or a file path.
        output_dir: the run's output folder.

    Raises:
        FileNotFoundError: ``resume`` names a file that does not exist.
    """
    if not resume:
        return None
    if str(resume).lower() == "auto":
        found = glob.glob(os.path.join(os.fspath(output_dir), CHECKPOINT_PATTERN))
        if not found:
            logger.info(f"resume='auto': no {CHECKPOINT_PATTERN} in {output_dir!r}, starting a fresh run")
            return None
        return max(found, key=lambda path: (os.path.getmtime(path), path))
    path = os.fspath(resume)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"resume {path!r} does not exist: pass a checkpoint*.pt written by a previous run (output_dir), "
            "'auto' for the newest one in output_dir, or '' to start fresh"
        )
    return path


class ResumeHandler:
    """Trainer handler: on STARTED, load a resume checkpoint into the run's objects, or do nothing.

    Like MONAI's ``CheckpointLoader`` (``weights_only=True`` loading, ``max_epochs`` of this run kept),
    with clear errors: a missing file, a checkpoint lacking an object, a network of another shape, or a
    checkpoint already past ``max_epochs``.

    Args:
        resume: ``""`` (off), ``"auto"`` (newest ``checkpoint*.pt`` in ``output_dir``, if any) or a path.
        output_dir: the run's output folder (for ``"auto"``).
        load_dict: the objects to restore, by the names used when saving (``model`` must be a module).
        map_location: ``torch.load`` map location (e.g. the run's device).
    """

    def __init__(
        self,
        resume: str | os.PathLike[str] | None,
        output_dir: str | os.PathLike[str],
        load_dict: Mapping[str, Any],
        map_location: Any = "cpu",
    ) -> None:
        self.path = find_resume_checkpoint(resume, output_dir)
        self.load_dict = {k: v for k, v in load_dict.items() if v is not None}
        self.map_location = map_location

    def attach(self, engine: Engine) -> None:
        """Check the checkpoint now (before training can overwrite anything), load it on STARTED.

        Nothing is attached when there is nothing to resume.
        """
        if self.path is None:
            return
        self._checkpoint = self._checked_checkpoint(self.path, engine.state.max_epochs)
        engine.add_event_handler(Events.STARTED, self)

    def _checked_checkpoint(self, path: str, max_epochs: int | None) -> dict[str, Any]:
        """Load ``path`` and check it holds every object, networks of the right shapes, epochs to go."""
        checkpoint: dict[str, Any] = torch.load(path, map_location=self.map_location, weights_only=True)
        missing = sorted(set(self.load_dict) - set(checkpoint))
        if missing:
            raise ValueError(
                f"resume checkpoint {self.path!r} lacks {missing} (it has {sorted(checkpoint)}): resume from "
                "a checkpoint*.pt of a training run, not from model.pt"
            )
        for name, module in self.load_dict.items():
            if isinstance(module, nn.Module):
                _check_state_fits(path, name, module, checkpoint[name])
        epoch = _checkpoint_epoch(checkpoint.get("trainer", {}))
        if max_epochs is not None and epoch > max_epochs:
            raise ValueError(
                f"resume checkpoint {self.path!r} is at epoch {epoch}, past max_epochs {max_epochs}: raise "
                "--max_epochs to train further"
            )
        saved_max = checkpoint.get("trainer", {}).get("max_epochs")
        if saved_max is not None and max_epochs is not None and saved_max != max_epochs:
            logger.warning(
                f"resume checkpoint {self.path!r} comes from a run with max_epochs={saved_max}, this run has "
                f"max_epochs={max_epochs}: the restored LR schedule keeps the checkpoint's horizon; "
                "to continue a run exactly, resume with its max_epochs (stop runs early with stop_epoch)."
            )
        return checkpoint

    def __call__(self, engine: Engine) -> None:
        """Restore every object of ``load_dict``; keep this run's ``max_epochs``."""
        max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load=self.load_dict, checkpoint=self._checkpoint, strict=True)
        engine.state.max_epochs = max_epochs
        self._checkpoint = {}  # free the memory
        engine.logger.info(
            f"Resumed from {self.path} at epoch {engine.state.epoch}, iteration {engine.state.iteration}"
        )
        if max_epochs is not None and engine.state.epoch >= max_epochs:
            logger.warning(
                f"resume checkpoint {self.path!r} is at max_epochs {max_epochs}: nothing left to train"
            )


def _checkpoint_epoch(trainer_state: Mapping[str, Any]) -> int:
    """The epoch an ignite ``Engine.state_dict()`` is at (it stores the iteration and epoch length)."""
    if "epoch" in trainer_state:
        return int(trainer_state["epoch"])
    length = trainer_state.get("epoch_length") or 0
    return int(trainer_state.get("iteration", 0)) // length if length else 0


def _check_state_fits(path: str, name: str, module: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Raise a ValueError naming the first tensor whose name or shape differs from ``module``'s."""
    own = module.state_dict()
    problems = [f"missing {k!r}" for k in own if k not in state]
    problems += [f"unexpected {k!r}" for k in state if k not in own]
    problems += [
        f"{k!r} has shape {tuple(state[k].shape)} in the checkpoint, {tuple(v.shape)} in the network"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if problems:
        shown = "; ".join(problems[:3]) + (
            f"; ... ({len(problems)} differences)" if len(problems) > 3 else ""
        )
        raise ValueError(
            f"resume checkpoint {path!r} does not fit the configured network ({name!r}): {shown}. Use the "
            "training run's network, num_classes, image_size and in_channels."
        )
