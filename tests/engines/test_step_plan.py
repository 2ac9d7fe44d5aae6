"""The step plan: resolved on the first iteration, kept while the settings hold, resolved again on change."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from ignite.engine import Events

from monai_sam.engines import SharpnessAwareIteration
from monai_sam.engines.step_plan import StepPlan
from monai_sam.optimizers import SAM


def _spy_resolutions(iteration: SharpnessAwareIteration) -> list[StepPlan]:
    """Record every plan the iteration resolves."""
    resolved: list[StepPlan] = []
    resolve = iteration._resolve_plan

    def recording(engine):
        plan = resolve(engine)
        resolved.append(plan)
        return plan

    iteration._resolve_plan = recording
    return resolved


def _sam(net, **kwargs):
    return SAM(net.parameters(), torch.optim.SGD, lr=0.1, rho=0.05, **kwargs)


def test_the_plan_is_resolved_once_per_run(problem):
    net = problem.net(hidden=3)
    iteration = SharpnessAwareIteration(interval=2)
    resolved = _spy_resolutions(iteration)
    plans = []
    trainer = problem.trainer(net, _sam(net), problem.batches(num_batches=3), iteration, max_epochs=2)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: plans.append(iteration._step_plan))
    trainer.run()
    assert len(resolved) == 1 and len(plans) == 6
    assert all(plan is resolved[0] for plan in plans)
    plan = resolved[0]
    assert plan.sharpness_aware and plan.ddp is None and plan.ddp_mode is None
    assert plan.precision.scaler is None and plan.precision.autocast_kwargs is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.ddp_mode = "local"  # type: ignore[misc]


def test_a_plain_optimizer_gets_a_plan_too(problem):
    net = problem.net(hidden=3)
    iteration = SharpnessAwareIteration()
    resolved = _spy_resolutions(iteration)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    problem.run(net, opt, problem.batches(num_batches=3), iteration, max_epochs=2)
    assert len(resolved) == 1 and not resolved[0].sharpness_aware


def test_a_changed_setting_resolves_a_new_plan_and_sets_the_modes_again(problem):
    """A mode changed from outside is set back (a resume agrees with the run's settings)."""
    net = problem.net(hidden=3)
    opt = _sam(net)
    iteration = SharpnessAwareIteration(interval=2)
    resolved = _spy_resolutions(iteration)
    trainer = problem.trainer(net, opt, problem.batches(num_batches=4), iteration, max_epochs=1)
    seen = []

    @trainer.on(Events.ITERATION_COMPLETED)
    def _meddle(engine):
        seen.append(opt.interval)
        if engine.state.iteration == 2:
            opt.interval = 5  # from outside: the next iteration's plan sets 2 again

    trainer.run()
    assert seen == [2, 2, 2, 2] and len(resolved) == 2
    assert resolved[0].settings == resolved[1].settings  # the run's settings, once the modes are set again


def test_an_engine_setting_change_resolves_a_new_plan(problem):
    net = problem.net(hidden=3)
    iteration = SharpnessAwareIteration()
    resolved = _spy_resolutions(iteration)
    trainer = problem.trainer(net, _sam(net), problem.batches(num_batches=4), iteration, max_epochs=1)
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED(once=2), lambda engine: setattr(engine, "optim_set_to_none", True)
    )
    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=3), lambda engine: setattr(engine, "amp", True))
    trainer.run()
    assert len(resolved) == 2  # optim_set_to_none is read every iteration; amp is part of the plan


def test_set_modes_is_the_explicit_switch_of_interval_and_start_step(problem):
    opt = _sam(problem.net(hidden=3))
    opt.set_modes(interval=3)
    assert (opt.interval, opt.start_step) == (3, 0)
    opt.set_modes(start_step=4)
    assert (opt.interval, opt.start_step) == (3, 4)
    opt.set_modes()
    assert (opt.interval, opt.start_step) == (3, 4)
    with pytest.raises(ValueError, match="interval"):
        opt.set_modes(interval=0)
