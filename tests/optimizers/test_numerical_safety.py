"""Restore by copy with non-finite gradients, parameters used in one pass only (spec §1.2, §1.5, §12.5);
finite gradients whose fp32 norm overflows; non-finite steps refused before any weight changes."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from optim_helpers import ACTIVE, batch, closure_for, mse, run_manual, small_net
from torch import nn

from monai_sam.optimizers import available_optimizers, create_optimizer
from monai_sam.optimizers.base import BACKUP


@pytest.mark.parametrize("bad", [float("inf"), float("nan")], ids=["inf", "nan"])
@pytest.mark.parametrize("method", sorted(ACTIVE))
def test_non_finite_clean_gradient_never_corrupts_weights(method, bad):
    cls, hyper = ACTIVE[method]
    model = small_net()
    x, y = batch()
    opt = cls(model.parameters(), torch.optim.SGD, **hyper, lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    n = opt.num_passes
    loss = mse(model, x, y)
    loss.backward()
    model[0].weight.grad[0, 0] = bad
    for _ in range(1, n):
        opt.perturb(loss.detach())
        for p in model.parameters():
            assert torch.isfinite(p).all()
        if method not in ("frobsam", "detsam"):  # gradient-directed: the perturbation is zero
            for p, b in zip(model.parameters(), before):
                assert torch.equal(p, b)
        loss = mse(model, x, y)
        loss.backward()
    opt.unperturb(loss.detach())
    assert bool(opt.last_perturbation_skipped)
    for p, b in zip(model.parameters(), before):
        assert torch.equal(p, b)


def test_finite_gradient_does_not_set_the_skip_flag():
    cls, hyper = ACTIVE["sam"]
    model = small_net()
    x, y = batch()
    opt = cls(model.parameters(), torch.optim.SGD, **hyper, lr=0.1)
    mse(model, x, y).backward()
    opt.perturb()
    assert not bool(opt.last_perturbation_skipped)


class TwoBranch(nn.Module):
    """``a`` is used in every pass; ``b`` only in the passes selected by ``uses_b``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(3, dtype=torch.float64))

    def forward(self, x: torch.Tensor, use_b: bool) -> torch.Tensor:
        h = torch.tanh(x @ self.a)
        return (h * self.b).sum(1) if use_b else h.sum(1)


@pytest.mark.parametrize("only_pass", ["first", "later"])
@pytest.mark.parametrize("method", sorted(ACTIVE))
def test_parameter_used_in_one_pass_stays_put_at_zero_lr(method, only_pass):
    cls, hyper = ACTIVE[method]
    net = TwoBranch()
    x, _ = batch()
    opt = cls(net.parameters(), torch.optim.SGD, **hyper, lr=0.0, momentum=0.9)
    before = [p.detach().clone() for p in net.parameters()]
    for _ in range(3):
        n = opt.num_passes
        opt.zero_grad()
        for k in range(n):
            use_b = (k == 0) == (only_pass == "first")
            loss = net(x, use_b).pow(2).mean()
            loss.backward()
            if k < n - 1:
                opt.perturb(loss.detach())
        opt.unperturb(loss.detach())
        opt.base_step()
    with opt.true_weights():  # MSAM rests at the momentum-ascent point between steps
        for p, b in zip(net.parameters(), before):
            assert torch.equal(p, b)
    for p in net.parameters():
        assert BACKUP not in opt.method_state.get(p, {})  # no stale copy left for a later step


def test_missing_gradient_counts_as_zero_in_the_combination():
    """GSAM with ``b`` used in pass 0 only: gp_b = 0, so its final gradient is -alpha * g0_b."""
    from monai_sam.optimizers import GSAM

    alpha = 0.5
    net = TwoBranch()
    x, _ = batch()
    opt = GSAM(net.parameters(), torch.optim.SGD, rho=0.1, alpha=alpha, lr=0.0)
    loss = net(x, True).pow(2).mean()
    loss.backward()
    g0_b = net.b.grad.clone()
    opt.perturb()
    net(x, False).pow(2).mean().backward()
    assert net.b.grad is None
    opt.unperturb()
    torch.testing.assert_close(net.b.grad, -alpha * g0_b)
    opt.base_step()


# ------------------------------------------------------------------ overflow: finite gradients, huge norms
#: registered methods whose final gradient, on the overflow case below, combines gradients with losses in a
#: way that overflows fp32 itself (Frob-SAM's L_i * g_i, Det-SAM's exp of loss differences): the step is
#: refused before any weight changes.
REFUSED = {"frobsam", "detsam"}
METHODS = [name for name in available_optimizers() if name not in ("adam", "adamw", "sgd")]


def _build(name: str, params, base: str, lr: float) -> torch.optim.Optimizer:
    extra = {"num_data": 8} if name == "bsam" else {"base": base}  # bSAM has its own update
    if base == "sgd" and name not in ("bsam", "adam", "adamw"):
        extra["momentum"] = 0.9
    return create_optimizer(name, params, lr=lr, method_defaults={"rho": 0.05, "k": 2}, **extra)


def _overflow_case(name: str, base: str, lr: float, steps: int = 3):
    """The issue's minimal form: finite gradients of 4e24 whose fp32 sum of squares overflows (to inf).

    Returns the weights (true weights for MSAM) after ``steps`` closure steps, or the FloatingPointError.
    """
    net = torch.nn.Linear(16, 1)
    net.weight.data.fill_(0.1)
    net.bias.data.fill_(0.0)
    x = torch.ones(4, 16)
    opt = _build(name, net.parameters(), base, lr)

    def closure():
        opt.zero_grad()
        loss = (net(x) * 1e25).sum() * 1e-25 * 1e24
        loss.backward()
        return loss

    before = [p.detach().clone() for p in net.parameters()]
    state = copy.deepcopy(opt.state_dict())
    try:
        for _ in range(steps):
            opt.step(closure)
    except FloatingPointError as error:
        assert all(torch.equal(p, b) for p, b in zip(net.parameters(), before))
        after = opt.state_dict()
        assert after.get("state") == state.get("state") == {}  # the base optimizer never stepped
        return error
    with opt.true_weights() if hasattr(opt, "true_weights") else contextlib.nullcontext():
        return torch.cat([p.detach().flatten() for p in net.parameters()])


