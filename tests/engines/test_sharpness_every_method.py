"""Every optimizer the library names runs two iterations inside a real SupervisedTrainer."""

from __future__ import annotations

import math

import pytest
import torch

from monai_sam.engines import SharpnessAwareIteration
from monai_sam.optimizers import SharpnessAwareOptimizer, available_optimizers, create_optimizer


@pytest.mark.parametrize("name", available_optimizers())
def test_method_runs_two_iterations(problem, name):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 6),
        torch.nn.BatchNorm1d(6),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(6, 2),
    ).double()
    before = [p.detach().clone() for p in net.parameters()]
    if name == "bsam":  # its own update (no base) and a required data-set size
        opt = create_optimizer(name, net.parameters(), lr=0.05, num_data=64)
    else:
        extra = {"momentum": 0.9} if name == "msam" else {}  # MSAM perturbs along the momentum
        opt = create_optimizer(name, net.parameters(), base="sgd", lr=0.05, **extra)
    passes = [opt.num_passes] if isinstance(opt, SharpnessAwareOptimizer) else [1]
    trainer = problem.run(net, opt, problem.batches(num_batches=2), SharpnessAwareIteration(), max_epochs=1)
    item = trainer.state.output[0]
    assert all(torch.isfinite(p).all() for p in net.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(net.parameters(), before))
    assert int(net[1].num_batches_tracked) == 2  # clean-pass statistics only
    if isinstance(opt, SharpnessAwareOptimizer):
        assert item["num_passes"] >= 1 and passes[0] == opt.passes_per_step
        assert math.isfinite(item["loss_perturbed"]) or item["num_passes"] == 1
    else:
        assert "sharpness" not in item
