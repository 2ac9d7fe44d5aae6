"""Logging of sharpness-aware training: perturbed loss, sharpness, passes and rho."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from ignite.engine import Engine, Events

from monai_sam.engines.events import SharpnessKeys

__all__ = ["SharpnessStatsHandler", "explain_negative_sharpness", "sharpness_output_transform"]

_DEFAULT_KEYS = ("loss", SharpnessKeys.LOSS_PERTURBED, SharpnessKeys.SHARPNESS)


#: The one-time explanation logged with the first negative ``sharpness`` of a process.
NEGATIVE_SHARPNESS_NOTE = (
    "sharpness = loss_perturbed - loss is negative ({value:.4g} at this iteration): the loss at the "
    "perturbed weights w + e was lower than at w. This is expected now and then and is not an error: "
    "the ascent step e (size rho, from the clean gradient) is a first-order guess that overshoots "
    "where the loss bends down along it; with a gradient near zero only rounding is left; dropout or "
    "other stochastic layers draw different masks in the two passes. Persistently negative values "
    "suggest rho is too large. (Shown once.)"
)
_logger = logging.getLogger(__name__)
_explained = False


def explain_negative_sharpness(value: float, logger: logging.Logger | None = None) -> bool:
    """Log :data:`NEGATIVE_SHARPNESS_NOTE` the first time a negative ``value`` is seen in this process.

    Called where sharpness is logged (the bundles' iteration line, :class:`SharpnessStatsHandler`), so
    a reader meeting ``sharpness: -0.01`` finds the explanation next to it; later negative values log
    nothing. Returns whether it logged.

    Args:
        value: this iteration's ``sharpness`` (NaN and non-negative values are ignored).
        logger: where to log (INFO); default this module's logger, which propagates to the root logger.
    """
    global _explained
    if _explained or not value < 0:
        return False
    _explained = True
    (logger or _logger).info(NEGATIVE_SHARPNESS_NOTE.format(value=value))
    return True


def _first_item(output: Any) -> dict[str, Any]:
    """The per-iteration dict: the first decollated item, or the dict itself with ``decollate=False``."""
    if isinstance(output, (list, tuple)):
        return output[0] if output else {}
    return output if isinstance(output, dict) else {}


def _as_float(value: Any) -> float:
    return float(value.detach().float().mean()) if hasattr(value, "detach") else float(value)


def sharpness_output_transform(keys: Sequence[str] = _DEFAULT_KEYS) -> Callable[[Any], dict[str, float]]:
    """``output_transform`` for ``StatsHandler``/``TensorBoardStatsHandler`` logging loss and sharpness.

    Works with decollated (list) and non-decollated (dict) outputs; keys missing from the output
    (a plain optimizer has no ``sharpness``) are left out. The first negative ``sharpness`` of the
    process also logs why it can be negative (:func:`explain_negative_sharpness`).

    Args:
        keys: output keys to log.

    Example::

        StatsHandler(name="train", output_transform=sharpness_output_transform())
    """
    keys = tuple(keys)

    def transform(output: Any) -> dict[str, float]:
        item = _first_item(output)
        values = {k: _as_float(item[k]) for k in keys if k in item}
        explain_negative_sharpness(values.get(SharpnessKeys.SHARPNESS, math.nan))
        return values

    return transform


def mean_rho(optimizer: Any) -> float | None:
    """Mean ``rho`` over the optimizer's param groups, None when it has none."""
    rhos = [g["rho"] for g in getattr(optimizer, "param_groups", []) if "rho" in g]
    return sum(rhos) / len(rhos) if rhos else None


class SharpnessStatsHandler:
    """Track sharpness statistics of a trainer running :class:`~monai_sam.engines.SharpnessAwareIteration`.

    Every iteration it stores the current rho (mean over param groups) in ``engine.state.rho`` and
    logs ``loss``, ``loss_perturbed``, ``sharpness``, ``num_passes`` and ``rho`` every ``log_interval``
    iterations. At the end of each epoch it writes the epoch means into ``engine.state.metrics``
    (``<prefix>sharpness``, ``<prefix>loss_perturbed``, and the last ``<prefix>rho``), where
    ``StatsHandler``, ``TensorBoardStatsHandler`` and ``MetricsSaver`` pick them up: list this handler
    before those in ``train_handlers``. NaN values (single-pass steps) are left out of the means.

    Args:
        log_interval: log every this many iterations; 0 disables the iteration log lines.
        epoch_metrics: write the epoch means into ``engine.state.metrics``.
        prefix: prefix of the metric names.
        name: logger name; None uses ``engine.logger``.
    """

    def __init__(
        self, log_interval: int = 0, epoch_metrics: bool = True, prefix: str = "", name: str | None = None
    ):
        if log_interval < 0:
            raise ValueError(f"`log_interval` must be >= 0, got {log_interval}.")
        self.log_interval = log_interval
        self.epoch_metrics = epoch_metrics
        self.prefix = prefix
        self._name = name
        self.logger = logging.getLogger(name)
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def attach(self, engine: Engine) -> None:
        """Register on ITERATION_COMPLETED, EPOCH_STARTED and EPOCH_COMPLETED."""
        if self._name is None:
            self.logger = engine.logger
        engine.add_event_handler(Events.EPOCH_STARTED, self.epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        if self.epoch_metrics:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)

    def epoch_started(self, engine: Engine) -> None:
        """Reset the epoch sums."""
        self._sums.clear()
        self._counts.clear()

    def iteration_completed(self, engine: Engine) -> None:
        """Accumulate this iteration's values and log them every ``log_interval`` iterations."""
        item = _first_item(engine.state.output)
        values = {k: _as_float(item[k]) for k in _DEFAULT_KEYS if k in item}
        if SharpnessKeys.NUM_PASSES in item:
            values[SharpnessKeys.NUM_PASSES] = float(item[SharpnessKeys.NUM_PASSES])
        rho = mean_rho(getattr(engine, "optimizer", None))
        engine.state.rho = rho  # type: ignore[attr-defined]  # ignite's State takes new attributes
        if rho is not None:
            values["rho"] = rho
        for key, value in values.items():
            if not math.isnan(value):
                self._sums[key] = self._sums.get(key, 0.0) + value
                self._counts[key] = self._counts.get(key, 0) + 1
        if self.log_interval and engine.state.iteration % self.log_interval == 0:
            text = " ".join(f"{k}: {v:.6g}" for k, v in values.items())
            self.logger.info(f"Epoch: {engine.state.epoch}, Iteration: {engine.state.iteration} -- {text}")
            explain_negative_sharpness(values.get(SharpnessKeys.SHARPNESS, math.nan), self.logger)

    def epoch_completed(self, engine: Engine) -> None:
        """Write the epoch means (rho: last value) into ``engine.state.metrics``."""
        for key in (SharpnessKeys.SHARPNESS, SharpnessKeys.LOSS_PERTURBED):
            if self._counts.get(key):
                engine.state.metrics[self.prefix + key] = self._sums[key] / self._counts[key]
        if getattr(engine.state, "rho", None) is not None:
            engine.state.metrics[self.prefix + "rho"] = engine.state.rho  # type: ignore[attr-defined]
