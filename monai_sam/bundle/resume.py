"""Resuming a bundle training run exactly: the ``resume`` knob, random state and validation state.

MONAI's ``CheckpointSaver``/``CheckpointLoader`` restore the network, optimizer, schedulers and trainer
counters, but not the random streams (data shuffling, augmentation) nor the evaluator's best metric,
early-stopping counter and best-model file list. :class:`RandomStreams` and :class:`ValidationState`
are ``state_dict`` objects for the ``save_dict`` that close those gaps, and :class:`ResumeHandler`
loads a checkpoint (``resume``: a path, ``"auto"`` or empty) with errors that say what went wrong.
"""

from __future__ import annotations

import glob
import logging
import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from torch import nn

__all__ = ["RandomStreams", "ResumeHandler", "StopAtEpoch", "ValidationState", "find_resume_checkpoint"]

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = "checkpoint*.pt"
"""File names of the resume checkpoints written by the bundles' epoch-level ``CheckpointSaver``."""


def find_resume_checkpoint(resume: str | os.PathLike | None, output_dir: str | os.PathLike) -> str | None:
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


def _random_states(root: Any) -> list[np.random.RandomState]:
    """Every ``RandomState`` reachable from ``root`` (MONAI randomizable transforms keep theirs in ``R``)."""
    found: list[np.random.RandomState] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if (
            id(obj) in seen
            or obj is None
            or isinstance(obj, (str, bytes, int, float, torch.Tensor, np.ndarray))
        ):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.random.RandomState):
            found.append(obj)
        elif isinstance(obj, Mapping):
            stack.extend(reversed(list(obj.values())))
        elif isinstance(obj, (list, tuple)):
            stack.extend(reversed(obj))
        elif hasattr(obj, "__dict__") and not isinstance(obj, (nn.Module, type)):
            stack.extend(reversed([v for k, v in vars(obj).items() if k not in ("data", "_cache")]))
    return found


def _numpy_state_to_tensors(state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}  # fmt: skip


