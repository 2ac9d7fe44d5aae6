"""The GradScaler recipe on CPU: scaled passes, one unscale, base_step(scaler) (spec §1.10)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_sam.optimizers import GCSAM, MSAM, SAM, WSAM

METHODS = {
    "sam": (SAM, {"rho": 0.1}),
    "msam": (MSAM, {"rho": 0.3}),
    "wsam_decoupled": (WSAM, {"rho": 0.1, "gamma": 0.8}),
    "gcsam": (GCSAM, {"rho": 0.1}),
}


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 8, generator=g), torch.randint(0, 2, (32,), generator=g)


def _train(method: str, scaler, autocast_dtype=None, steps: int = 3, inf_in_pass: int | None = None):
    cls, hyper = METHODS[method]
    model = _net()
    x, y = _data()
    opt = cls(model.parameters(), torch.optim.SGD, **hyper, lr=0.1, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        for k in range(opt.num_passes):
            with torch.autocast(
                "cpu", dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None
            ):
                loss = nn.functional.cross_entropy(model(x), y)
            (scaler.scale(loss) if scaler else loss).backward()
            if inf_in_pass == k:
                model[0].weight.grad[0, 0] = float("inf")
            if k < opt.num_passes - 1:
                opt.perturb(loss.detach())
        opt.unperturb(loss.detach())
        if scaler is not None:
            scaler.unscale_(opt.base_optimizer)
        opt.base_step(scaler)
        if scaler is not None:
            scaler.update()
    return model, opt


@pytest.mark.parametrize("dtype", [None, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_scaled_step_equals_unscaled_step(method, dtype):
    scaled, _ = _train(method, torch.amp.GradScaler("cpu", init_scale=2.0**12), dtype)
    plain, _ = _train(method, None, dtype)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype is None else {"rtol": 2e-2, "atol": 2e-3}
    moved = 0.0
    for p, q, r in zip(scaled.parameters(), plain.parameters(), _net().parameters()):
        torch.testing.assert_close(p, q, **tol)
        moved = max(moved, float((q - r).detach().abs().max()))
    assert moved > 1e-3  # the runs really trained


@pytest.mark.parametrize("inf_pass", [0, 1], ids=["clean_pass", "perturbed_pass"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_non_finite_gradient_skips_the_whole_step(method, inf_pass):
    if inf_pass >= METHODS[method][0].passes_per_step:
        pytest.skip("MSAM has one pass per step")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    model, _ = _train(method, scaler, steps=1, inf_in_pass=inf_pass)
    for p, r in zip(model.parameters(), _net().parameters()):
        assert torch.equal(p, r)  # neither the base step nor the WSAM correction moved anything
    assert scaler.get_scale() == 2.0**11


def test_wsam_correction_is_in_unscaled_units():
    """Power check: a large scale must not inflate the decoupled correction."""
    small, _ = _train("wsam_decoupled", torch.amp.GradScaler("cpu", init_scale=2.0))
    large, _ = _train("wsam_decoupled", torch.amp.GradScaler("cpu", init_scale=2.0**16))
    for p, q in zip(small.parameters(), large.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_wsam_with_max_norm_refuses_a_scaler():
    model = _net()
    opt = WSAM(model.parameters(), torch.optim.SGD, max_norm=1.0, lr=0.1)
    assert not opt.supports_grad_scaler
    x, y = _data()
    scaler = torch.amp.GradScaler("cpu")
    scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
    opt.perturb()
    scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
    opt.unperturb()
    with pytest.raises(RuntimeError, match="max_norm"):
        opt.base_step(scaler)
