"""Checkpointable random-number generators for the optimizers that draw noise (Frob-SAM, Det-SAM, bSAM)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["NoiseGenerators"]


class NoiseGenerators:
    """One ``torch.Generator`` per device, whose states travel with the optimizer's ``state_dict``.

    With ``generator`` given, that generator is used (one device only). Otherwise private generators are
    seeded from a seed drawn once from the global RNG at construction (so ``torch.manual_seed()`` before
    building the optimizer fixes the noise), one per device on first use. A resumed run restores the states
    and so draws exactly the noise of an uninterrupted one.

    Args:
        owner: name used in error messages (the optimizer's class name).
        generator: optional ``torch.Generator`` on the parameters' device.
    """

    def __init__(self, owner: str, generator: torch.Generator | None = None) -> None:
        self.owner = owner
        self._generators: dict[str, torch.Generator] = {}
        if generator is not None:
            self._generators[str(torch.device(generator.device))] = generator
            self.seed = None
        else:
            self.seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))

    def for_device(self, device: torch.device) -> torch.Generator:
        """The generator of ``device`` (created and seeded on first use unless one was given)."""
        key = str(device)
        gen = self._generators.get(key)
        if gen is None:
            if self.seed is None:
                raise RuntimeError(
                    f"{self.owner}: the given generator is on {next(iter(self._generators))}, "
                    f"but a parameter lives on {key}."
                )
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed + len(self._generators))
            self._generators[key] = gen
        return gen

    def state_dict(self) -> dict[str, Any]:
        """``{"seed": ..., "rng": {device: generator state}}``."""
        return {"seed": self.seed, "rng": {key: gen.get_state() for key, gen in self._generators.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the seed (private generators only) and every saved generator state."""
        if self.seed is not None and state.get("seed") is not None:
            self.seed = state["seed"]
        for key, value in state.get("rng", {}).items():
            gen = self._generators.get(key) if self.seed is None else self.for_device(torch.device(key))
            if gen is not None:
                gen.set_state(value)
