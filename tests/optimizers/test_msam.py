"""MSAM against the official update written out by hand, its closed form, true weights and resume."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from optim_helpers import OpLog, Quadratic, batch, closure_for, mse, small_net

from monai_sam.optimizers import MSAM, SAM, create_optimizer


class OfficialSGDMSAM:
    """The official ``optimizer/msam.py`` step (MarlonBecker/MSAM), one tensor at a time, no weight decay.

    The parameters hold the ascent point between steps: ``p += rho * inv * v`` (back to w),
    ``v = mu * v + g``, ``p -= lr * v``, ``inv = 1 / (||v|| + 1e-12)``, ``p -= rho * inv * v``.
    """

    def __init__(self, params, lr, momentum, rho):
        self.params = list(params)
        self.lr, self.momentum, self.rho = lr, momentum, rho
        self.buffers = [torch.zeros_like(p) for p in self.params]
        self.inv = 0.0

    @torch.no_grad()
    def step(self):
        for p, buf in zip(self.params, self.buffers):
            p.add_(buf, alpha=self.rho * self.inv)
            buf.mul_(self.momentum).add_(p.grad)
            p.add_(buf, alpha=-self.lr)
        norm = torch.norm(torch.stack([b.norm(p=2) for b in self.buffers]), p=2)
        self.inv = float(1 / (norm + 1e-12))
        for p, buf in zip(self.params, self.buffers):
            p.sub_(buf, alpha=self.rho * self.inv)

    @torch.no_grad()
    def true_weights(self):
        return [p + b * (self.rho * self.inv) for p, b in zip(self.params, self.buffers)]


class OfficialAdamWMSAM:
    """The official ``optimizer/adamW_msam.py`` step without weight decay (its decay follows the update)."""

    def __init__(self, params, lr, betas, eps, rho):
        self.params = list(params)
        self.lr, (self.b1, self.b2), self.eps, self.rho = lr, betas, eps, rho
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0
        self.nf = 0.0

    @torch.no_grad()
    def step(self):
        self.t += 1
        bc1, bc2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad
            p.add_(m, alpha=self.nf)
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            denom = (v.sqrt() / math.sqrt(bc2)).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / bc1)
        norm = torch.norm(torch.stack([m.norm(p=2) for m in self.m]), p=2)
        self.nf = float(1 / (norm + 1e-12) * self.rho)
        for p, m in zip(self.params, self.m):
            p.sub_(m, alpha=self.nf)


def _train_pair(ours, official, model, reference, steps=6):
    for i in range(steps):
        x, y = batch(seed=10 + i)
        ours.zero_grad()
        mse(model, x, y).backward()
        ours.step()
        for p in reference.parameters():
            p.grad = None
        mse(reference, x, y).backward()
        official.step()


def test_sgd_msam_equals_the_official_update():
    model = small_net()
    reference = copy.deepcopy(model)
    ours = MSAM(model.parameters(), torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
    official = OfficialSGDMSAM(reference.parameters(), lr=0.1, momentum=0.9, rho=0.3)
    _train_pair(ours, official, model, reference)
    for p, q in zip(model.parameters(), reference.parameters()):  # both at the ascent point
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)
    with ours.true_weights():
        for p, q in zip(model.parameters(), official.true_weights()):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-12)
    # power: the ascent point is really away from w
    gaps = [
        float((p.detach() - q).abs().max()) for p, q in zip(reference.parameters(), official.true_weights())
    ]
    assert max(gaps) > 1e-2


def test_adam_msam_equals_the_official_adamw_update():
    model = small_net()
    reference = copy.deepcopy(model)
    ours = MSAM(model.parameters(), torch.optim.Adam, rho=1.0, lr=1e-2)
    official = OfficialAdamWMSAM(reference.parameters(), lr=1e-2, betas=(0.9, 0.999), eps=1e-8, rho=1.0)
    _train_pair(ours, official, model, reference)
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)


def test_closed_form_on_a_quadratic():
    """Step 1 is SGD at w0; step 2's gradient is A(w1 - rho v1/||v1|| - w*), v1 = g(w0)."""
    q = Quadratic()
    lr, mu, rho = 0.1, 0.9, 0.2
    opt = MSAM(q.parameters(), torch.optim.SGD, rho=rho, lr=lr, momentum=mu)
    w0 = q.w.detach().clone().reshape(-1)
    v1 = q.grad_at(w0)
    w1 = w0 - lr * v1
    opt.step(closure_for(opt, q))
    torch.testing.assert_close(q.w.detach().reshape(-1), w1 - rho * v1 / v1.norm(), rtol=0, atol=1e-12)
    with opt.true_weights():
        torch.testing.assert_close(q.w.detach().reshape(-1), w1, rtol=0, atol=1e-12)
    g2 = q.grad_at(w1 - rho * v1 / v1.norm())
    v2 = mu * v1 + g2
    w2 = w1 - lr * v2
    opt.step(closure_for(opt, q))
    with opt.true_weights():
        torch.testing.assert_close(q.w.detach().reshape(-1), w2, rtol=0, atol=1e-12)
    torch.testing.assert_close(q.w.detach().reshape(-1), w2 - rho * v2 / v2.norm(), rtol=0, atol=1e-12)


