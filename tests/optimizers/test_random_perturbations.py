"""Frob-SAM and Det-SAM: the formulas with reproduced noise, and Frob-SAM's expectation (spec §8, §12.2)."""

from __future__ import annotations

import pytest
import torch
from optim_helpers import Quadratic, final_grad

from monai_sam.optimizers import DetSAM, FrobSAM


def _draws(seed: int, n: int, shape, kind: str, a: float = 0.01) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        t = torch.empty(shape, dtype=torch.float64)
        out.append(
            t.normal_(0.0, 1.0, generator=gen) if kind == "normal" else t.uniform_(-a, a, generator=gen)
        )
    return out


def _loss_and_grad(q: Quadratic, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and gradient of the quadratic at ``w`` (by autograd, independent of the optimizer)."""
    w = w.clone().requires_grad_(True)
    diff = w.reshape(-1) - q.w_star
    loss = 0.5 * diff @ q.A @ diff
    return loss.detach(), torch.autograd.grad(loss, w)[0]


def test_frobsam_matches_formula_with_the_same_noise():
    rho, lam, n = 0.1, 0.3, 3
    q = Quadratic()
    w = q.w.detach().clone()
    opt = FrobSAM(
        q.parameters(),
        torch.optim.SGD,
        rho=rho,
        lam=lam,
        n_samples=n,
        lr=0.0,
        generator=torch.Generator().manual_seed(5),
    )
    (final,) = final_grad(opt, q)
    deltas = _draws(5, n, w.shape, "normal")
    losses, grads = [], []
    for d in deltas:
        loss, grad = _loss_and_grad(q, w + rho * d)
        losses.append(loss)
        grads.append(grad)
    ls, gs = torch.stack(losses), torch.stack(grads)
    cov = ((ls - ls.mean()).reshape(-1, 1, 1) * (gs - gs.mean(0))).sum(0) / (n - 1)
    expected = q.grad_at(w).reshape(w.shape) + lam / rho**2 * cov
    torch.testing.assert_close(final, expected, atol=1e-10, rtol=1e-10)
    assert torch.equal(q.w.detach(), w)  # lr = 0: restored exactly


def test_frobsam_expected_gradient_is_g_plus_lambda_A_g():
    rho, lam = 0.05, 0.2
    q = Quadratic()
    w = q.w.detach().clone()
    opt = FrobSAM(
        q.parameters(),
        torch.optim.SGD,
        rho=rho,
        lam=lam,
        n_samples=3000,
        lr=0.0,
        generator=torch.Generator().manual_seed(0),
    )
    (final,) = final_grad(opt, q)
    g = q.grad_at(w)
    expected = g + lam * q.A @ g
    regulariser = final.reshape(-1) - g
    # relative error of the stochastic regulariser estimate
    assert (regulariser - lam * q.A @ g).norm() / (lam * q.A @ g).norm() < 0.1
    torch.testing.assert_close(final.reshape(-1), expected, rtol=0.05, atol=0.05 * expected.abs().max())


def test_detsam_matches_formula_with_the_same_noise():
    rho, lam, n, a = 0.5, 0.7, 2, 0.2
    q = Quadratic()
    w = q.w.detach().clone()
    opt = DetSAM(
        q.parameters(),
        torch.optim.SGD,
        rho=rho,
        lam=lam,
        n_samples=n,
        half_cube_len=a,
        lr=0.0,
        generator=torch.Generator().manual_seed(9),
    )
    (final,) = final_grad(opt, q)
    g0 = q.grad_at(w).reshape(w.shape)
    loss0 = q().detach()
    c = torch.zeros((), dtype=torch.float64)
    big_g = torch.zeros_like(w)
    for d in _draws(9, n, w.shape, "uniform", a):
        loss, gi = _loss_and_grad(q, w + rho * d)
        x = (loss - loss0) / rho**2
        psi = torch.exp(-x / 2)
        c += psi / n
        big_g += (-psi / 2) / n * (gi - g0)
    expected = g0 + lam * (-2 / c**3) * big_g
    torch.testing.assert_close(final, expected, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("cls", [FrobSAM, DetSAM])
def test_noise_is_reproducible_from_the_global_seed(cls):
    finals = []
    for _ in range(2):
        torch.manual_seed(123)
        q = Quadratic()
        opt = cls(q.parameters(), torch.optim.SGD, rho=0.1, lam=0.1, lr=0.0)
        finals.append(final_grad(opt, q)[0])
    assert torch.equal(finals[0], finals[1])
    torch.manual_seed(124)
    q = Quadratic()
    opt = cls(q.parameters(), torch.optim.SGD, rho=0.1, lam=0.1, lr=0.0)
    assert not torch.equal(final_grad(opt, q)[0], finals[0])


def test_loss_is_required():
    q = Quadratic()
    opt = FrobSAM(q.parameters(), torch.optim.SGD, lr=0.1)
    q().backward()
    with pytest.raises(ValueError, match="loss"):
        opt.perturb()
