"""The combination rules of monai_sam.optimizers.combination against their closed forms (in float64)."""

from __future__ import annotations

import pytest
import torch

from monai_sam.optimizers.combination import crsam_combine_, gsam_combine_, looksam_orthogonal_, wsam_coupled_


def _grads(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(3, 2, generator=g, dtype=torch.float64),
        torch.randn(4, generator=g, dtype=torch.float64),
    ]


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_gsam_subtracts_alpha_times_the_part_of_g0_orthogonal_to_gp(alpha):
    g0, gp = _grads(0), _grads(1)
    f0, fp = _flat(g0), _flat(gp)
    parallel = torch.dot(f0, fp) / torch.dot(fp, fp)
    orthogonal = f0 - parallel * fp
    out = [t.clone() for t in gp]
    gsam_combine_(out, g0, alpha, parallel)
    torch.testing.assert_close(_flat(out), fp - alpha * orthogonal, rtol=1e-12, atol=1e-12)
    assert abs(torch.dot(orthogonal, fp)) < 1e-12  # what "orthogonal" means


def test_gsam_with_alpha_zero_is_sam_even_for_a_non_finite_projection():
    gp = _grads(1)
    out = [t.clone() for t in gp]
    gsam_combine_(out, _grads(0), 0.0, torch.tensor(float("nan"), dtype=torch.float64))
    assert all(torch.equal(a, b) for a, b in zip(out, gp))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.9])
def test_wsam_coupled_mixes_gp_and_g0(gamma):
    g0, gp = _grads(2), _grads(3)
    a = gamma / (1.0 - gamma)
    out = [t.clone() for t in gp]
    wsam_coupled_(out, g0, a)
    torch.testing.assert_close(_flat(out), a * _flat(gp) + (1.0 - a) * _flat(g0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("gamma", "beta"), [(0.0, 0.0), (0.1, 0.01), (0.5, 0.3)])
def test_crsam_adds_the_curvature_and_slope_terms(gamma, beta):
    g0, plus, minus = _grads(4), _grads(5), _grads(6)
    f0, fplus, fminus = _flat(g0), _flat(plus), _flat(minus)
    expected = fplus + gamma * (fplus + fminus - 2.0 * f0) + beta * (fplus - fminus)
    out = [t.clone() for t in minus]
    crsam_combine_(out, plus, g0, gamma, beta)
    torch.testing.assert_close(_flat(out), expected, rtol=1e-12, atol=1e-12)


def test_crsam_with_zero_weights_is_sams_gradient_exactly():
    plus = _grads(5)
    out = [t.clone() for t in _grads(6)]
    crsam_combine_(out, plus, _grads(4), 0.0, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(out, plus))


def test_looksam_orthogonal_part_is_orthogonal_to_g0():
    g0, gp = _grads(7), _grads(8)
    f0, fp = _flat(g0), _flat(gp)
    coefficient = torch.dot(f0, fp) / torch.dot(f0, f0)
    out = [t.clone() for t in g0]
    looksam_orthogonal_(out, gp, coefficient)
    torch.testing.assert_close(_flat(out), fp - coefficient * f0, rtol=1e-12, atol=1e-12)
    assert abs(torch.dot(_flat(out), f0)) < 1e-12


@pytest.mark.parametrize("rule", ["gsam", "wsam", "crsam", "looksam"])
def test_rules_accept_an_empty_group(rule):
    scalar = torch.tensor(0.5)
    calls = {
        "gsam": lambda: gsam_combine_([], [], 0.4, scalar),
        "wsam": lambda: wsam_coupled_([], [], 0.5),
        "crsam": lambda: crsam_combine_([], [], [], 0.1, 0.1),
        "looksam": lambda: looksam_orthogonal_([], [], scalar),
    }
    calls[rule]()  # a param group without gradients this step: nothing to do, no error
