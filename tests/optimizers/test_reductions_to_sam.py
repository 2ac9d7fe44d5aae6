"""Methods that reduce to SAM (spec §12.3) and ASAM's scale invariance (spec §12.4)."""

from __future__ import annotations

import copy

import pytest
import torch
from optim_helpers import Quadratic, batch, closure_for, final_grad, mse, small_net
from torch import nn

from monai_sam.optimizers import ASAM, CRSAM, GSAM, SAM, WSAM, GSAMRhoScheduler, LookSAM

RHO = 0.2


def _trajectory(cls, steps=4, base=torch.optim.SGD, base_kwargs=None, schedule=False, **hyper):
    model = small_net()
    x, y = batch()
    base_kwargs = base_kwargs or {"lr": 0.1, "momentum": 0.9}
    opt = cls(model.parameters(), base, **hyper, **base_kwargs)
    lr_sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.7) if schedule else None
    rho_sched = GSAMRhoScheduler(opt, rho_min=RHO) if schedule else None
    for _ in range(steps):
        opt.step(closure_for(opt, lambda: mse(model, x, y)))
        if schedule:
            lr_sched.step()
            rho_sched.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize(
    ("cls", "hyper"),
    [
        (GSAM, {"alpha": 0.0}),
        (WSAM, {"gamma": 0.5, "decouple": False}),
        (CRSAM, {"gamma": 0.0, "beta": 0.0}),
        (LookSAM, {"k": 1, "alpha": 0.7}),
    ],
    ids=["gsam_alpha0", "wsam_coupled_half", "crsam_zero", "looksam_k1"],
)
def test_reduces_to_sam_exactly(cls, hyper):
    sam = _trajectory(SAM, rho=RHO)
    other = _trajectory(cls, rho=RHO, **hyper)
    for p, q in zip(sam, other):
        assert torch.equal(p, q)


def test_gsam_with_constant_rho_schedule_is_sam():
    sam = _trajectory(SAM, rho=RHO, schedule=True)
    gsam = _trajectory(GSAM, rho=RHO, alpha=0.0, schedule=True)
    for p, q in zip(sam, gsam):
        assert torch.equal(p, q)


def test_wsam_decoupled_half_with_plain_sgd_is_sam():
    sam = _trajectory(SAM, rho=RHO, base_kwargs={"lr": 0.1})
    wsam = _trajectory(WSAM, rho=RHO, gamma=0.5, base_kwargs={"lr": 0.1})
    for p, q in zip(sam, wsam):
        torch.testing.assert_close(p, q, atol=1e-14, rtol=1e-12)


def test_wsam_decoupled_differs_from_coupled_under_momentum():
    coupled = _trajectory(WSAM, rho=RHO, gamma=0.9, decouple=False)
    decoupled = _trajectory(WSAM, rho=RHO, gamma=0.9)
    assert max((p - q).abs().max() for p, q in zip(coupled, decoupled)) > 1e-4


def test_asam_with_equal_magnitudes_is_sam_with_scaled_rho():
    c, eta = 0.7, 0.05
    q_asam, q_sam = Quadratic(), Quadratic()
    with torch.no_grad():
        signs = torch.sign(q_asam.w)
        q_asam.w.copy_(c * signs)
        q_sam.w.copy_(c * signs)
    asam = ASAM(q_asam.parameters(), torch.optim.SGD, rho=RHO, eta=eta, lr=0.0)
    sam = SAM(q_sam.parameters(), torch.optim.SGD, rho=RHO * (c + eta), lr=0.0)
    (ga,) = final_grad(asam, q_asam)
    (gs,) = final_grad(sam, q_sam)
    torch.testing.assert_close(ga, gs, atol=1e-13, rtol=1e-13)


def _relu_net(scale: float) -> nn.Module:
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(4, 16, bias=False), nn.ReLU(), nn.Linear(16, 1, bias=False)).double()
    with torch.no_grad():
        net[0].weight.mul_(scale)
        net[2].weight.div_(scale)
    return net


def _perturbed_loss(cls, scale: float, **hyper) -> torch.Tensor:
    net = _relu_net(scale)
    x, y = batch()
    opt = cls(net.parameters(), torch.optim.SGD, lr=0.0, **hyper)
    opt.zero_grad()
    mse(net, x, y).backward()
    opt.perturb()
    with torch.no_grad():
        loss = mse(net, x, y)
    opt.unperturb()
    opt.base_step()
    return loss


def test_asam_is_scale_invariant_and_sam_is_not():
    c = 4.0
    original, rescaled = (
        _perturbed_loss(ASAM, 1.0, rho=1.0, eta=0.0),
        _perturbed_loss(ASAM, c, rho=1.0, eta=0.0),
    )
    torch.testing.assert_close(original, rescaled, atol=1e-12, rtol=1e-12)
    sam_original, sam_rescaled = _perturbed_loss(SAM, 1.0, rho=1.0), _perturbed_loss(SAM, c, rho=1.0)
    assert (sam_original - sam_rescaled).abs() > 1e-3


def test_asam_adaptive_scaling_only_on_weight_tensors():
    """Default selector: biases get T = 1; with adaptive=None they are scaled too."""
    model = small_net()
    x, y = batch()
    tensors = {}
    for adaptive in ("default", None):
        m = copy.deepcopy(model)
        kwargs = {} if adaptive == "default" else {"adaptive": None}
        opt = ASAM(m.parameters(), torch.optim.SGD, rho=0.5, eta=0.0, lr=0.0, **kwargs)
        before = [p.detach().clone() for p in m.parameters()]
        opt.zero_grad()
        mse(m, x, y).backward()
        grads = [p.grad.clone() for p in m.parameters()]
        opt.perturb()
        tensors[adaptive] = [p.detach() - b for p, b in zip(m.parameters(), before)]
        opt.unperturb()
    bias_e, bias_g = tensors["default"][1], grads[1]
    # bias perturbation is parallel to its gradient (T = 1) by default, not to |b|^2 g
    cos = (bias_e @ bias_g) / (bias_e.norm() * bias_g.norm())
    torch.testing.assert_close(cos, torch.tensor(1.0, dtype=torch.float64))
    b = dict(model.named_parameters())["0.bias"].detach()
    expected_dir = b**2 * bias_g
    e_all = tensors[None][1]
    cos_all = (e_all @ expected_dir) / (e_all.norm() * expected_dir.norm())
    torch.testing.assert_close(cos_all, torch.tensor(1.0, dtype=torch.float64))


def test_asam_official_name_rule_scales_batchnorm_weight():
    from monai_sam.optimizers.asam import is_weight_tensor, weights_by_name

    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    by_name = weights_by_name(net)
    assert by_name(net[0].weight) and by_name(net[1].weight)
    assert not by_name(net[0].bias) and not by_name(net[1].bias)
    assert is_weight_tensor(net[0].weight) and not is_weight_tensor(net[1].weight)