def test_true_weights_context_is_bit_exact_and_one_pass_per_step():
    model = small_net()
    x, y = batch()
    opt = MSAM(model.parameters(), torch.optim.AdamW, rho=0.5, lr=1e-2, weight_decay=1e-2)
    calls = []

    def closure():
        calls.append(1)
        loss = mse(model, x, y)
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    assert len(calls) == 3 and opt.num_passes == 1
    at_ascent = [p.detach().clone() for p in model.parameters()]
    with opt.true_weights():
        true = [p.detach().clone() for p in model.parameters()]
        with opt.true_weights():  # nested: still w
            assert all(torch.equal(p, t) for p, t in zip(model.parameters(), true))
    assert all(torch.equal(p, a) for p, a in zip(model.parameters(), at_ascent))
    assert not all(torch.equal(t, a) for t, a in zip(true, at_ascent))
    # ||w - w~|| = rho * ||v|| / (||v|| + eps): rho up to eps
    distance = torch.stack([(t - a).norm() for t, a in zip(true, at_ascent)]).norm()
    torch.testing.assert_close(distance, torch.tensor(0.5, dtype=torch.float64), rtol=1e-9, atol=0)


def test_step_without_closure_uses_the_gradients_in_place():
    model, other = small_net(), small_net()
    x, y = batch()
    a = MSAM(model.parameters(), torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
    b = MSAM(other.parameters(), torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
    for _ in range(3):
        a.zero_grad()
        mse(model, x, y).backward()
        assert a.step() is None
        b.step(closure_for(b, lambda: mse(other, x, y)))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), other.parameters()))


def _plain_loop(model, opt, start, count):
    for i in range(start, start + count):
        x, y = batch(seed=100 + i)
        opt.step(closure_for(opt, lambda x=x, y=y: mse(model, x, y)))


@pytest.mark.parametrize("base", ["sgd", "adam"])
def test_resume_is_bit_exact(base):
    kwargs = {"momentum": 0.9} if base == "sgd" else {}

    def build(seed=0):
        model = small_net(seed)
        return model, create_optimizer("msam", model.parameters(), base=base, lr=0.05, rho=0.3, **kwargs)

    model, opt = build()
    _plain_loop(model, opt, 0, 6)
    with opt.true_weights():
        uninterrupted = [p.detach().clone() for p in model.parameters()]

    model, opt = build()
    _plain_loop(model, opt, 0, 3)
    buffer = io.BytesIO()
    with opt.true_weights():  # the checkpoint holds the true weights
        torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    saved = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    with opt.true_weights():
        assert all(torch.equal(v, p) for v, p in zip(saved["model"].values(), model.parameters()))
    model2, opt2 = build(seed=1)
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    opt2.move_to_perturbed_point()  # MONAI engines do this at the start of every iteration
    _plain_loop(model2, opt2, 3, 3)
    with opt2.true_weights():
        for p, q in zip(uninterrupted, model2.parameters()):
            assert torch.equal(p, q)


