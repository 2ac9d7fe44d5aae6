"""Restore by copy with non-finite gradients, parameters used in one pass only (spec §1.2, §1.5, §12.5)."""

from __future__ import annotations

import pytest
import torch
from optim_helpers import ACTIVE, batch, mse, small_net
from torch import nn

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
