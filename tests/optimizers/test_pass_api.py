"""The pass-by-pass API, the closure API and the interval efficient mode."""

from __future__ import annotations

import copy

import pytest
import torch
from optim_helpers import ACTIVE, Quadratic, batch, closure_for, final_grad, mse, run_manual, small_net

from monai_sam.optimizers import CRSAM, SAM, LookSAM


def _opt(method="sam", **base_kwargs):
    cls, hyper = ACTIVE[method]
    model = small_net()
    return model, cls(model.parameters(), torch.optim.SGD, **hyper, **(base_kwargs or {"lr": 0.1}))


def test_step_without_closure_explains_the_alternatives():
    _, opt = _opt()
    with pytest.raises(RuntimeError, match="closure") as info:
        opt.step()
    assert "perturb()" in str(info.value) and "SharpnessAwareIteration" in str(info.value)


def test_out_of_order_calls_raise():
    model, opt = _opt()
    x, y = batch()
    mse(model, x, y).backward()
    with pytest.raises(RuntimeError, match="before unperturb"):
        opt.base_step()
    with pytest.raises(RuntimeError, match=r"after 1 of 2 passes"):
        opt.unperturb()
    opt.perturb()
    with pytest.raises(RuntimeError, match="last pass, call unperturb"):
        opt.perturb()
    mse(model, x, y).backward()
    opt.unperturb()
    with pytest.raises(RuntimeError, match="called twice"):
        opt.unperturb()
    with pytest.raises(RuntimeError, match="base_step"):
        opt.perturb()
    with pytest.raises(RuntimeError, match="middle"):
        opt.step(closure_for(opt, lambda: mse(model, x, y)))
    opt.base_step()
    opt.step(closure_for(opt, lambda: mse(model, x, y)))  # back in sync


@pytest.mark.parametrize("method", sorted(ACTIVE))
def test_closure_api_equals_manual_api_with_or_without_zeroing(method):
    x, y = batch()
    results = []
    for api in ("manual", "closure_zero", "closure_no_zero"):
        model, opt = _opt(method, lr=0.1, momentum=0.9)
        for _ in range(3):
            if api == "manual":
                run_manual(opt, lambda m=model: mse(m, x, y))
            else:
                loss = opt.step(closure_for(opt, lambda m=model: mse(m, x, y), zero=api == "closure_zero"))
                assert loss.requires_grad  # the clean loss, as returned by the closure
        results.append([p.detach().clone() for p in model.parameters()])
    for other in results[1:]:
        for p, q in zip(results[0], other):
            assert torch.equal(p, q)


def test_step_returns_the_clean_loss():
    model, opt = _opt()
    x, y = batch()
    clean = mse(copy.deepcopy(model), x, y)
    loss = opt.step(closure_for(opt, lambda: mse(model, x, y)))
    assert torch.equal(loss.detach(), clean.detach())


@pytest.mark.parametrize(("cls", "full"), [(SAM, 2), (CRSAM, 3)])
def test_interval_mode_runs_one_pass_on_off_steps(cls, full):
    model = small_net()
    x, y = batch()
    opt = cls(model.parameters(), torch.optim.SGD, interval=3, lr=0.1)
    calls = []

    def closure():
        calls.append(1)
        loss = mse(model, x, y)
        loss.backward()
        return loss

    passes = []
    for _ in range(6):
        passes.append(opt.num_passes)
        opt.step(closure)
    assert passes == [full, 1, 1, full, 1, 1]
    assert len(calls) == 2 * full + 4


def test_interval_off_steps_equal_the_base_optimizer():
    model = small_net()
    reference = copy.deepcopy(model)
    x, y = batch()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, interval=2, lr=0.1)
    ref_opt = SAM(reference.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    opt.step(closure_for(opt, lambda: mse(model, x, y)))
    ref_opt.step(closure_for(ref_opt, lambda: mse(reference, x, y)))
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)
    opt.step(closure_for(opt, lambda: mse(model, x, y)))  # off-step: plain SGD
    plain = torch.optim.SGD(reference.parameters(), lr=0.1)
    plain.zero_grad()
    mse(reference, x, y).backward()
    plain.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)


def test_looksam_reuses_the_orthogonal_direction_with_one_pass():
    rho, alpha = 0.3, 0.7
    q = Quadratic()
    opt = LookSAM(q.parameters(), torch.optim.SGD, rho=rho, k=2, alpha=alpha, lr=0.0)
    w = q.w.detach().clone()
    g = q.grad_at(w)
    gp = q.grad_at(w.reshape(-1) + rho * g / g.norm())
    (first,) = final_grad(opt, q)
    torch.testing.assert_close(first.reshape(-1), gp, atol=1e-12, rtol=1e-12)
    gv = gp - (g @ gp) / (g @ g) * g
    assert opt.num_passes == 1
    (second,) = final_grad(opt, q)
    expected = g + alpha * g.norm() / gv.norm() * gv
    torch.testing.assert_close(second.reshape(-1), expected, atol=1e-9, rtol=1e-9)  # eps in two norms
    assert opt.num_passes == 2


def test_status_tensors_report_the_clean_gradient():
    model, opt = _opt()
    x, y = batch()
    mse(model, x, y).backward()
    norm = torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    opt.perturb()
    assert opt.last_grad_norm.dtype == torch.float32 and opt.last_grad_norm.ndim == 0
    torch.testing.assert_close(opt.last_grad_norm, norm.float())
    assert not bool(opt.last_perturbation_skipped)
    mse(model, x, y).backward()
    opt.unperturb()
    opt.base_step()


def test_class_attributes_of_the_contract():
    from monai_sam.optimizers import WSAM, DetSAM, FrobSAM

    assert FrobSAM.needs_loss and DetSAM.needs_loss and not SAM.needs_loss
    assert SAM.supports_grad_scaler
    model = small_net()
    assert not WSAM(model.parameters(), torch.optim.SGD, max_norm=1.0, lr=0.1).supports_grad_scaler
    assert FrobSAM(model.parameters(), torch.optim.SGD, n_samples=4, lr=0.1).num_passes == 5


@pytest.mark.parametrize("method", sorted(set(ACTIVE) - {"msam"}))  # one pass: no mid-step point
def test_end_passes_mid_step_restores_weights_and_state(method):
    model, opt = _opt(method, lr=0.1, momentum=0.9)
    reference = copy.deepcopy(model)
    ref_opt = ACTIVE[method][0](
        reference.parameters(), torch.optim.SGD, **ACTIVE[method][1], lr=0.1, momentum=0.9
    )
    x, y = batch()
    before = [p.detach().clone() for p in model.parameters()]
    loss = mse(model, x, y)
    loss.backward()
    opt.perturb(loss.detach())
    opt.end_passes()
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)
    assert all(not values for values in opt.method_state.values())
    if method in ("frobsam", "detsam"):
        return  # their noise generators advanced (and differ between two optimizers anyway)
    # the next step is a normal one, identical to a fresh optimizer's first step
    run_manual(opt, lambda: mse(model, x, y))
    run_manual(ref_opt, lambda: mse(reference, x, y))
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)


def test_end_passes_after_unperturb_keeps_the_final_gradient():
    model, opt = _opt("sam")
    x, y = batch()
    mse(model, x, y).backward()
    opt.perturb()
    mse(model, x, y).backward()
    opt.unperturb()
    final = [p.grad.clone() for p in model.parameters()]
    opt.end_passes()
    assert [torch.equal(p.grad, f) for p, f in zip(model.parameters(), final)] == [True] * len(final)
    assert opt.num_passes == 2 and opt._step_count == 0
