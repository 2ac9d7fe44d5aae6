"""torch's private names that monai_sam.optimizers.torch_private uses still mean what it assumes.

These fail loudly after a torch upgrade that renames or re-shapes one of them, instead of letting a
skipped GradScaler step go unnoticed (WSAM's decoupled term, MSAM) or an LR scheduler warn on every run.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from monai_sam.optimizers.torch_private import grad_scaler_device, grad_scaler_outcome, mark_stepped


def _scaled_step(grad_value: float, init_scale: float = 2.0**10):
    """A CPU GradScaler step over one parameter whose scaled gradient is ``grad_value``."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    scaler.scale(torch.ones(()))  # the scaler makes its scale tensor here
    p.grad = torch.full((3,), grad_value)
    scaler.step(opt)
    return scaler, opt, p


def test_the_scalers_private_state_has_the_shape_we_read():
    scaler, opt, _ = _scaled_step(1.0)
    state = scaler._per_optimizer_states[id(opt)]
    assert set(state["found_inf_per_device"]) == {torch.device("cpu")}
    assert torch.is_tensor(scaler._get_scale_async())
    assert scaler._device == "cpu"


@pytest.mark.parametrize(("grad", "skipped"), [(1.0, False), (float("inf"), True), (float("nan"), True)])
def test_grad_scaler_outcome_follows_the_scalers_skip(grad, skipped):
    scaler, opt, p = _scaled_step(grad)
    was_skipped, inv_scale = grad_scaler_outcome(scaler, opt, torch.device("cpu"))
    assert was_skipped.dtype == torch.bool and bool(was_skipped) is skipped
    assert torch.equal(p.detach(), torch.ones(3)) is skipped  # the scaler itself skipped or stepped
    assert inv_scale.dtype == torch.float32 and float(inv_scale) == 2.0**-10


def test_grad_scaler_outcome_needs_a_scale():
    scaler = torch.amp.GradScaler("cpu")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    scaler._per_optimizer_states[id(opt)]["found_inf_per_device"] = {}
    with pytest.raises(RuntimeError, match="no scale"):
        grad_scaler_outcome(scaler, opt, torch.device("cpu"))


def test_grad_scaler_device_reads_the_scalers_own_device():
    assert hasattr(torch.amp.GradScaler("cpu"), "_device")
    assert grad_scaler_device(torch.amp.GradScaler("cpu"), default="cuda") == "cpu"


@pytest.mark.parametrize("marked", [True, False])
def test_mark_stepped_is_what_lr_schedulers_check(marked):
    """Without the mark, torch's scheduler warns that it stepped before the optimizer: it reads that name."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1)
    if marked:
        mark_stepped(opt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scheduler.step()
    before = [w for w in caught if "before `optimizer.step()`" in str(w.message)]
    assert bool(before) is not marked
