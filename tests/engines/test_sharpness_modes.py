"""Modes that skip passes in a real SupervisedTrainer: forward passes are counted with a hook."""

from __future__ import annotations

import copy

import pytest
import torch
from ignite.engine import Events

from monai_sam.engines import SharpnessAwareIteration, SharpnessAwareTrainer, SharpnessKeys
from monai_sam.optimizers import SAM, LookSAM


def _forward_counter(net):
    """Per-iteration forward counts, filled by a forward hook and closed at ITERATION_COMPLETED."""
    counts = [0]
    net.register_forward_hook(lambda *_: counts.__setitem__(-1, counts[-1] + 1))
    return counts


def _run_counting(problem, optimizer_factory, iteration, num_batches=4, max_epochs=2, **kwargs):
    net = problem.net(hidden=4)
    counts = _forward_counter(net)
    reported = []
    opt = optimizer_factory(net)
    kwargs.setdefault("decollate", False)
    trainer = problem.trainer(net, opt, problem.batches(num_batches), iteration, max_epochs, **kwargs)

    @trainer.on(Events.ITERATION_COMPLETED)
    def _close(engine):
        reported.append(engine.state.output[SharpnessKeys.NUM_PASSES])
        counts.append(0)

    trainer.run()
    return counts[:-1], reported, net


def test_iteration_interval_sets_the_optimizer_and_skips_passes(problem):
    counts, reported, _ = _run_counting(
        problem,
        lambda net: SAM(net.parameters(), torch.optim.SGD, rho=0.1, lr=0.1),
        SharpnessAwareIteration(interval=3),
    )
    assert counts == [2, 1, 1, 2, 1, 1, 2, 1]
    assert reported == counts


def test_looksam_in_the_trainer_takes_one_pass_between_sam_steps(problem):
    counts, _, _ = _run_counting(
        problem,
        lambda net: LookSAM(net.parameters(), torch.optim.SGD, rho=0.1, k=4, lr=0.1),
        SharpnessAwareIteration(),
    )
    assert counts == [2, 1, 1, 1, 2, 1, 1, 1]


def test_start_fraction_runs_the_base_optimizer_first(problem):
    counts, _, _ = _run_counting(
        problem,
        lambda net: SAM(net.parameters(), torch.optim.SGD, rho=0.1, lr=0.1),
        SharpnessAwareIteration(start_fraction=0.5),
    )
    assert counts == [1, 1, 1, 1, 2, 2, 2, 2]  # 8 steps in 2 epochs of 4 iterations


def test_start_fraction_counts_optimizer_steps_under_accumulation(problem):
    # 5 iterations per epoch, accumulation 2: windows of 2, 2, 1 -> 3 steps per epoch, 6 in all;
    # start_fraction 0.5 -> the method runs from step 3 (the second epoch) on.
    counts, _, _ = _run_counting(
        problem,
        lambda net: SAM(net.parameters(), torch.optim.SGD, rho=0.1, lr=0.1),
        SharpnessAwareIteration(start_fraction=0.5),
        num_batches=5,
        accumulation_steps=2,
    )
    assert counts == [1] * 5 + [2] * 5


def test_late_phase_first_half_equals_plain_training_through_the_same_iteration(problem):
    batches = problem.batches(4)
    net = problem.net(hidden=4)
    reference = copy.deepcopy(net)
    opt = SAM(net.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)
    problem.run(net, opt, batches, SharpnessAwareIteration(start_fraction=0.5), max_epochs=2)
    plain = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    problem.run(reference, plain, batches, SharpnessAwareIteration(), max_epochs=1)
    # Same first epoch; the second epoch is SAM for one and absent for the other: compare after epoch 1.
    net_after_one = problem.net(hidden=4)
    opt_one = SAM(net_after_one.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)
    opt_one.start_step = 100
    problem.run(net_after_one, opt_one, batches, SharpnessAwareIteration(), max_epochs=1)
    for p, q in zip(net_after_one.parameters(), reference.parameters()):
        assert torch.equal(p, q)
    assert not all(torch.equal(p, q) for p, q in zip(net.parameters(), reference.parameters()))


def test_the_trainer_subclass_takes_the_mode_options(problem):
    net = problem.net(hidden=4)
    counts = _forward_counter(net)
    trainer = SharpnessAwareTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=problem.batches(4),
        network=net,
        optimizer=SAM(net.parameters(), torch.optim.SGD, rho=0.1, lr=0.1),
        loss_function=torch.nn.CrossEntropyLoss(),
        interval=2,
        start_fraction=0.25,
    )
    trainer.run()
    assert sum(counts) == 1 + 2 + 1 + 2


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"interval": 0}, "interval"), ({"start_fraction": 1.0}, "start_fraction")]
)
def test_bad_mode_options_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SharpnessAwareIteration(**kwargs)
