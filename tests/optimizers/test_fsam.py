"""F-SAM: the official update order on a quadratic, reductions, the moving average's lifecycle, and
pytorch_optimizer's ``FriendlySAM`` (which follows the official code)."""

from __future__ import annotations

import pytest
import torch
from optim_helpers import Quadratic, batch, closure_for, fp64_squared_grad_norm, mse, run_manual, small_net

from monai_sam.optimizers import FSAM, SAM, create_optimizer
from monai_sam.optimizers.fsam import MOMENTUM


def test_two_steps_on_a_quadratic_follow_the_official_order():
    rho, sigma, lmbda, lr = 0.3, 0.8, 0.6, 0.1
    q = Quadratic()
    opt = FSAM(q.parameters(), torch.optim.SGD, rho=rho, sigma=sigma, lmbda=lmbda, lr=lr)
    w0 = q.w.detach().reshape(-1).clone()
    # step 1: m = g0, the ascent uses g0 itself
    g0 = q.grad_at(w0)
    w1 = w0 - lr * q.grad_at(w0 + rho * g0 / g0.norm())
    # step 2: the ascent uses g1 - sigma * m (old m), then m = lmbda * m + (1 - lmbda) * g1
    g1 = q.grad_at(w1)
    d = g1 - sigma * g0
    w2 = w1 - lr * q.grad_at(w1 + rho * d / d.norm())
    m2 = lmbda * g0 + (1 - lmbda) * g1
    run_manual(opt, q)
    torch.testing.assert_close(q.w.detach().reshape(-1), w1, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(opt.method_state[q.w][MOMENTUM].reshape(-1), g0, atol=1e-14, rtol=1e-14)
    run_manual(opt, q)
    torch.testing.assert_close(q.w.detach().reshape(-1), w2, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(opt.method_state[q.w][MOMENTUM].reshape(-1), m2, atol=1e-14, rtol=1e-14)


def test_sigma_zero_is_sam_bit_exactly():
    x, y = batch()
    a, b = small_net(), small_net()
    opt = FSAM(a.parameters(), torch.optim.SGD, rho=0.2, sigma=0.0, lmbda=0.9, lr=0.1, momentum=0.9)
    ref = SAM(b.parameters(), torch.optim.SGD, rho=0.2, lr=0.1, momentum=0.9)
    for _ in range(4):
        opt.step(closure_for(opt, lambda: mse(a, x, y)))
        ref.step(closure_for(ref, lambda: mse(b, x, y)))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_active_sigma_differs_from_sam():
    """Power check: after the first step (which is SAM) the moving average changes the trajectory."""
    x, y = batch()
    a, b = small_net(), small_net()
    opt = FSAM(a.parameters(), torch.optim.SGD, rho=0.2, lr=0.1)
    ref = SAM(b.parameters(), torch.optim.SGD, rho=0.2, lr=0.1)
    for _ in range(2):
        opt.step(closure_for(opt, lambda: mse(a, x, y)))
        ref.step(closure_for(ref, lambda: mse(b, x, y)))
    assert max(float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters())) > 1e-5


def test_abandoned_step_leaves_the_moving_average_untouched_and_it_is_checkpointed():
    x, y = batch()
    model = small_net()
    opt = FSAM(model.parameters(), torch.optim.SGD, rho=0.2, lr=0.1)
    run_manual(opt, lambda: mse(model, x, y))
    before = {p: opt.method_state[p][MOMENTUM].clone() for p in model.parameters()}
    loss = mse(model, x, y)
    loss.backward()
    opt.perturb()
    opt.end_passes()
    for p in model.parameters():
        assert torch.equal(opt.method_state[p][MOMENTUM], before[p])
        assert set(opt.method_state[p]) == {MOMENTUM}
    saved = opt.state_dict()["sharpness_aware"]["per_param"]
    assert set(saved) == set(range(4)) and all(set(v) == {MOMENTUM} for v in saved.values())


def test_interval_off_steps_do_not_update_the_moving_average():
    x, y = batch()
    model = small_net()
    opt = FSAM(model.parameters(), torch.optim.SGD, rho=0.2, interval=2, lr=0.1)
    run_manual(opt, lambda: mse(model, x, y))
    before = {p: opt.method_state[p][MOMENTUM].clone() for p in model.parameters()}
    assert opt.num_passes == 1
    run_manual(opt, lambda: mse(model, x, y))
    for p in model.parameters():
        assert torch.equal(opt.method_state[p][MOMENTUM], before[p])


@pytest.mark.parametrize("their_norm", ["fp64", "fp32"])
def test_matches_pytorch_optimizer_friendly_sam(monkeypatch, their_norm):
    kozistr_sam = pytest.importorskip("pytorch_optimizer.optimizer.sam")
    if their_norm == "fp64":  # their global norm is fp32 even for fp64 weights (spec §1.3)
        monkeypatch.setattr(kozistr_sam, "get_global_gradient_norm", fp64_squared_grad_norm)
    rho, sigma, lmbda = 0.3, 0.7, 0.6  # sigma != 1: with sigma = 1, g - m_new is parallel to g - m_old
    ours, theirs = small_net(), small_net()
    opt = create_optimizer(
        "fsam", ours.parameters(), base="sgd", rho=rho, sigma=sigma, lmbda=lmbda, lr=0.1, momentum=0.9
    )
    ref = kozistr_sam.FriendlySAM(
        theirs.parameters(), torch.optim.SGD, rho=rho, sigma=sigma, lmbda=lmbda, foreach=False,
        lr=0.1, momentum=0.9,
    )  # fmt: skip
    for i in range(6):
        xi, yi = batch(seed=10 + i)
        run_manual(opt, lambda xi=xi, yi=yi: mse(ours, xi, yi))
        ref.zero_grad()
        mse(theirs, xi, yi).backward()
        ref.first_step(zero_grad=True)
        mse(theirs, xi, yi).backward()
        ref.second_step(zero_grad=True)
    tol = {"rtol": 1e-12, "atol": 1e-13} if their_norm == "fp64" else {"rtol": 1e-6, "atol": 2e-8}
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q, **tol)
        torch.testing.assert_close(opt.method_state[p][MOMENTUM], ref.state[q]["momentum"], **tol)


def test_hyperparameters_are_validated_and_declared():
    model = small_net()
    with pytest.raises(ValueError, match="lmbda"):
        FSAM(model.parameters(), torch.optim.SGD, lmbda=1.5, lr=0.1)
    with pytest.raises(ValueError, match="sigma"):
        FSAM(model.parameters(), torch.optim.SGD, sigma=-1.0, lr=0.1)
    opt = FSAM(model.parameters(), torch.optim.SGD, lr=0.1)
    assert opt.final_grad_is_last_pass and not opt.supports_grad_scaler
    assert opt.param_groups[0]["sigma"] == 1.0 and opt.param_groups[0]["lmbda"] == 0.9
