"""What MONAI's checkpoints leave out for an exact resume: random streams and validation state.

MONAI's ``CheckpointSaver``/``CheckpointLoader`` restore the network, optimizer, schedulers and trainer
counters, but not the random streams (data shuffling, augmentation) nor the evaluator's best metric,
early-stopping counter and best-model file list. :class:`RandomStreams` and :class:`ValidationState`
are ``state_dict`` objects for the ``save_dict`` that close those gaps.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from torch import nn

__all__ = ["RandomStreams", "ValidationState"]


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


def _numpy_state_to_tensors(state: Any) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}  # fmt: skip


def _numpy_state_from_tensors(state: Mapping[str, Any]) -> tuple[Any, ...]:
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
        metrics_writer: :class:`~monai_sam.handlers.MetricsJSONWriter` (optional).
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
        # MONAI's evaluators keep these on ignite's State, which does not declare them
        self.evaluator.state.best_metric = state_dict["best_metric"]  # type: ignore[attr-defined]
        self.evaluator.state.best_metric_epoch = state_dict["best_metric_epoch"]  # type: ignore[attr-defined]
        for name, part in self._parts().items():
            if part is not None and name in state_dict:
                part.load_state_dict(state_dict[name])
