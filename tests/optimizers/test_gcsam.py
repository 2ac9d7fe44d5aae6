"""GCSAM: closed forms of both normalisations on a quadratic, and pytorch_optimizer's ``SAM(use_gc=True)``."""

from __future__ import annotations

import copy

import pytest
import torch
from optim_helpers import Quadratic, batch, final_grad, fp64_squared_grad_norm, mse, small_net

from monai_sam.optimizers import GCSAM, SAM, create_optimizer
from monai_sam.optimizers.gcsam import centralize_


def _gc(g: torch.Tensor) -> torch.Tensor:
    """Reference gradient centralisation of one matrix: subtract each row's mean."""
    return g - g.mean(dim=1, keepdim=True)


@pytest.mark.parametrize("norm", ["centralized", "raw"])
def test_final_gradient_is_the_gradient_at_the_centralised_ascent_point(norm):
    rho = 0.3
    q = Quadratic()
    opt = GCSAM(q.parameters(), torch.optim.SGD, rho=rho, norm=norm, lr=0.0)
    w = q.w.detach().clone()
    g = q.grad_at(w).reshape(w.shape)
    direction = _gc(g)
    assert direction.abs().max() > 1e-3 and (direction - g).abs().max() > 1e-3  # GC really changes g
    divisor = direction.norm() if norm == "centralized" else g.norm()
    e = rho * direction / divisor
    (got,) = final_grad(opt, q)
    torch.testing.assert_close(got.reshape(-1), q.grad_at(w + e), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize(("norm", "radius"), [("centralized", "equal"), ("raw", "smaller")])
def test_perturbation_radius(norm, radius):
    rho = 0.3
    q = Quadratic()
    opt = GCSAM(q.parameters(), torch.optim.SGD, rho=rho, norm=norm, lr=0.0)
    w = q.w.detach().clone()
    q().backward()
    opt.perturb()
    e = q.w.detach() - w
    torch.testing.assert_close(e.mean(dim=1), torch.zeros(3, dtype=e.dtype), atol=1e-14, rtol=0)
    if radius == "equal":  # the paper: ||e|| = rho
        torch.testing.assert_close(e.norm(), torch.tensor(rho, dtype=e.dtype), atol=1e-12, rtol=0)
    else:  # pytorch_optimizer / the authors' script: ||e|| = rho ||GC(g)|| / ||g|| < rho
        g = q.grad_at(w).reshape(w.shape)
        expected = rho * _gc(g).norm() / g.norm()
        torch.testing.assert_close(e.norm(), expected, atol=1e-12, rtol=0)
        assert e.norm() < rho - 1e-3
    q().backward()
    opt.unperturb()
    opt.base_step()


def test_centralisation_is_over_all_dims_but_the_first_and_skips_vectors():
    gen = torch.Generator().manual_seed(0)
    kernel = torch.randn(4, 3, 2, 2, generator=gen, dtype=torch.float64) + 1.0
    bias = torch.randn(4, generator=gen, dtype=torch.float64) + 1.0
    k0, b0 = kernel.clone(), bias.clone()
    centralize_([kernel, bias])
    torch.testing.assert_close(kernel.mean(dim=(1, 2, 3)), torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(kernel, k0 - k0.mean(dim=(1, 2, 3), keepdim=True), atol=0, rtol=0)
    assert torch.equal(bias, b0)


def test_bias_free_vectors_only_is_sam():
    """With no tensor of more than one dimension, GC is the identity and GCSAM is SAM bit-exactly."""
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    b = torch.nn.Parameter(a.detach().clone())
    target = torch.linspace(-1, 1, 5, dtype=torch.float64)
    opt = GCSAM([a], torch.optim.SGD, rho=0.2, lr=0.1)
    ref = SAM([b], torch.optim.SGD, rho=0.2, lr=0.1)
    for _ in range(3):
        for o, p in ((opt, a), (ref, b)):
            o.step(lambda p=p: ((p - target) ** 4).sum().backward() or ((p - target) ** 4).sum())
    assert torch.equal(a, b)


def _kozistr_steps(model, x, y, steps, rho):
    from pytorch_optimizer import SAM as KozistrSAM

    opt = KozistrSAM(
        model.parameters(), torch.optim.SGD, rho=rho, use_gc=True, foreach=False, lr=0.1, momentum=0.9
    )
    for _ in range(steps):
        opt.zero_grad()
        mse(model, x, y).backward()
        opt.first_step(zero_grad=True)
        mse(model, x, y).backward()
        opt.second_step(zero_grad=True)


def _our_steps(model, x, y, steps, rho, norm):
    opt = create_optimizer("gcsam", model.parameters(), base="sgd", rho=rho, norm=norm, lr=0.1, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        mse(model, x, y).backward()
        opt.perturb()
        mse(model, x, y).backward()
        opt.unperturb()
        opt.base_step()


@pytest.mark.parametrize("their_norm", ["fp64", "fp32"])
def test_raw_norm_mode_matches_pytorch_optimizer_sam_use_gc(monkeypatch, their_norm):
    kozistr_sam = pytest.importorskip("pytorch_optimizer.optimizer.sam")
    if their_norm == "fp64":
        # pytorch_optimizer takes the global norm in fp32 even for fp64 weights (spec §1.3); with the norm
        # in fp64 the two implementations must agree to rounding
        monkeypatch.setattr(kozistr_sam, "get_global_gradient_norm", fp64_squared_grad_norm)
    rho = 0.5
    x, y = batch()
    ours, theirs, paper = small_net(), small_net(), small_net()
    _our_steps(ours, x, y, 6, rho, "raw")
    _kozistr_steps(theirs, x, y, 6, rho)
    _our_steps(paper, x, y, 6, rho, "centralized")
    # fp32 norm: rho / norm is off by up to 6e-8 relative each step, ~5e-9 on the weights after 6 steps
    tol = {"rtol": 1e-12, "atol": 1e-13} if their_norm == "fp64" else {"rtol": 1e-6, "atol": 2e-8}
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q, **tol)
    differ = max(float((p - q).detach().abs().max()) for p, q in zip(paper.parameters(), theirs.parameters()))
    assert differ > 1e-4  # the paper's normalisation is a different method (power of the comparison)


def test_create_optimizer_validates_the_norm_option():
    with pytest.raises(ValueError, match="norm="):
        create_optimizer("gcsam", small_net().parameters(), norm="l1")
    opt = create_optimizer("gcsam", copy.deepcopy(small_net()).parameters(), rho=0.1, lr=1e-3)
    assert isinstance(opt, GCSAM) and opt.norm == "centralized" and opt.final_grad_is_last_pass
