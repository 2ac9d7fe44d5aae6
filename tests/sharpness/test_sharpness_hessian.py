"""Hessian eigenvalues (shifted power iteration) and trace (Hutchinson) against exact quadratics."""

import math

import pytest
import torch

from monai_sam.sharpness import hessian_top_eigenvalue, hessian_trace

EIGENVALUES = [6.0, 2.5, 1.0, 0.5, -1.5, 0.0]


def test_top_eigenvalue_exact_on_quadratic(quadratic, spectrum, dummy_batch):
    a, q = spectrum(EIGENVALUES)
    w = torch.linspace(-1, 1, 6, dtype=torch.float64)
    model, loss_fn = quadratic(a, torch.ones(6, dtype=torch.float64), w)
    result = hessian_top_eigenvalue(
        model, dummy_batch, loss_fn, iters=500, tol=1e-12, return_eigenvector=True, progress=False
    )
    assert result.converged
    assert abs(result.eigenvalue - 6.0) < 1e-6
    v = result.eigenvector[0]
    assert abs(abs(float(v @ q[:, 0])) - 1.0) < 1e-5  # the eigenvector of 6, up to sign
    assert result.forward_passes == result.iterations


@pytest.mark.parametrize(
    ("eigenvalues", "top", "smallest"),
    [
        ([2.0, 1.0, 0.5, -6.0, -1.0, 0.0], 2.0, -6.0),  # negative curvature dominates in magnitude
        ([-1.0, -3.0, -8.0, -2.0], -1.0, -8.0),  # negative definite: the largest is still negative
    ],
)
def test_largest_algebraic_eigenvalue_when_a_negative_one_dominates(
    quadratic, spectrum, dummy_batch, eigenvalues, top, smallest
):
    a, q = spectrum(eigenvalues, seed=1)
    model, loss_fn = quadratic(
        a,
        torch.ones(len(eigenvalues), dtype=torch.float64),
        torch.ones(len(eigenvalues), dtype=torch.float64),
    )
    result = hessian_top_eigenvalue(
        model, dummy_batch, loss_fn, iters=2000, tol=1e-13, return_eigenvector=True, progress=False
    )
    assert result.converged
    assert result.eigenvalue == pytest.approx(top, abs=1e-6)  # not the largest magnitude
    assert result.most_negative == pytest.approx(smallest, abs=1e-6)
    column = q[:, eigenvalues.index(top)]
    assert abs(abs(float(result.eigenvector[0] @ column)) - 1.0) < 1e-5
    assert result.forward_passes == result.iterations


def test_most_negative_on_request_and_unchanged_top(quadratic, spectrum, dummy_batch):
    a, _ = spectrum(EIGENVALUES)
    w = torch.linspace(-1, 1, 6, dtype=torch.float64)
    model, loss_fn = quadratic(a, torch.ones(6, dtype=torch.float64), w)
    plain = hessian_top_eigenvalue(model, dummy_batch, loss_fn, iters=500, tol=1e-12, progress=False)
    assert plain.most_negative is None  # positive curvature dominates: not needed, not computed
    both = hessian_top_eigenvalue(
        model, dummy_batch, loss_fn, iters=500, tol=1e-12, most_negative=True, progress=False
    )
    assert both.eigenvalue == plain.eigenvalue  # the first phase is the same power iteration
    assert both.most_negative == pytest.approx(-1.5, abs=1e-6)
    assert both.iterations > plain.iterations


def test_power_iteration_stops_at_max_iters(quadratic, spectrum, dummy_batch):
    a, _ = spectrum([1.0, 0.999, 0.5])  # tiny eigengap: cannot converge in 3 steps
    model, loss_fn = quadratic(a, torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    result = hessian_top_eigenvalue(model, dummy_batch, loss_fn, iters=3, tol=1e-14, progress=False)
    assert result.iterations == 3 and not result.converged


def test_top_eigenvalue_zero_hessian(quadratic, dummy_batch):
    model, loss_fn = quadratic(
        torch.zeros(3, 3, dtype=torch.float64),
        torch.ones(3, dtype=torch.float64),
        torch.ones(3, dtype=torch.float64),
    )
    result = hessian_top_eigenvalue(model, dummy_batch, loss_fn, progress=False)
    assert result.eigenvalue == 0.0 and result.iterations == 1


def test_hutchinson_exact_for_diagonal_hessian(quadratic, dummy_batch):
    diag = torch.tensor([3.0, -1.0, 0.25, 7.0], dtype=torch.float64)
    model, loss_fn = quadratic(
        torch.diag(diag), torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    )
    result = hessian_trace(model, dummy_batch, loss_fn, probes=5, progress=False)
    assert all(abs(s - 9.25) < 1e-12 for s in result.samples)
    assert abs(result.trace - 9.25) < 1e-12 and result.stderr < 1e-12


def test_hutchinson_unbiased_with_correct_standard_error(quadratic, spectrum, dummy_batch):
    a, _ = spectrum(EIGENVALUES, seed=3)
    model, loss_fn = quadratic(a, torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64))
    probes = 1500
    result = hessian_trace(model, dummy_batch, loss_fn, probes=probes, progress=False)
    exact = float(torch.trace(a))
    assert abs(result.trace - exact) < 4 * result.stderr
    # Rademacher probes: Var(v^T A v) = 2 * sum_{i != j} A_ij^2 (Gaussian probes would add 2 * sum A_ii^2)
    off_diagonal = a - torch.diag(torch.diag(a))
    expected_stderr = math.sqrt(2 * float((off_diagonal**2).sum()) / probes)
    assert result.stderr == pytest.approx(expected_stderr, rel=0.1)
    assert result.stderr == pytest.approx(float(torch.tensor(result.samples).std()) / math.sqrt(probes))


def test_seed_makes_estimates_reproducible(quadratic, spectrum, dummy_batch):
    a, _ = spectrum(EIGENVALUES)
    model, loss_fn = quadratic(a, torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64))
    first = hessian_trace(model, dummy_batch, loss_fn, probes=4, seed=1, progress=False).samples
    again = hessian_trace(model, dummy_batch, loss_fn, probes=4, seed=1, progress=False).samples
    other = hessian_trace(model, dummy_batch, loss_fn, probes=4, seed=2, progress=False).samples
    assert first == again and first != other


def test_rejects_bad_arguments(quadratic, dummy_batch):
    model, loss_fn = quadratic(
        torch.eye(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64), torch.ones(2)
    )
    with pytest.raises(ValueError, match="iters"):
        hessian_top_eigenvalue(model, dummy_batch, loss_fn, iters=0)
    with pytest.raises(ValueError, match="probes"):
        hessian_trace(model, dummy_batch, loss_fn, probes=0)
    with pytest.raises(TypeError, match="unknown option"):
        hessian_trace(model, dummy_batch, loss_fn, max_batch=2)
    with pytest.raises(ValueError, match="mode"):
        hessian_trace(model, dummy_batch, loss_fn, mode="inference")
