"""Trainer handler: the ``stop_epoch`` knob: end a run early as if interrupted, to resume it later."""

from __future__ import annotations

from ignite.engine import Engine, Events

__all__ = ["StopAtEpoch"]


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
