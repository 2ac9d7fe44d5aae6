"""Closed forms on a quadratic L = 1/2 (w - w*)^T A (w - w*) in float64 (spec §12.2, §12.3)."""

from __future__ import annotations

import pytest
import torch
from optim_helpers import Quadratic, final_grad

from monai_sam.optimizers import ASAM, CRSAM, GSAM, SAM, SSAM, WSAM

RHO = 0.3
TOL = {"atol": 1e-12, "rtol": 1e-12}


def _setup(cls, **hyper):
    q = Quadratic()
    opt = cls(q.parameters(), torch.optim.SGD, lr=0.0, **hyper)
    w = q.w.detach().clone()
    g = q.grad_at(w)
    return q, opt, w, g


def _sam_grad(q, w, g, rho=RHO):
    return q.grad_at(w.reshape(-1) + rho * g / g.norm())


def test_sam_gradient_is_g_plus_rho_A_g_over_norm():
    q, opt, _, g = _setup(SAM, rho=RHO)
    (final,) = final_grad(opt, q)
    expected = g + RHO * q.A @ g / g.norm()
    torch.testing.assert_close(final.reshape(-1), expected, **TOL)


def test_asam_constraint_is_active_and_gradient_matches():
    eta = 0.05
    q, opt, w, g = _setup(ASAM, rho=RHO, eta=eta)
    t = w.reshape(-1).abs() + eta
    opt.zero_grad()
    q().backward()
    opt.perturb()
    e = (q.w.detach() - w).reshape(-1)
    assert torch.allclose((e / t).norm(), torch.tensor(RHO, dtype=torch.float64), rtol=1e-12)
    torch.testing.assert_close(e, RHO * t**2 * g / (t * g).norm(), **TOL)
    q().backward()
    opt.unperturb()
    expected = g + RHO * q.A @ (t**2 * g) / (t * g).norm()
    torch.testing.assert_close(q.w.grad.reshape(-1), expected, **TOL)
    assert torch.equal(q.w.detach(), w)


def test_crsam_curvature_term_vanishes_on_a_quadratic():
    q, opt, w, g = _setup(CRSAM, rho=RHO, gamma=1.0, beta=0.0)
    (final,) = final_grad(opt, q)
    # final = g+ + (g+ + g- - 2 g0): the curvature finite difference is 0 for a quadratic
    torch.testing.assert_close(final.reshape(-1), _sam_grad(q, w, g), **TOL)


def test_crsam_slope_term_is_two_rho_A_g_over_norm():
    q, opt, w, g = _setup(CRSAM, rho=RHO, gamma=0.0, beta=1.0)
    (final,) = final_grad(opt, q)
    slope = final.reshape(-1) - _sam_grad(q, w, g)
    torch.testing.assert_close(slope, 2 * RHO * q.A @ g / g.norm(), **TOL)


def test_ssam_keeps_clean_norm_and_perturbed_direction():
    q, opt, w, g = _setup(SSAM, rho=RHO)
    (final,) = final_grad(opt, q)
    final = final.reshape(-1)
    gp = _sam_grad(q, w, g)
    torch.testing.assert_close(final.norm(), g.norm(), **TOL)
    torch.testing.assert_close(final / final.norm(), gp / gp.norm(), **TOL)


def test_gsam_final_gradient_and_invariant():
    alpha = 0.7
    q, opt, w, g = _setup(GSAM, rho=RHO, alpha=alpha)
    (final,) = final_grad(opt, q)
    final = final.reshape(-1)
    gp = _sam_grad(q, w, g)
    g_perp = g - (g @ gp) / (gp @ gp) * gp
    torch.testing.assert_close(final, gp - alpha * g_perp, **TOL)
    torch.testing.assert_close(final @ gp, gp @ gp, **TOL)
    assert (g_perp.norm() / g.norm()) > 1e-3  # the projection is not trivial here


@pytest.mark.parametrize("gamma", [0.3, 0.9])
def test_wsam_coupled_mixes_clean_and_perturbed(gamma):
    q, opt, w, g = _setup(WSAM, rho=RHO, gamma=gamma, decouple=False)
    (final,) = final_grad(opt, q)
    a = gamma / (1 - gamma)
    torch.testing.assert_close(final.reshape(-1), g + a * (_sam_grad(q, w, g) - g), **TOL)


def test_wsam_decoupled_update_is_base_step_then_sharpness_correction():
    gamma, lr = 0.8, 0.1
    q = Quadratic()
    w = q.w.detach().clone()
    g = q.grad_at(w)
    opt = WSAM(q.parameters(), torch.optim.SGD, rho=RHO, gamma=gamma, lr=lr)
    final_grad(opt, q)
    a = gamma / (1 - gamma)
    expected = w.reshape(-1) - lr * g - lr * a * (_sam_grad(q, w, g) - g)
    torch.testing.assert_close(q.w.detach().reshape(-1), expected, **TOL)


def test_sam_norm_is_global_across_groups_with_per_group_rho():
    from optim_helpers import batch, mse, small_net

    net = small_net()
    x, y = batch()
    opt = SAM(
        [{"params": net[0].parameters(), "rho": 0.1}, {"params": net[2].parameters(), "rho": 0.3}],
        torch.optim.SGD,
        lr=0.0,
    )
    before = [p.detach().clone() for p in net.parameters()]
    mse(net, x, y).backward()
    grads = [p.grad.clone() for p in net.parameters()]
    norm = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))
    opt.perturb()
    rhos = [0.1, 0.1, 0.3, 0.3]
    for p, b, g, rho in zip(net.parameters(), before, grads, rhos):
        torch.testing.assert_close(p.detach() - b, rho * g / norm, atol=1e-14, rtol=1e-12)
    mse(net, x, y).backward()
    opt.unperturb()
    opt.base_step()
