"""``TrueWeightsHandler``: the true weights in the network outside the iterations of a plain MONAI trainer."""

from __future__ import annotations

from typing import Any

from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents

from monai_sam.optimizers.base import SharpnessAwareOptimizer

__all__ = ["TrueWeightsHandler"]


class TrueWeightsHandler:
    """Keep MSAM's true weights ``w`` in the network between iterations of a stock ``SupervisedTrainer``.

    MSAM rests at its momentum-ascent point between optimizer steps. monai-sam's
    ``SharpnessAwareIteration``/``SharpnessAwareTrainer`` already move to ``w`` at the end of every
    iteration; with MONAI's own iteration (``optimizer.step()`` without a closure) attach this handler
    instead: it moves to the ascent point on ITERATION_STARTED and back to ``w`` on MODEL_COMPLETED, so
    ``ValidationHandler``, ``CheckpointSaver`` and every other ITERATION/EPOCH_COMPLETED handler see the
    true weights. Put it first in ``train_handlers`` so that other ITERATION_STARTED handlers see the
    ascent point only after it. For optimizers that restore ``w`` in every step it does nothing.

    Args:
        optimizer: the optimizer to drive; None uses ``engine.optimizer``.

    Example::

        trainer = SupervisedTrainer(..., optimizer=MSAM(net.parameters(), torch.optim.Adam, lr=1e-4),
                                    train_handlers=[TrueWeightsHandler(), ValidationHandler(1, evaluator)])
    """

    def __init__(self, optimizer: Any = None) -> None:
        self.optimizer = optimizer

    def attach(self, engine: Engine) -> None:
        """Register the two moves on ``engine``.

        Args:
            engine: the trainer.
        """
        engine.add_event_handler(Events.ITERATION_STARTED, self.to_perturbed_point)
        engine.add_event_handler(IterationEvents.MODEL_COMPLETED, self.to_true_weights)

    def _optimizer(self, engine: Engine) -> Any:
        return self.optimizer if self.optimizer is not None else getattr(engine, "optimizer", None)

    def to_perturbed_point(self, engine: Engine) -> None:
        """Move to where the coming step's pass must run (MSAM: the momentum-ascent point).

        Args:
            engine: the trainer.
        """
        optimizer = self._optimizer(engine)
        if isinstance(optimizer, SharpnessAwareOptimizer):
            # the step ends at w; this handler moves to the ascent point
            optimizer.set_rest_at_true_weights(True)
            optimizer.move_to_perturbed_point()

    def to_true_weights(self, engine: Engine) -> None:
        """Put the true weights back into the network.

        Args:
            engine: the trainer.
        """
        optimizer = self._optimizer(engine)
        if isinstance(optimizer, SharpnessAwareOptimizer):
            optimizer.move_to_true_weights()
