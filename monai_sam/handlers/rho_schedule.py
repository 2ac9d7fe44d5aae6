"""``RhoScheduleHandler``: steps a rho schedule (GSAM's rho-follows-LR, or any callable) in MONAI engines."""

from __future__ import annotations

import logging
from typing import Any

from ignite.engine import Engine, Events

__all__ = ["RhoScheduleHandler"]


class RhoScheduleHandler:
    """Update the ``rho`` of the engine optimizer's param groups once per iteration (or epoch).

    Two kinds of schedule are accepted:

    * an object with ``step()`` such as :class:`monai_sam.optimizers.GSAMRhoScheduler` (rho from the
      current learning rate). Attach this handler AFTER ``LrScheduleHandler`` (list it later in
      ``train_handlers``) so rho follows the learning rate of the next iteration;
    * a callable ``schedule(count) -> rho`` of the completed iteration (or epoch) count, e.g.
      ``lambda it: 0.05 * min(1.0, it / 1000)`` for a warm-up. It is also applied on ``STARTED``, so
      the first iteration and resumed runs use ``schedule(current count)``.

    Args:
        schedule: the rho scheduler object or callable described above.
        epoch_level: step on ``EPOCH_COMPLETED`` instead of ``ITERATION_COMPLETED``.
        name: logger name; None uses ``engine.logger``.
        print_rho: log the new rho value (mean over param groups) after each update.

    Example::

        lr_handler = LrScheduleHandler(LinearLR(opt, 1.0, 0.01, total_iters=1000), epoch_level=False)
        rho_handler = RhoScheduleHandler(GSAMRhoScheduler(opt, rho_min=0.02), epoch_level=False)
        trainer = SharpnessAwareTrainer(..., train_handlers=[lr_handler, rho_handler])
    """

    def __init__(
        self,
        schedule: Any,
        epoch_level: bool = False,
        name: str | None = None,
        print_rho: bool = False,
    ) -> None:
        if not (hasattr(schedule, "step") or callable(schedule)):
            raise TypeError(f"`schedule` must have a step() method or be callable, got {schedule!r}.")
        self.schedule = schedule
        self.epoch_level = epoch_level
        self.print_rho = print_rho
        self.logger = logging.getLogger(name)
        self._name = name
        self._warned = False

    def attach(self, engine: Engine) -> None:
        """Register the update on ``engine`` (STARTED for callables, then every iteration or epoch)."""
        if self._name is None:
            self.logger = engine.logger
        engine.add_event_handler(
            Events.EPOCH_COMPLETED if self.epoch_level else Events.ITERATION_COMPLETED, self
        )
        if not hasattr(self.schedule, "step"):
            engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        """Apply the schedule once."""
        groups = self._groups(engine)
        if not groups:
            return
        if hasattr(self.schedule, "step"):
            self.schedule.step()
        else:
            count = engine.state.epoch if self.epoch_level else engine.state.iteration
            value = float(self.schedule(count))
            if value < 0:
                raise ValueError(
                    f"RhoScheduleHandler: the schedule returned rho={value} < 0 at count {count}."
                )
            for group in groups:
                group["rho"] = value
        if self.print_rho:
            rhos = [group["rho"] for group in groups]
            self.logger.info(f"Current rho: {sum(rhos) / len(rhos)}")

    def _groups(self, engine: Engine) -> list[dict[str, Any]]:
        optimizer = getattr(engine, "optimizer", None)
        groups = [g for g in getattr(optimizer, "param_groups", []) if "rho" in g]
        if not groups and not self._warned:
            self._warned = True
            self.logger.warning(
                f"RhoScheduleHandler: engine.optimizer ({type(optimizer).__name__}) has no 'rho' in its "
                "param groups (a plain optimizer?); the rho schedule does nothing."
            )
        return groups

    def state_dict(self) -> dict[str, Any]:
        """The wrapped scheduler's state (empty for a callable), for ``CheckpointSaver``."""
        return self.schedule.state_dict() if hasattr(self.schedule, "state_dict") else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the wrapped scheduler's state."""
        if hasattr(self.schedule, "load_state_dict"):
            self.schedule.load_state_dict(state_dict)
