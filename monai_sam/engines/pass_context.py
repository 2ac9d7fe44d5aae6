"""What surrounds a perturbed pass: BatchNorm running-statistics policy and dropout RNG replay."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

__all__ = ["BN_POLICIES", "RngReplay", "bn_policy_context"]

BN_POLICIES = ("clean", "all", "momentum_zero")
"""Names accepted by ``bn_policy``: ``"clean"`` restores the BatchNorm buffers after every perturbed pass
(running statistics come from the clean pass only, ``num_batches_tracked`` grows by one per pass 0);
``"all"`` lets every pass update them (official CR-SAM / Frob-SAM code); ``"momentum_zero"`` sets
momentum to 0 during perturbed passes (davda54 idiom; ``num_batches_tracked`` still counts them and
``momentum=None`` layers keep averaging)."""


def bn_policy_context(policy: str) -> Callable[[torch.nn.Module], contextlib.AbstractContextManager[Any]]:
    """Context-manager factory applied to the network around every perturbed pass (pass index >= 1)."""
    from monai_sam.batchnorm import bn_momentum_zero, frozen_running_stats

    if policy == "clean":
        return frozen_running_stats
    if policy == "momentum_zero":
        return bn_momentum_zero
    if policy == "all":
        return lambda _module: contextlib.nullcontext()
    raise ValueError(f"`bn_policy` must be one of {BN_POLICIES}, got {policy!r}.")


class RngReplay:
    """Replays the random state of the clean pass in later passes (same dropout masks, as in official SAM).

    Later passes run inside ``torch.random.fork_rng``, so the generator stream outside them advances as if
    they drew nothing: random draws made by the optimizer between passes (Frob-SAM/Det-SAM samples) stay
    independent of the masks.

    Args:
        device: the device the network runs on; its CUDA generator is replayed too when it is a CUDA device.
    """

    def __init__(self, device: torch.device) -> None:
        self._cuda_index = (
            (device.index if device.index is not None else torch.cuda.current_device())
            if (device.type == "cuda")
            else None
        )
        self._cpu_state: torch.Tensor | None = None
        self._cuda_state: torch.Tensor | None = None

    def capture(self) -> None:
        """Remember the current generator state (call right before the clean pass)."""
        self._cpu_state = torch.get_rng_state()
        if self._cuda_index is not None:
            self._cuda_state = torch.cuda.get_rng_state(self._cuda_index)

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        """Run the body with the captured state, then put the outer stream back where it was."""
        if self._cpu_state is None:
            raise RuntimeError("RngReplay.replay() called before capture().")
        devices = [self._cuda_index] if self._cuda_index is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self._cpu_state)
            if self._cuda_index is not None and self._cuda_state is not None:
                torch.cuda.set_rng_state(self._cuda_state, self._cuda_index)
            yield
