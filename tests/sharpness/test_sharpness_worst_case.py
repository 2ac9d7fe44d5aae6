"""Worst-case, adaptive and SAM-direction sharpness against closed forms and invariances."""

import pytest
import torch
from torch import nn

from monai_sam.sharpness import adaptive_sharpness, sam_sharpness, worst_case_sharpness

F64 = torch.float64
RHO = 0.1


def linear_model(quadratic, b, w):
    return quadratic(torch.zeros(len(b), len(b), dtype=F64), b, w)


@pytest.mark.parametrize(
    ("measure", "norm", "expected"),
    [
        (worst_case_sharpness, "l2", lambda b, w: RHO * b.norm()),
        (worst_case_sharpness, "linf", lambda b, w: RHO * b.abs().sum()),
        (adaptive_sharpness, "l2", lambda b, w: RHO * (w.abs() * b).norm()),
        (adaptive_sharpness, "linf", lambda b, w: RHO * (w.abs() * b).abs().sum()),
    ],
)
def test_linear_model_closed_form(quadratic, dummy_batch, measure, norm, expected):
    b = torch.tensor([0.5, -2.0, 1.0, 0.0, 3.0], dtype=F64)
    w = torch.tensor([1.0, 0.5, -2.0, 1.0, 0.0], dtype=F64)
    model, loss_fn = linear_model(quadratic, b, w)
    result = measure(model, dummy_batch, loss_fn, rho=RHO, norm=norm, steps=3, progress=False)
    assert result.sharpness == pytest.approx(float(expected(b, w)), rel=1e-10)
    assert result.perturbed_loss - result.loss == pytest.approx(result.sharpness)


def test_adaptive_does_not_move_zero_weights(quadratic, dummy_batch):
    b = torch.tensor([0.0, 0.0, 5.0], dtype=F64)
    model, loss_fn = linear_model(quadratic, b, torch.tensor([1.0, -1.0, 0.0], dtype=F64))
    assert adaptive_sharpness(model, dummy_batch, loss_fn, rho=RHO, progress=False).sharpness == 0.0
    shifted = adaptive_sharpness(model, dummy_batch, loss_fn, rho=RHO, eta=0.01, progress=False)
    assert shifted.sharpness == pytest.approx(RHO * 0.01 * 5.0)


def test_quadratic_gradient_along_top_eigenvector_is_exact(quadratic, spectrum, dummy_batch):
    a, q = spectrum([4.0, 1.0, 0.5, -0.5])
    w = torch.zeros(4, dtype=F64)
    b = 2.0 * q[:, 0]  # gradient at w = 0 is b, along the top eigenvector
    model, loss_fn = quadratic(a, b, w)
    result = worst_case_sharpness(model, dummy_batch, loss_fn, rho=RHO, steps=5, progress=False)
    assert result.sharpness == pytest.approx(RHO * 2.0 + 0.5 * RHO**2 * 4.0, rel=1e-10)


def _trust_region_max(a: torch.Tensor, g: torch.Tensor, rho: float) -> float:
    """Exact max of g^T d + 1/2 d^T A d over ||d|| <= rho: d = (mu I - A)^{-1} g with ||d|| = rho."""
    lam, vecs = torch.linalg.eigh(a)
    gc = vecs.T @ g
    lo, hi = float(lam.max()), float(lam.max()) + 1e3
    for _ in range(200):  # bisection on the secular equation ||d(mu)|| = rho
        mu = (lo + hi) / 2
        lo, hi = (mu, hi) if float((gc / (mu - lam)).norm()) > rho else (lo, mu)
    d = vecs @ (gc / (mu - lam))
    return float(g @ d + 0.5 * d @ a @ d)


def test_quadratic_matches_trust_region_solution_and_beats_sam(quadratic, spectrum, dummy_batch):
    a, _ = spectrum([4.0, 1.0, 0.5, -0.5], seed=1)
    w = torch.tensor([0.3, -0.2, 0.1, 0.5], dtype=F64)
    b = torch.tensor([0.1, 0.2, -0.3, 0.05], dtype=F64)
    model, loss_fn = quadratic(a, b, w)
    g = a @ w + b
    worst = worst_case_sharpness(model, dummy_batch, loss_fn, rho=RHO, steps=20, progress=False)
    assert worst.sharpness == pytest.approx(_trust_region_max(a, g, RHO), rel=1e-8)
    sam = sam_sharpness(model, dummy_batch, loss_fn, rho=RHO, progress=False)
    assert sam.sharpness + 5e-5 < worst.sharpness


def test_sam_direction_matches_hand_computation(quadratic, spectrum, dummy_batch):
    a, _ = spectrum([4.0, 1.0, 0.5, -0.5], seed=1)
    w = torch.tensor([0.3, -0.2, 0.1, 0.5], dtype=F64)
    b = torch.tensor([0.1, 0.2, -0.3, 0.05], dtype=F64)
    model, loss_fn = quadratic(a, b, w)
    g = a @ w + b
    e = RHO * g / g.norm()
    result = sam_sharpness(model, dummy_batch, loss_fn, rho=RHO, progress=False)
    assert result.sharpness == pytest.approx(float(loss_fn(w + e, None) - loss_fn(w, None)), rel=1e-12)
    assert result.sharpness == pytest.approx(float(RHO * g.norm() + 0.5 * e @ a @ e), rel=1e-12)
    assert result.forward_passes == 2


