"""rho = 0 with neutral extras must reproduce the base optimizer bit-exactly (spec §12.1)."""

from __future__ import annotations

import copy

import pytest
import torch
from optim_helpers import NEUTRAL, batch, closure_for, mse, run_manual, small_net

BASES = {
    "sgd_momentum": (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}),
    "adamw": (torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 1e-2}),
    # torch's fused (single-kernel) AdamW, also on CPU: the wrapper must leave it untouched
    "adamw_fused": (torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 1e-2, "fused": True}),
}


@pytest.mark.parametrize("api", ["closure", "manual"])
@pytest.mark.parametrize("base_name", sorted(BASES))
@pytest.mark.parametrize("method", sorted(NEUTRAL))
def test_neutral_method_equals_base_optimizer(method, base_name, api):
    cls, hyper = NEUTRAL[method]
    base_cls, base_kwargs = BASES[base_name]
    model = small_net()
    reference = copy.deepcopy(model)
    x, y = batch()
    opt = cls(model.parameters(), base_cls, **hyper, **base_kwargs)
    ref_opt = base_cls(reference.parameters(), **base_kwargs)
    for _ in range(5):
        if api == "closure":
            opt.step(closure_for(opt, lambda: mse(model, x, y)))
        else:
            run_manual(opt, lambda: mse(model, x, y))
        ref_opt.zero_grad()
        mse(reference, x, y).backward()
        ref_opt.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)
    # and the state the base optimizer keeps is the same too
    for p, q in zip(model.parameters(), reference.parameters()):
        for key, value in ref_opt.state[q].items():
            assert torch.equal(torch.as_tensor(opt.state[p][key]), torch.as_tensor(value)), key


@pytest.mark.parametrize("method", ["sam", "gsam", "crsam"])
def test_active_method_differs_from_base(method):
    """Power check for the test above: with rho > 0 the trajectories differ."""
    from optim_helpers import ACTIVE

    cls, hyper = ACTIVE[method]
    model = small_net()
    reference = copy.deepcopy(model)
    x, y = batch()
    opt = cls(model.parameters(), torch.optim.SGD, **hyper, lr=0.1)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    opt.step(closure_for(opt, lambda: mse(model, x, y)))
    ref_opt.zero_grad()
    mse(reference, x, y).backward()
    ref_opt.step()
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), reference.parameters()))
