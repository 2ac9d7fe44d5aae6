"""bSAM: the official JAX step written out by hand, the contract of every method (bSAM has its own
update, so its "base optimizer" is :class:`BSAMUpdate`), ``num_data`` validation and pytorch_optimizer's
deviations."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from optim_helpers import OpLog, Quadratic, batch, closure_for, mse, run_manual, small_net

from monai_sam.optimizers import BSAM, BSAMUpdate, create_optimizer
from monai_sam.optimizers.bsam import MOMENTUM, PRECISION

HYPER = {"lr": 0.1, "betas": (0.8, 0.99), "weight_decay": 1e-2, "rho": 0.05, "damping": 0.1, "s_init": 2.0}


def _official_steps(model, batches, num_data, seed, hyper=HYPER):
    """team-approx-bayes/bayesian-sam ``build_bsam_optimizer`` (msharpness = 1), in torch: the reference."""
    lr, (b1, b2), wd = hyper["lr"], hyper["betas"], hyper["weight_decay"]
    rho, damping = hyper["rho"], hyper["damping"]
    params = list(model.parameters())
    w = [p.detach().clone() for p in params]
    gm = [torch.zeros_like(p) for p in params]
    s = [torch.full_like(p, hyper["s_init"]) for p in params]
    gen = torch.Generator().manual_seed(seed)

    def grad_at(point, x, y):
        with torch.no_grad():
            for p, v in zip(params, point):
                p.copy_(v)
        model.zero_grad()
        mse(model, x, y).backward()
        return [p.grad.detach().clone() for p in params]

    for x, y in batches:
        noise = [torch.empty_like(p).normal_(0.0, 1.0, generator=gen) for p in params]
        noisy = [mu + torch.sqrt(1.0 / (num_data * si)) * n for n, mu, si in zip(noise, w, s)]
        g1 = grad_at(noisy, x, y)
        g = grad_at([p + rho * gi / si for p, gi, si in zip(w, g1, s)], x, y)
        gs = [torch.sqrt(si * gi**2.0) for gi, si in zip(g1, s)]
        gm = [b1 * m + (1 - b1) * (gi + wd * wi) for m, gi, wi in zip(gm, g, w)]
        w = [wi - lr * m / si for wi, m, si in zip(w, gm, s)]
        s = [b2 * si + (1 - b2) * (gsi + damping + wd) for si, gsi in zip(s, gs)]
    with torch.no_grad():
        for p, v in zip(params, w):
            p.copy_(v)
    return gm, s


def _batches(n=5):
    return [batch(seed=20 + i) for i in range(n)]


def _ours(model, num_data=40, seed=7, **overrides):
    hyper = {**HYPER, **overrides}
    return BSAM(model.parameters(), num_data, generator=torch.Generator().manual_seed(seed), **hyper)


def _run(opt, model, batches, api="manual"):
    for x, y in batches:
        if api == "manual":
            run_manual(opt, lambda x=x, y=y: mse(model, x, y))
        else:
            opt.step(closure_for(opt, lambda x=x, y=y: mse(model, x, y), zero=api == "closure_zero"))


def test_matches_the_official_update_with_the_same_noise():
    ours, ref = small_net(), small_net()
    opt = _ours(ours)
    _run(opt, ours, _batches())
    gm, s = _official_steps(ref, _batches(), num_data=40, seed=7)
    for p, q, m, si in zip(ours.parameters(), ref.parameters(), gm, s):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(opt.state[p][MOMENTUM], m, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(opt.state[p][PRECISION], si, rtol=1e-12, atol=1e-13)
    other = small_net()
    _official_steps(other, _batches(), num_data=40, seed=8)  # power: other noise, other weights
    gap = max(float((p - q).detach().abs().max()) for p, q in zip(ours.parameters(), other.parameters()))
    assert gap > 1e-6


def test_one_step_on_a_quadratic_without_noise():
    """Closed form with the noise switched off: g1 = g0, e = rho g0 / s, precision from |g0|."""
    lr, (b1, b2), wd, rho, damping, s0 = 0.1, (0.8, 0.99), 1e-2, 0.05, 0.1, 2.0
    q = Quadratic()
    opt = BSAM(q.parameters(), 10, **HYPER)
    opt._fill_noise_ = lambda tensors: [t.zero_() for t in tensors]
    w = q.w.detach().reshape(-1).clone()
    g0 = q.grad_at(w)
    g = q.grad_at(w + rho * g0 / s0)
    m = (1 - b1) * (g + wd * w)
    run_manual(opt, q)
    torch.testing.assert_close(q.w.detach().reshape(-1), w - lr * m / s0, atol=1e-13, rtol=1e-13)
    s1 = b2 * s0 + (1 - b2) * (s0**0.5 * g0.abs() + damping + wd)
    torch.testing.assert_close(opt.state[q.w][PRECISION].reshape(-1), s1, atol=1e-13, rtol=1e-13)


@pytest.mark.parametrize("api", ["closure", "manual"])
def test_rho_zero_without_noise_is_its_own_update_bit_exactly(api):
    """The rho = 0 contract: with the noise off, every pass is at w and bSAM is BSAMUpdate exactly."""
    x, y = batch()
    model, reference = small_net(), small_net()
    opt = _ours(model, rho=0.0)
    opt._fill_noise_ = lambda tensors: [t.zero_() for t in tensors]
    kwargs = {k: v for k, v in HYPER.items() if k != "rho"}
    plain = BSAMUpdate(reference.parameters(), **kwargs)
    for _ in range(4):
        _run(opt, model, [(x, y)], api="manual" if api == "manual" else "closure_zero")
        plain.zero_grad()
        mse(reference, x, y).backward()
        plain.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)
        assert torch.equal(opt.state[p][PRECISION], plain.state[q][PRECISION])


def test_closure_api_equals_manual_api_and_three_passes():
    results = []
    for api in ("manual", "closure_zero", "closure_no_zero"):
        model = small_net()
        opt = _ours(model)
        assert opt.num_passes == 3
        _run(opt, model, _batches(3), api)
        results.append([p.detach().clone() for p in model.parameters()])
    for other in results[1:]:
        assert all(torch.equal(p, q) for p, q in zip(results[0], other))


def test_first_pass_is_at_the_mean_and_the_weights_return_to_it():
    x, y = batch()
    model = small_net()
    opt = _ours(model)
    mean = [p.detach().clone() for p in model.parameters()]
    loss = mse(model, x, y)
    loss.backward()
    opt.perturb()
    assert any(not torch.equal(p, m) for p, m in zip(model.parameters(), mean))  # the noisy sample
    mse(model, x, y).backward()
    opt.perturb()
    mse(model, x, y).backward()
    opt.unperturb()
    assert all(torch.equal(p, m) for p, m in zip(model.parameters(), mean))
    opt.base_step()


@pytest.mark.parametrize("bad_pass", [0, 1])
@pytest.mark.parametrize("bad", [float("inf"), float("nan")], ids=["inf", "nan"])
def test_non_finite_gradient_never_corrupts_weights(bad_pass, bad):
    x, y = batch()
    model = small_net()
    opt = _ours(model)
    before = [p.detach().clone() for p in model.parameters()]
    loss = mse(model, x, y)
    for k in range(3):
        if k:
            loss = mse(model, x, y)
        loss.backward()
        if k == bad_pass:
            model[0].weight.grad[0, 0] = bad
        if k < 2:
            opt.perturb()
            assert all(torch.isfinite(p).all() for p in model.parameters())
    assert bool(opt.last_perturbation_skipped)
    opt.unperturb()
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert not torch.isfinite(model[0].weight.grad).all()  # the step is marked skippable


def test_ascent_from_a_non_finite_noisy_gradient_is_zero():
    x, y = batch()
    model = small_net()
    opt = _ours(model)
    mean = [p.detach().clone() for p in model.parameters()]
    mse(model, x, y).backward()
    opt.perturb()
    mse(model, x, y).backward()
    model[2].bias.grad[0] = float("inf")
    opt.perturb()
    assert all(torch.equal(p, m) for p, m in zip(model.parameters(), mean))


def test_resume_draws_the_same_noise():
    batches = _batches(6)
    model = small_net()
    torch.manual_seed(11)  # the private generators are seeded from the global RNG
    opt = BSAM(model.parameters(), 40, **HYPER)
    _run(opt, model, batches)
    uninterrupted = [p.detach().clone() for p in model.parameters()]

    model = small_net()
    torch.manual_seed(11)
    opt = BSAM(model.parameters(), 40, **HYPER)
    _run(opt, model, batches[:3])
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    torch.manual_seed(99)  # another seed: only the checkpoint may carry the noise state
    model2 = small_net(seed=5)
    opt2 = BSAM(model2.parameters(), 40, **HYPER)
    saved = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    _run(opt2, model2, batches[3:])
    assert all(torch.equal(p, q) for p, q in zip(uninterrupted, model2.parameters()))


def test_a_full_step_reads_nothing_back():
    """The method's own work reads nothing back (the default finite check is base_step's one read)."""
    model = small_net()
    opt = _ours(model)
    x, y = batch()
    for _ in range(2):
        with OpLog() as log:
            run_manual(opt, lambda: mse(model, x, y), check_finite=False)
        assert "aten._local_scalar_dense" not in log.ops


def test_parameter_used_in_the_first_pass_only_stays_put_at_zero_lr():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    b = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    x, _ = batch()
    opt = BSAM([a, b], 40, lr=0.0)
    before = [a.detach().clone(), b.detach().clone()]
    for _ in range(2):
        opt.zero_grad()
        for k in range(3):
            h = torch.tanh(x @ a)
            ((h * b).sum(1) if k == 0 else h.sum(1)).pow(2).mean().backward()
            if k < 2:
                opt.perturb()
        opt.unperturb()
        opt.base_step()
    assert torch.equal(a, before[0]) and torch.equal(b, before[1])


def test_off_steps_are_its_own_update_with_the_clean_gradient():
    x, y = batch()
    model, reference = small_net(), small_net()
    opt = _ours(model, start_step=2)
    plain = BSAMUpdate(reference.parameters(), **{k: v for k, v in HYPER.items() if k != "rho"})
    for _ in range(2):
        assert opt.num_passes == 1
        run_manual(opt, lambda: mse(model, x, y))
        plain.zero_grad()
        mse(reference, x, y).backward()
        plain.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), reference.parameters()))
    assert opt.num_passes == 3


def test_end_passes_mid_step_restores_the_mean_and_drops_the_noisy_gradient():
    x, y = batch()
    model = small_net()
    opt = _ours(model)
    mean = [p.detach().clone() for p in model.parameters()]
    for _ in range(2):
        mse(model, x, y).backward()
        opt.perturb()
    opt.end_passes()
    assert all(torch.equal(p, m) for p, m in zip(model.parameters(), mean))
    assert not opt.base_optimizer.precision_grads and not any(opt.method_state.values())


def test_declared_modes():
    opt = _ours(small_net())
    assert opt.passes_per_step == 3 and not opt.supports_grad_scaler
    assert opt.has_post_step_correction and not opt.final_grad_is_last_pass  # DDP: every pass synced


@pytest.mark.parametrize("bad", [None, 0, -5, 2.5, True, "100"])
def test_num_data_is_required_and_validated(bad):
    with pytest.raises(ValueError, match="num_data"):
        BSAM(small_net().parameters(), bad)
    with pytest.raises(ValueError, match="num_data"):
        create_optimizer("bsam", small_net().parameters(), **({} if bad is None else {"num_data": bad}))


def test_other_hyperparameters_are_validated():
    for kwargs, name in [
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"lr": -1.0}, "lr"),
        ({"damping": -0.1}, "damping"),
        ({"s_init": 0.0}, "s_init"),
        ({"rho": -0.1}, "rho"),
    ]:
        with pytest.raises(ValueError, match=name):
            BSAM(small_net().parameters(), 10, **kwargs)


def test_create_optimizer_has_no_base_for_bsam():
    model = small_net()
    opt = create_optimizer("bsam", model.parameters(), num_data=100, lr=0.2, betas=(0.9, 0.99), rho=0.01)
    assert isinstance(opt.base_optimizer, BSAMUpdate) and opt.param_groups[0]["lr"] == 0.2
    with pytest.raises(ValueError, match="own update"):
        create_optimizer("bsam", model.parameters(), base="sgd", num_data=100)
    with pytest.raises(ValueError, match="momentum"):
        create_optimizer("bsam", model.parameters(), num_data=100, momentum=0.9)
    with pytest.raises(ValueError, match="betas"):  # still an unknown argument for SGD-based methods
        create_optimizer("sam", model.parameters(), base="sgd", betas=(0.9, 0.99))


def test_pytorch_optimizer_bsam_is_not_the_official_algorithm():
    """Why pytorch_optimizer's BSAM cannot serve as the reference (docs/optimizers.md): at lr = 0 the official
    algorithm (and ours) never moves the weights, theirs leaves the noise in them."""
    kozistr = pytest.importorskip("pytorch_optimizer")
    x, y = batch()
    ours, theirs = small_net(), small_net()
    start = copy.deepcopy(ours)
    opt = BSAM(ours.parameters(), 100, lr=0.0)
    ref = kozistr.BSAM(theirs.parameters(), num_data=100, lr=0.0, foreach=False)
    for _ in range(3):
        run_manual(opt, lambda: mse(ours, x, y))
        mse(theirs, x, y).backward()  # their state is only created for parameters that have a grad
        ref.step(closure_for(ref, lambda: mse(theirs, x, y)))
    assert all(torch.equal(p, q) for p, q in zip(ours.parameters(), start.parameters()))
    drift = max(float((p - q).detach().abs().max()) for p, q in zip(theirs.parameters(), start.parameters()))
    assert drift > 1e-3