@pytest.mark.parametrize("base, lr", [("adam", 1e-4), ("sgd", 1e-26)], ids=["adam_issue_form", "sgd"])
@pytest.mark.parametrize("name", available_optimizers())
def test_the_overflow_case_leaves_finite_weights_for_every_method(name, base, lr):
    """Finite gradients give finite norms: the methods step like their base (gp == g0 for a linear model)."""
    result = _overflow_case(name, base, lr)
    if name in REFUSED:
        assert isinstance(result, FloatingPointError) and "not finite" in str(result)
        return
    assert isinstance(result, torch.Tensor), result
    assert torch.isfinite(result).all()
    if name in ("adam", "adamw", "sgd", "bsam"):  # plain, or bSAM's own update: nothing to compare with
        return
    plain = _overflow_case(base, base, lr)
    # the base optimizer's steps on the same gradient (CR-SAM's g+ + gamma (g+ + g- - 2 g0) + ... rounds)
    torch.testing.assert_close(result, plain, rtol=1e-6, atol=0.0)
    if base == "sgd":
        assert (plain - 0.1).abs().min() > 0.1  # the case really trains


# ------------------------------------------------------------------ non-finite steps: refused or skipped
def _snapshot(opt, model) -> tuple[list[torch.Tensor], dict]:
    """The true weights, and a copy of the base optimizer's state and of the method's per-parameter state."""
    with opt.true_weights():
        weights = [p.detach().clone() for p in model.parameters()]
    state = {
        "base": opt.base_optimizer.state_dict(),
        "method": opt.state_dict()["sharpness_aware"]["per_param"],
    }
    return weights, copy.deepcopy(state)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _good_steps_until_a_full_one(opt, model) -> None:
    """Finite steps (momentum exists) until the next step is a full one (LookSAM k=2: every other)."""
    x, y = batch()
    opt.step(closure_for(opt, lambda: mse(model, x, y)))
    while opt.num_passes < opt.passes_per_step:
        opt.step(closure_for(opt, lambda: mse(model, x, y)))


def _step_with_inf(opt, model, bad: int, api: str, scaler=None) -> None:
    """One step whose pass ``bad`` gets an inf gradient entry, through the closure or the pass-by-pass API."""
    x, y = batch()
    calls = []

    def closure():
        opt.zero_grad()
        loss = mse(model, x, y)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if len(calls) == bad:
            model[0].weight.grad[0, 0] = float("inf")
        calls.append(loss.detach())
        return loss

    if api == "closure":
        opt.step(closure)
        return
    n = opt.num_passes
    for k in range(n):
        closure()
        if k < n - 1:
            opt.perturb(calls[-1])
    opt.unperturb(calls[-1])
    opt.base_step(scaler)


@pytest.mark.parametrize("api", ["closure", "passes"])
@pytest.mark.parametrize("bad", ["clean", "last"])
@pytest.mark.parametrize("name", METHODS)
def test_a_non_finite_step_without_scaler_is_refused_before_any_weight_changes(name, bad, api):
    model = small_net()
    x, y = batch()
    opt = _build(name, model.parameters(), "sgd", 0.1)
    _good_steps_until_a_full_one(opt, model)
    weights, state = _snapshot(opt, model)
    n = opt.num_passes
    match = "not finite"
    if n > 1:
        match = (
            r"clean gradient \(pass 1\) already" if bad == "clean" else "a perturbed pass or the combination"
        )
    with pytest.raises(FloatingPointError, match=match):
        _step_with_inf(opt, model, 0 if bad == "clean" else n - 1, api)
    after, after_state = _snapshot(opt, model)
    assert all(torch.equal(p, q) for p, q in zip(after, weights))
    assert _same(after_state, state)
    opt.step(closure_for(opt, lambda: mse(model, x, y)))  # usable again: a good step trains
    moved, _ = _snapshot(opt, model)
    assert all(torch.isfinite(p).all() for p in moved) and not all(map(torch.equal, moved, weights))


SCALABLE = [n for n in METHODS if _build(n, small_net().parameters(), "sgd", 0.1).supports_grad_scaler]


@pytest.mark.parametrize("bad", ["clean", "last"])
@pytest.mark.parametrize("name", SCALABLE)
def test_a_non_finite_step_with_a_grad_scaler_is_skipped(name, bad):
    model = small_net()
    x, y = batch()
    opt = _build(name, model.parameters(), "sgd", 0.1)
    _good_steps_until_a_full_one(opt, model)
    weights, state = _snapshot(opt, model)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    _step_with_inf(opt, model, 0 if bad == "clean" else opt.num_passes - 1, "passes", scaler)
    scaler.update()
    assert scaler.get_scale() == 2.0**11
    after, after_state = _snapshot(opt, model)
    assert all(torch.equal(p, q) for p, q in zip(after, weights))
    assert _same(after_state, state)
    run_manual(opt, lambda: mse(model, x, y), scaler)  # the next step (LookSAM: one pass, reusing gv)
    assert scaler.get_scale() == 2.0**11  # was not skipped: nothing non-finite was kept
    moved, _ = _snapshot(opt, model)
    assert all(torch.isfinite(p).all() for p in moved) and not all(map(torch.equal, moved, weights))
