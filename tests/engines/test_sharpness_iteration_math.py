"""One iteration inside a real SupervisedTrainer equals a hand-computed step of the method (float64)."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from monai_sam.engines import SharpnessAwareIteration
from monai_sam.optimizers import create_optimizer

LR = 0.1


def _grad(net, params, x, y):
    """Loss and gradient of the mean cross-entropy at ``params`` (dict name -> tensor)."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    loss = torch.nn.functional.cross_entropy(functional_call(net, leaves, (x,)), y)
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return loss.detach(), dict(zip(leaves, grads))


def _norm(g):
    return torch.sqrt(sum((v**2).sum() for v in g.values()))


def _shift(params, direction, scale):
    return {k: params[k] + scale * direction[k] for k in params}


def _sam_final(net, w, x, y, rho):
    _, g0 = _grad(net, w, x, y)
    _, gp = _grad(net, _shift(w, g0, rho / (_norm(g0) + 1e-12)), x, y)
    return gp


def _gsam_final(net, w, x, y, rho, alpha):
    _, g0 = _grad(net, w, x, y)
    _, gp = _grad(net, _shift(w, g0, rho / (_norm(g0) + 1e-12)), x, y)
    dot = sum((g0[k] * gp[k]).sum() for k in w)
    coef = dot / (_norm(gp) ** 2)
    return {k: gp[k] - alpha * (g0[k] - coef * gp[k]) for k in w}


def _crsam_final(net, w, x, y, rho, gamma, beta):
    _, g0 = _grad(net, w, x, y)
    scale = rho / (_norm(g0) + 1e-12)
    _, gplus = _grad(net, _shift(w, g0, scale), x, y)
    _, gminus = _grad(net, _shift(w, g0, -scale), x, y)
    return {
        k: gplus[k] + gamma * (gplus[k] + gminus[k] - 2 * g0[k]) + beta * (gplus[k] - gminus[k]) for k in w
    }


CASES = {
    "sam": ({"rho": 0.3}, lambda net, w, x, y: _sam_final(net, w, x, y, 0.3)),
    "gsam": ({"rho": 0.3, "alpha": 0.4}, lambda net, w, x, y: _gsam_final(net, w, x, y, 0.3, 0.4)),
    "crsam": (
        {"rho": 0.3, "gamma": 0.2, "beta": 0.1},
        lambda net, w, x, y: _crsam_final(net, w, x, y, 0.3, 0.2, 0.1),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_iteration_equals_hand_step(problem, name):
    hyper, final_grad = CASES[name]
    net = problem.net(hidden=4)
    batches = problem.batches(num_batches=1)
    w = {k: v.detach().clone() for k, v in net.named_parameters()}
    opt = create_optimizer(name, net.parameters(), base="sgd", lr=LR, **hyper)
    trainer = problem.run(net, opt, batches, SharpnessAwareIteration())
    x, y = batches[0]
    expected = {k: w[k] - LR * g for k, g in final_grad(net, w, x, y).items()}
    for k, p in net.named_parameters():
        torch.testing.assert_close(p.detach(), expected[k], rtol=1e-10, atol=1e-12)
    # and not merely the base optimizer's plain step
    _, g0 = _grad(net, w, x, y)
    assert any((w[k] - LR * g0[k] - expected[k]).abs().max() > 1e-6 for k in w)
    assert trainer.state.output[0]["num_passes"] == (3 if name == "crsam" else 2)


def test_two_iterations_with_momentum_match_manual_loop(problem):
    """Persistent base state (momentum) flows between iterations exactly like a hand-written loop."""
    batches = problem.batches(num_batches=2)
    net, ref = problem.net(hidden=4), problem.net(hidden=4)
    opt = create_optimizer("sam", net.parameters(), base="sgd", lr=LR, momentum=0.9, rho=0.2)
    problem.run(net, opt, batches, SharpnessAwareIteration())
    ref_opt = torch.optim.SGD(ref.parameters(), lr=LR, momentum=0.9)
    for x, y in batches:
        w = {k: v.detach().clone() for k, v in ref.named_parameters()}
        gp = _sam_final(ref, w, x, y, 0.2)
        for k, p in ref.named_parameters():
            p.grad = gp[k].clone()
        ref_opt.step()
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
