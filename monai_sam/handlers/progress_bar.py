"""Trainer handler: a tqdm progress bar over each epoch's iterations, showing the running loss."""

from __future__ import annotations

import functools
from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar

from monai_sam.handlers.output_transforms import training_scalars

__all__ = ["EpochProgressBar"]


def _shown_value(output: Any, key: str) -> dict[str, float]:
    """The progress bar's postfix: ``{key: value}`` of the current iteration (NaN when absent)."""
    return {key: training_scalars(output, (key,)).get(key, float("nan"))}


class EpochProgressBar:
    """An ignite progress bar (tqdm) over each epoch's iterations, showing the running loss.

    Args:
        desc: label in front of the bar (e.g. ``"train"``).
        output_key: key of the decollated output to show, or None for no value.
        persist: keep finished bars on screen.
    """

    def __init__(self, desc: str = "train", output_key: str | None = "loss", persist: bool = False) -> None:
        self.desc = desc
        self.output_key = output_key
        self.persist = persist

    def attach(self, engine: Engine) -> None:
        """Attach a fresh :class:`ignite.handlers.ProgressBar` to ``engine``."""
        transform = None if self.output_key is None else functools.partial(_shown_value, key=self.output_key)
        bar = ProgressBar(persist=self.persist, desc=self.desc)
        bar.attach(engine, output_transform=transform, event_name=Events.ITERATION_COMPLETED)
