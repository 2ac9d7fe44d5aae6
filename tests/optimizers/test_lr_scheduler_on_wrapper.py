"""LR schedulers attached to the wrapper drive the base optimizer, without warnings (spec §1.13)."""

from __future__ import annotations

import warnings

import pytest
import torch
from optim_helpers import batch, closure_for, mse, run_manual, small_net

from monai_sam.optimizers import SAM, GSAMRhoScheduler


@pytest.mark.parametrize("api", ["closure", "manual", "second_step"])
def test_scheduler_on_wrapper_changes_base_lr_without_warning(api):
    model = small_net()
    x, y = batch()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            if api == "closure":
                opt.step(closure_for(opt, lambda: mse(model, x, y)))
            elif api == "manual":
                run_manual(opt, lambda: mse(model, x, y))
            else:
                opt.zero_grad()
                mse(model, x, y).backward()
                opt.first_step()
                mse(model, x, y).backward()
                opt.second_step()
            sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


def test_scheduler_before_step_still_warns():
    """Power check: the warning is live, so the test above can fail."""
    model = small_net()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    with pytest.warns(UserWarning, match="before `optimizer.step"):
        sched.step()


def test_gsam_rho_schedule_follows_lr():
    model = small_net()
    x, y = batch()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.4, lr=1.0)
    lr_sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.0, total_iters=4)
    rho_sched = GSAMRhoScheduler(opt, lr_min=0.0, rho_min=0.1)
    rhos = []
    for _ in range(4):
        opt.step(closure_for(opt, lambda: mse(model, x, y)))
        lr_sched.step()
        rho_sched.step()
        rhos.append(opt.param_groups[0]["rho"])
    assert rhos == pytest.approx([0.1 + 0.3 * lr for lr in (0.75, 0.5, 0.25, 0.0)])
    constant = GSAMRhoScheduler(opt, lr_max=0.5, lr_min=0.5, rho_max=0.3)
    assert constant.rho_for(0.01) == 0.3
    restored = GSAMRhoScheduler(opt)
    restored.load_state_dict(rho_sched.state_dict())
    assert restored.state_dict() == rho_sched.state_dict()


def test_rho_scheduler_validates():
    model = small_net()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.4, lr=1.0)
    with pytest.raises(ValueError, match="rho_min"):
        GSAMRhoScheduler(opt, rho_min=0.5)
    with pytest.raises(ValueError, match="no 'rho'"):
        GSAMRhoScheduler(torch.optim.SGD(model.parameters(), lr=0.1))
