"""Trainer handler: when training completes, evaluate the best checkpoint on the test split."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedEvaluator

from monai_sam.networks.checkpoint import load_network_checkpoint

__all__ = ["TestAfterTraining"]


class TestAfterTraining:
    """Trainer handler: when training completes, evaluate the best checkpoint on the test split.

    The evaluator must have its own network (a copy: the trained network is left as it is); the checkpoint
    is loaded into it first, and the random streams (Python, numpy, torch CPU) are left as they were.
    Nothing runs under torchrun (use ``evaluate.json``), when ``enabled`` is false, the test split is empty
    or the checkpoint does not exist (a run stopped before its first validation).

    Args:
        evaluator: the test evaluator (its handlers write the metrics, predictions and plots).
        ckpt_path: the checkpoint to evaluate (``model.pt``).
        enabled: the ``test_at_end`` knob.
    """

    __test__ = False  # not a pytest class

    def __init__(
        self, evaluator: SupervisedEvaluator, ckpt_path: str | os.PathLike[str], enabled: bool = True
    ) -> None:
        self.evaluator = evaluator
        self.ckpt_path = os.fspath(ckpt_path)
        self.enabled = bool(enabled)

    def attach(self, engine: Engine) -> None:
        """Run on ``engine``'s COMPLETED event."""
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine | None = None) -> bool:
        """Evaluate; returns whether the evaluation ran."""
        loader: Any = self.evaluator.data_loader  # the bundle's DataLoader (MONAI types it as any iterable)
        if not self.enabled or not os.path.isfile(self.ckpt_path) or len(loader.dataset) == 0:
            return False
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # the metrics gather across ranks, and the test evaluation runs on rank 0 only: skip it under
            # torchrun (evaluate.json evaluates the split afterwards)
            print(
                "test_at_end skipped in a torchrun run: evaluate model.pt with configs/evaluate.json",
                flush=True,
            )
            return False
        load_network_checkpoint(self.evaluator.network, self.ckpt_path)
        # the evaluation must not move the random streams: a checkpoint saved after it (checkpoint_final.pt
        # of a run ended by stop_epoch) would resume differently (a DataLoader draws its seed from torch)
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            self.evaluator.run()
        random.setstate(py_state)
        np.random.set_state(np_state)
        return True
