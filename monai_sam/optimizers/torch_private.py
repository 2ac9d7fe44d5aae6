"""The private state of torch that monai-sam reads or writes, all in one place.

torch has no public API for three things a multi-pass step needs:

- whether an enabled :class:`torch.amp.GradScaler` skipped the step it just took, as a device tensor
  (``scaler.step`` returns nothing useful without a host read; WSAM's decoupled correction and MSAM must
  follow the skip without syncing);
- the device a GradScaler was made for (checked against the engine's device before training starts);
- the flag torch's LR schedulers read to tell that the optimizer has stepped: they patch
  ``optimizer.step``, but a sharpness-aware step ends in :meth:`base_step`, not ``step``.

tests/optimizers/test_torch_private.py checks every name used here against the installed torch, so an
upgrade that moves one of them fails there, loudly, instead of training wrongly.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["grad_scaler_device", "grad_scaler_outcome", "mark_stepped"]


def grad_scaler_outcome(
    scaler: torch.amp.GradScaler, optimizer: Optimizer, device: torch.device
) -> tuple[Tensor, Tensor]:
    """(skipped, 1/scale) of the ``scaler.step(optimizer)`` just taken, as 0-d tensors on ``device``.

    No host read: ``skipped`` is True when the scaler found inf/NaN in the unscaled gradients of
    ``optimizer`` (so it did not call ``optimizer.step()``); ``1/scale`` is the scale the gradients were
    divided by, in fp32 (computed in fp64, as the scaler does).

    Args:
        scaler: an enabled GradScaler, after ``scaler.step(optimizer)`` and before ``scaler.update()``.
        optimizer: the optimizer it stepped.
        device: where the results go.
    """
    found = scaler._per_optimizer_states[id(optimizer)]["found_inf_per_device"]
    skipped = torch.zeros((), dtype=torch.bool, device=device)
    for value in found.values():
        skipped = skipped | (value.to(device) > 0)
    scale = scaler._get_scale_async()
    if scale is None:
        raise RuntimeError("grad_scaler_outcome: the GradScaler has no scale (is it enabled?).")
    return skipped, scale.to(device).double().reciprocal().float()


def grad_scaler_device(scaler: torch.amp.GradScaler, default: str) -> str:
    """The device type ``scaler`` was made for (``default`` when this torch does not record it).

    Args:
        scaler: a GradScaler.
        default: the answer for a scaler without the private ``_device`` attribute.
    """
    return str(getattr(scaler, "_device", default))


def mark_stepped(optimizer: Optimizer) -> None:
    """Tell torch's LR schedulers that ``optimizer`` has stepped (what their patched ``step`` records).

    Without it, the first ``scheduler.step()`` after a sharpness-aware step warns that it was called
    before ``optimizer.step()``.

    Args:
        optimizer: the optimizer whose step just finished.
    """
    optimizer._opt_called = True  # type: ignore[attr-defined]
