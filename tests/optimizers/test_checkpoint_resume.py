"""state_dict round trips: save at step k, load into fresh objects, continue == uninterrupted (§12.5d)."""

from __future__ import annotations

import io

import pytest
import torch
from optim_helpers import batch, closure_for, mse, small_net

from monai_sam.optimizers import BSAM, FSAM, GCSAM, GSAM, SAM, WSAM, FrobSAM, GSAMRhoScheduler, LookSAM

CASES = {
    "sam_sgd_momentum": (SAM, torch.optim.SGD, {"rho": 0.1, "lr": 0.1, "momentum": 0.9}),
    "sam_adam": (SAM, torch.optim.Adam, {"rho": 0.1, "lr": 1e-2}),
    "gsam_rho_schedule": (GSAM, torch.optim.SGD, {"rho": 0.2, "alpha": 0.3, "lr": 0.1, "momentum": 0.9}),
    "wsam_adamw": (WSAM, torch.optim.AdamW, {"rho": 0.1, "gamma": 0.8, "lr": 1e-2}),
    "frobsam": (FrobSAM, torch.optim.SGD, {"rho": 0.05, "lam": 0.1, "lr": 0.1, "momentum": 0.9}),
    "looksam_adam": (LookSAM, torch.optim.Adam, {"rho": 0.1, "k": 3, "lr": 1e-2}),
    "sam_interval": (SAM, torch.optim.SGD, {"rho": 0.1, "interval": 2, "lr": 0.1, "momentum": 0.9}),
    "gcsam_adam": (GCSAM, torch.optim.Adam, {"rho": 0.1, "lr": 1e-2}),
    "fsam_sgd_momentum": (FSAM, torch.optim.SGD, {"rho": 0.1, "lmbda": 0.6, "lr": 0.1, "momentum": 0.9}),
    # bSAM has its own update (no base optimizer); its noise generators must resume too
    "bsam": (BSAM, None, {"num_data": 50, "rho": 0.05, "lr": 0.1, "weight_decay": 1e-3}),
}


def _build(case: str, seed: int = 0):
    cls, base, kwargs = CASES[case]
    torch.manual_seed(seed)
    model = small_net()
    opt = cls(model.parameters(), **kwargs) if base is None else cls(model.parameters(), base, **kwargs)
    lr_sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.8)
    rho_sched = GSAMRhoScheduler(opt, rho_min=0.05) if case.startswith("gsam") else None
    return model, opt, lr_sched, rho_sched


def _steps(model, opt, lr_sched, rho_sched, count: int, start: int) -> None:
    for i in range(start, start + count):
        x, y = batch(seed=100 + i)
        opt.step(closure_for(opt, lambda x=x, y=y: mse(model, x, y)))
        lr_sched.step()
        if rho_sched is not None:
            rho_sched.step()


def _save(*objects) -> bytes:
    buffer = io.BytesIO()
    torch.save([o.state_dict() if o is not None else None for o in objects], buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("case", sorted(CASES))
def test_resume_is_bit_exact(case):
    model, opt, lr_sched, rho_sched = _build(case)
    _steps(model, opt, lr_sched, rho_sched, 6, 0)
    uninterrupted = [p.detach().clone() for p in model.parameters()]

    model, opt, lr_sched, rho_sched = _build(case)
    _steps(model, opt, lr_sched, rho_sched, 3, 0)
    blob = _save(model, opt, lr_sched, rho_sched)
    # fresh objects built under another global seed (only the checkpoint may carry the state)
    model2, opt2, lr2, rho2 = _build(case, seed=1)
    states = torch.load(io.BytesIO(blob), weights_only=False)
    for obj, state in zip((model2, opt2, lr2, rho2), states):
        if obj is not None:
            obj.load_state_dict(state)
    assert opt2.param_groups is opt2.base_optimizer.param_groups
    assert opt2.state is opt2.base_optimizer.state
    _steps(model2, opt2, lr2, rho2, 3, 3)
    for p, q in zip(uninterrupted, model2.parameters()):
        assert torch.equal(p, q)
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.8**6 * CASES[case][2]["lr"])


def test_state_dict_contains_base_state_and_method_state():
    model, opt, lr_sched, rho_sched = _build("looksam_adam")
    _steps(model, opt, lr_sched, rho_sched, 1, 0)
    sd = opt.state_dict()
    assert "exp_avg" in sd["state"][0]
    assert "looksam_gv" in sd["sharpness_aware"]["per_param"][0]
    assert sd["sharpness_aware"]["step"] == 1
    assert sd["param_groups"][0]["rho"] == 0.1


def test_state_dict_mid_step_raises():
    model, opt, *_ = _build("sam_sgd_momentum")
    x, y = batch()
    mse(model, x, y).backward()
    opt.perturb()
    with pytest.raises(RuntimeError, match="middle of a step"):
        opt.state_dict()
