"""The pass-by-pass state machine of a sharpness-aware step: which pass comes next, and which steps are full.

A step runs ``perturb()`` after every pass but the last, ``unperturb()`` after the last and ``base_step()``
once; :class:`StepPasses` holds where the current step stands and refuses calls out of that order, with
a message saying what to call instead. It also decides how many passes the next step takes: steps skipped
by the ``interval`` or ``start_step`` modes run one pass and are plain base-optimizer steps.
"""

from __future__ import annotations

from typing import Any

__all__ = ["StepPasses", "check_step_option"]


def check_step_option(name: str, value: Any, minimum: int) -> int:
    """``value`` if it is an integer (not a bool) ``>= minimum``, else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Invalid {name}={value!r}: must be an integer >= {minimum}.")
    return value


class StepPasses:
    """Where the current step is among its passes, and the modes that skip passes.

    Args:
        owner: the optimizer's class name, for error messages.
        interval: the full method every ``interval``-th step (counted from ``start_step``).
        start_step: steps before this one take one pass.

    Attributes:
        step_count: completed steps (full or one-pass).
        passes_done: ``perturb()`` calls in the current step.
        unperturbed: ``unperturb()`` was called and ``base_step()`` is due.
        full_step: the current step runs the method (False: a one-pass step).
    """

    def __init__(self, owner: str, interval: int = 1, start_step: int = 0) -> None:
        self.owner = owner
        self.interval = interval
        self.start_step = start_step
        self.step_count = 0
        self.passes_done = 0
        self.unperturbed = False
        self.full_step = True

    @property
    def interval(self) -> int:
        """The full method every ``interval``-th step (counted from ``start_step``), one pass otherwise."""
        return self._interval

    @interval.setter
    def interval(self, value: int) -> None:
        self._interval = check_step_option("interval", value, 1)

    @property
    def start_step(self) -> int:
        """Late-phase mode: steps before this one are plain base-optimizer steps with one pass."""
        return self._start_step

    @start_step.setter
    def start_step(self, value: int) -> None:
        self._start_step = check_step_option("start_step", value, 0)

    def passes_of_next_step(self, full_passes: int) -> int:
        """``full_passes`` when the next step runs the method, 1 when a mode skips it."""
        offset = self.step_count - self._start_step
        if offset < 0 or offset % self._interval:
            return 1
        return full_passes

    @property
    def in_step(self) -> bool:
        """True between the first ``perturb()`` (or ``unperturb()``) of a step and its end."""
        return bool(self.passes_done or self.unperturbed)

    def check_perturb(self, passes: int) -> None:
        """Refuse ``perturb()`` after the last pass of a ``passes``-pass step or after ``unperturb()``."""
        if self.unperturbed:
            raise RuntimeError(f"{self.owner}.perturb(): call base_step() to finish this step first.")
        if self.passes_done >= passes - 1:
            raise RuntimeError(
                f"{self.owner}.perturb() called after pass {self.passes_done + 1} of {passes}: "
                "this was the last pass, call unperturb() now."
            )

    def check_unperturb(self, passes: int) -> None:
        """Refuse ``unperturb()`` twice, or before every pass but the last was perturbed."""
        if self.unperturbed:
            raise RuntimeError(f"{self.owner}.unperturb() called twice: call base_step() now.")
        if self.passes_done != passes - 1:
            raise RuntimeError(
                f"{self.owner}.unperturb() called after {self.passes_done + 1} of {passes} passes: "
                "call perturb() after each backward but the last."
            )

    def check_base_step(self) -> None:
        """Refuse ``base_step()`` before ``unperturb()``."""
        if not self.unperturbed:
            raise RuntimeError(
                f"{self.owner}.base_step() before unperturb(): finish the passes of this step first."
            )

    def check_between_steps(self, call: str) -> None:
        """Refuse ``call`` in the middle of a step."""
        if self.in_step:
            raise RuntimeError(f"{self.owner}.{call} called in the middle of a step; call it between steps.")

    def close(self, stepped: bool) -> None:
        """End the current step's passes; ``stepped`` counts it as a completed step."""
        if stepped:
            self.step_count += 1
        self.passes_done = 0
        self.unperturbed = False