def test_late_phase_steps_are_the_base_optimizer_then_the_ascent_starts():
    x, y = batch()
    model = small_net()
    reference = copy.deepcopy(model)
    opt = MSAM(model.parameters(), torch.optim.AdamW, rho=0.3, start_step=3, lr=0.01)
    plain = torch.optim.AdamW(reference.parameters(), lr=0.01)
    for step in range(3):
        opt.step(closure_for(opt, lambda: mse(model, x, y)))
        plain.zero_grad()
        mse(reference, x, y).backward()
        plain.step()
        if step < 2:  # the next step is still a base step: no ascent point, no buffer
            assert all(torch.equal(p, q) for p, q in zip(model.parameters(), reference.parameters()))
            assert not opt._workspace
    # step 3 is the first MSAM step: its gradient is taken at the ascent point
    assert not all(torch.equal(p, q) for p, q in zip(model.parameters(), reference.parameters()))
    with opt.true_weights():
        assert all(torch.equal(p, q) for p, q in zip(model.parameters(), reference.parameters()))


def test_a_skipped_grad_scaler_step_returns_to_the_same_ascent_point():
    model = small_net().float()
    x, y = (t.float() for t in batch())
    opt = MSAM(model.parameters(), torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    for _ in range(2):
        opt.zero_grad()
        scaler.scale(mse(model, x, y)).backward()
        opt.unperturb()
        opt.base_step(scaler)
        scaler.update()
    before = [p.detach().clone() for p in model.parameters()]
    momentum = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    opt.zero_grad()
    scaler.scale(mse(model, x, y)).backward()
    next(model.parameters()).grad[0, 0] = float("inf")
    opt.unperturb()
    opt.base_step(scaler)
    scaler.update()
    assert scaler.get_scale() == 2.0**9
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert all(torch.equal(opt.state[p]["momentum_buffer"], m) for p, m in zip(model.parameters(), momentum))


def test_no_host_read_when_moving_between_the_points():
    model = small_net()
    x, y = batch()
    opt = MSAM(model.parameters(), torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
    opt.step(closure_for(opt, lambda: mse(model, x, y)))
    with OpLog() as probe:
        opt.move_to_true_weights()
        opt.move_to_perturbed_point()
        with opt.true_weights():
            pass
    assert "aten._local_scalar_dense" not in probe.ops
    assert "aten._foreach_addcmul_" in probe.ops  # the move really ran


def test_ddp_mode_and_contract_attributes():
    assert MSAM.passes_per_step == 1 and MSAM.final_grad_is_last_pass  # the one pass is DDP-synchronised
    assert MSAM.perturbed_between_steps and MSAM.supports_grad_scaler and not MSAM.needs_loss


def test_bad_bases_are_refused_with_a_clear_error():
    params = small_net().parameters
    with pytest.raises(ValueError, match="momentum=0"):
        MSAM(params(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="momentum_key"):
        MSAM(params(), torch.optim.Adagrad, lr=0.1)
    opt = MSAM(params(), torch.optim.RMSprop, momentum_key="momentum_buffer", lr=0.1, momentum=0.5)
    assert opt.momentum_key == "momentum_buffer"
    with pytest.raises(ValueError, match="rho"):
        MSAM(params(), torch.optim.Adam, rho=-1.0)


def test_rest_at_true_weights_defers_the_ascent_to_the_driver():
    """The engines' mode: a step ends at w; moving to the ascent point before the pass gives the same run."""
    x, y = batch()
    model, other = small_net(), small_net()
    a = MSAM(model.parameters(), torch.optim.Adam, rho=0.3, lr=1e-2)
    b = MSAM(other.parameters(), torch.optim.Adam, rho=0.3, lr=1e-2)
    b.rest_at_true_weights = True
    for _ in range(3):
        a.step(closure_for(a, lambda: mse(model, x, y)))
        b.move_to_perturbed_point()
        b.step(closure_for(b, lambda: mse(other, x, y)))
        assert not b._ascended  # the step ended at the true weights
        with a.true_weights():
            assert all(torch.equal(p, q) for p, q in zip(model.parameters(), other.parameters()))


def test_set_rest_at_true_weights_is_the_explicit_switch():
    """Drivers choose where MSAM rests through a method (a no-op for methods that always end at w)."""
    opt = MSAM(small_net().parameters(), torch.optim.Adam, rho=0.3, lr=1e-2)
    assert opt.rest_at_true_weights is False
    opt.set_rest_at_true_weights(True)
    assert opt.rest_at_true_weights is True
    opt.set_rest_at_true_weights(False)
    assert opt.rest_at_true_weights is False
    sam = SAM(small_net().parameters(), torch.optim.SGD, lr=0.1)
    sam.set_rest_at_true_weights(True)
    assert not hasattr(sam, "rest_at_true_weights")