class ReluNet(nn.Module):
    """A bias-free two-layer ReLU network (positively homogeneous in each layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(6, 12, bias=False)
        self.second = nn.Linear(12, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.relu(self.first(x)))


def test_adaptive_invariant_to_layer_rescaling_worst_case_not():
    torch.manual_seed(0)
    net = ReluNet().double()
    batch = (torch.randn(16, 6, dtype=F64), torch.randint(0, 3, (16,)))
    rescaled = ReluNet().double()
    rescaled.load_state_dict(net.state_dict())
    with torch.no_grad():
        rescaled.first.weight.mul_(4.0)
        rescaled.second.weight.div_(4.0)
    loss_fn = nn.CrossEntropyLoss()
    kwargs = {"rho": 0.2, "steps": 5, "random_starts": 1, "progress": False}
    adaptive = [adaptive_sharpness(m, batch, loss_fn, **kwargs).sharpness for m in (net, rescaled)]
    worst = [worst_case_sharpness(m, batch, loss_fn, **kwargs).sharpness for m in (net, rescaled)]
    assert adaptive[0] > 1e-3
    assert adaptive[1] == pytest.approx(adaptive[0], rel=1e-9)
    assert abs(worst[1] - worst[0]) > 0.05 * worst[0]


def test_rejects_bad_arguments(quadratic, dummy_batch):
    model, loss_fn = linear_model(quadratic, torch.ones(2, dtype=F64), torch.ones(2, dtype=F64))
    with pytest.raises(ValueError, match="norm"):
        worst_case_sharpness(model, dummy_batch, loss_fn, norm="l1")
    with pytest.raises(ValueError, match="rho"):
        adaptive_sharpness(model, dummy_batch, loss_fn, rho=-1.0)
    with pytest.raises(ValueError, match="eta"):
        adaptive_sharpness(model, dummy_batch, loss_fn, eta=-0.1)
    with pytest.raises(ValueError, match="rho"):
        sam_sharpness(model, dummy_batch, loss_fn, rho=0.0)


def test_two_steps_follow_the_documented_schedule(quadratic, spectrum, dummy_batch):
    a, _ = spectrum([4.0, 1.0, 0.5, -3.0], seed=2)
    w = torch.tensor([0.3, -0.2, 0.1, 0.5], dtype=F64)
    b = torch.tensor([0.1, 0.2, -0.3, 0.05], dtype=F64)
    model, loss_fn = quadratic(a, b, w)

    def grad(z):
        return a @ (w + z) + b

    z1 = RHO * grad(0 * w) / grad(0 * w).norm()  # step rho: the SAM point
    z2 = z1 + 0.5 * RHO * grad(z1) / grad(z1).norm()  # step rho / 2, then projection
    z2 = z2 * min(1.0, RHO / float(z2.norm()))
    losses = [float(loss_fn(w + z, None)) for z in (0 * w, z1, z2)]
    result = worst_case_sharpness(
        model, dummy_batch, loss_fn, rho=RHO, steps=2, random_starts=0, progress=False
    )
    assert result.sharpness == pytest.approx(max(losses) - losses[0], rel=1e-12)
    assert result.forward_passes == 4  # L(w), two gradient evaluations, the final iterate


@pytest.mark.parametrize("measure", [worst_case_sharpness, adaptive_sharpness, sam_sharpness])
def test_per_batch_is_weighted_mean_of_single_batches(measure):
    torch.manual_seed(1)
    net = ReluNet().double()
    x, y = torch.randn(6, 6, dtype=F64), torch.randint(0, 3, (6,))
    loader = [(x[:4], y[:4]), (x[4:], y[4:])]
    kwargs = (
        {"progress": False}
        if measure is sam_sharpness
        else {"steps": 3, "random_starts": 0, "progress": False}
    )
    parts = [measure(net, batch, nn.CrossEntropyLoss(), **kwargs) for batch in loader]
    per_batch = measure(net, loader, nn.CrossEntropyLoss(), per_batch=True, **kwargs)
    assert per_batch.per_batch
    for field in ("sharpness", "loss", "perturbed_loss"):
        expected = (4 * getattr(parts[0], field) + 2 * getattr(parts[1], field)) / 6
        assert getattr(per_batch, field) == pytest.approx(expected, rel=1e-10), field
    joint = measure(net, loader, nn.CrossEntropyLoss(), **kwargs)
    assert joint.loss == pytest.approx(per_batch.loss, rel=1e-10)
    assert abs(joint.sharpness - per_batch.sharpness) > 1e-6  # the max of a mean is not a mean of maxima
