"""BatchNorm running statistics policies and dropout RNG replay inside the real trainer."""

from __future__ import annotations

import copy

import pytest
import torch

from monai_sam.engines import SharpnessAwareIteration
from monai_sam.optimizers import create_optimizer


def _bn_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(), torch.nn.Linear(4, 2)
    ).double()


@pytest.mark.parametrize(("policy", "per_iteration"), [("clean", 1), ("momentum_zero", 2), ("all", 2)])
def test_bn_num_batches_tracked(problem, policy, per_iteration):
    net = _bn_net()
    opt = create_optimizer("sam", net.parameters(), base="sgd", lr=0.1, rho=0.5)
    problem.run(net, opt, problem.batches(num_batches=3), SharpnessAwareIteration(bn_policy=policy))
    assert int(net[1].num_batches_tracked) == 3 * per_iteration


@pytest.mark.parametrize(("policy", "clean_only"), [("clean", True), ("momentum_zero", True), ("all", False)])
def test_bn_running_mean_comes_from_one_clean_forward(problem, policy, clean_only):
    net = _bn_net()
    reference = copy.deepcopy(net).train()
    batches = problem.batches(num_batches=1)
    with torch.no_grad():
        reference(batches[0][0])  # one clean forward at w
    opt = create_optimizer("sam", net.parameters(), base="sgd", lr=0.1, rho=0.5)
    problem.run(net, opt, batches, SharpnessAwareIteration(bn_policy=policy))
    same = torch.equal(net[1].running_mean, reference[1].running_mean) and torch.equal(
        net[1].running_var, reference[1].running_var
    )
    assert same is clean_only


def _dropout_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 2)).double()


@pytest.mark.parametrize("replay", [True, False])
def test_replay_rng_gives_the_same_dropout_masks(problem, replay):
    """rho = 0 puts pass 1 at w: with replayed masks it reproduces the clean loss exactly."""
    net = _dropout_net()
    opt = create_optimizer("sam", net.parameters(), base="sgd", lr=0.1, rho=0.0)
    trainer = problem.run(
        net, opt, problem.batches(num_batches=2), SharpnessAwareIteration(replay_rng=replay)
    )
    sharpness = trainer.state.output[0]["sharpness"]
    assert (sharpness == 0.0) is replay


def test_replay_rng_leaves_the_outer_stream_as_one_pass(problem):
    """After a replayed SAM iteration the global generator is where one plain forward leaves it."""
    batches = problem.batches(num_batches=1)
    draws = []
    for name in ("sgd", "sam"):
        net = _dropout_net()
        opt = create_optimizer(name, net.parameters(), base="sgd", lr=0.1)
        torch.manual_seed(123)
        problem.run(net, opt, batches, SharpnessAwareIteration(replay_rng=True))
        draws.append(torch.rand(3))
    assert torch.equal(draws[0], draws[1])