def _numpy_state_from_tensors(state: Mapping[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]


class RandomStreams:
    """The random streams of a training run as a ``state_dict`` object for a ``save_dict``.

    Holds the global torch (CPU), NumPy and Python generators and the ``RandomState`` of every MONAI
    randomizable transform reachable from ``sources`` (e.g. the training dataset), so a resumed run
    shuffles and augments exactly like the uninterrupted one. Everything is stored as tensors and plain
    values, so MONAI's ``CheckpointLoader`` (``torch.load(weights_only=True)``) reads it. CUDA generators
    are not saved (GPU kernels are not bitwise reproducible anyway).

    Args:
        sources: an object or list of objects holding randomizable transforms (datasets, transforms).
    """

    def __init__(self, sources: Any = None) -> None:
        self.sources = sources

    def state_dict(self) -> dict[str, Any]:
        """The current state of every stream."""
        version, internal, gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state_to_tensors(np.random.get_state()),
            "python": {
                "version": version,
                "state": torch.tensor(internal, dtype=torch.int64),
                "gauss": gauss,
            },
            "transforms": [_numpy_state_to_tensors(r.get_state()) for r in _random_states(self.sources)],
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the streams saved by :meth:`state_dict`.

        Raises:
            ValueError: the checkpoint has another number of randomizable transforms (another pipeline).
        """
        transforms = _random_states(self.sources)
        saved = state_dict["transforms"]
        if len(saved) != len(transforms):
            raise ValueError(
                f"the checkpoint's random state covers {len(saved)} random transforms, this run has "
                f"{len(transforms)}: resume with the training run's preprocessing"
            )
        torch.set_rng_state(state_dict["torch"])
        np.random.set_state(_numpy_state_from_tensors(state_dict["numpy"]))
        python = state_dict["python"]
        random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss"]))
        for generator, state in zip(transforms, saved):
            generator.set_state(_numpy_state_from_tensors(state))


class ValidationState:
    """What validation remembers across epochs, as a ``state_dict`` object for a ``save_dict``.

    The evaluator's best metric and its epoch, the early-stopping counter and best score, the best-model
    saver's list of saved files and the metrics JSON writer's history: without them a resumed run would
    overwrite ``model.pt`` with its first, possibly worse, validation and restart the patience.

    Args:
        evaluator: the validation engine (``best_metric``, ``best_metric_epoch`` in its state).
        early_stop: MONAI ``EarlyStopHandler`` (optional).
        best_saver: MONAI ``CheckpointSaver`` with ``save_key_metric=True`` (optional).
        metrics_writer: :class:`~monai_sam.bundle.MetricsJSONWriter` (optional).
    """

    def __init__(
        self, evaluator: Engine, early_stop: Any = None, best_saver: Any = None, metrics_writer: Any = None
    ) -> None:
        self.evaluator = evaluator
        self.early_stop = early_stop
        self.best_saver = best_saver
        self.metrics_writer = metrics_writer

    def _parts(self) -> dict[str, Any]:
        early = getattr(self.early_stop, "_handler", None)  # ignite EarlyStopping, set by set_trainer
        saver = getattr(self.best_saver, "_key_metric_checkpoint", None)
        return {"early_stop": early, "best_saver": saver, "metrics_writer": self.metrics_writer}

    def state_dict(self) -> dict[str, Any]:
        """Best metric, early stopping, best-model files and metrics history."""
        state = self.evaluator.state
        out: dict[str, Any] = {
            "best_metric": float(getattr(state, "best_metric", -1.0)),
            "best_metric_epoch": int(getattr(state, "best_metric_epoch", -1)),
        }
        out.update({name: part.state_dict() for name, part in self._parts().items() if part is not None})
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (parts this run lacks are skipped)."""
        self.evaluator.state.best_metric = state_dict["best_metric"]
        self.evaluator.state.best_metric_epoch = state_dict["best_metric_epoch"]
        for name, part in self._parts().items():
            if part is not None and name in state_dict:
                part.load_state_dict(state_dict[name])


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
        resume: str | os.PathLike | None,
        output_dir: str | os.PathLike,
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
        self._checkpoint = self._checked_checkpoint(engine.state.max_epochs)
        engine.add_event_handler(Events.STARTED, self)

    def _checked_checkpoint(self, max_epochs: int | None) -> dict[str, Any]:
        """Load the file and check it holds every object, networks of the right shapes, epochs to go."""
        checkpoint = torch.load(self.path, map_location=self.map_location, weights_only=True)
        missing = sorted(set(self.load_dict) - set(checkpoint))
        if missing:
            raise ValueError(
                f"resume checkpoint {self.path!r} lacks {missing} (it has {sorted(checkpoint)}): resume from "
                "a checkpoint*.pt of a training run, not from model.pt"
            )
        for name, module in self.load_dict.items():
            if isinstance(module, nn.Module):
                _check_state_fits(self.path, name, module, checkpoint[name])
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


class StopAtEpoch:
    """Trainer handler: end the run after epoch ``epoch`` as if interrupted (0 or None: never).

    For time-limited jobs: ``--max_epochs 100 --stop_epoch 10`` trains the first 10 epochs of the 100-epoch
    schedule; ``--resume auto`` then continues it exactly. Attach it after the epoch ``CheckpointSaver``.

    Args:
        epoch: the last epoch to run.
    """

    def __init__(self, epoch: int | None) -> None:
        if epoch is not None and (int(epoch) != epoch or epoch < 0):
            raise ValueError(f"stop_epoch must be an integer >= 0 (0: never), got {epoch!r}")
        self.epoch = int(epoch or 0)

    def attach(self, engine: Engine) -> None:
        """Terminate ``engine`` at the end of epoch ``epoch``."""
        if self.epoch:
            engine.add_event_handler(Events.EPOCH_COMPLETED(once=self.epoch), self)

    def __call__(self, engine: Engine) -> None:
        """Stop the run (COMPLETED still fires: the final checkpoint is written)."""
        engine.logger.info(f"stop_epoch={self.epoch}: stopping; continue with --resume auto")
        engine.terminate()
