"""RhoScheduleHandler and SharpnessStatsHandler on small real trainers."""

from __future__ import annotations

import math

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.handlers import LrScheduleHandler

from monai_sam.engines import SharpnessAwareIteration, SharpnessEvents
from monai_sam.handlers import RhoScheduleHandler, SharpnessStatsHandler, sharpness_output_transform
from monai_sam.optimizers import GSAMRhoScheduler, create_optimizer


def _trainer(name="sam", handlers=(), num_batches=4, max_epochs=1, **opt_kwargs):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2).double()
    gen = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(4, 3, generator=gen, dtype=torch.float64), torch.randint(0, 2, (4,), generator=gen))
        for _ in range(num_batches)
    ]
    opt = create_optimizer(name, net.parameters(), base="sgd", lr=0.1, **opt_kwargs)
    rhos = []
    trainer = SupervisedTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=batches,
        network=net,
        optimizer=opt,
        loss_function=torch.nn.CrossEntropyLoss(),
        iteration_update=SharpnessAwareIteration(),
        event_names=[SharpnessEvents],
        train_handlers=[h(opt) for h in handlers],
    )
    if any(k == "rho" for g in opt.param_groups for k in g):
        trainer.add_event_handler(
            SharpnessEvents.PERTURBED, lambda e: rhos.append(opt.param_groups[0]["rho"])
        )
    return trainer, opt, rhos


def test_callable_schedule_applies_from_the_first_iteration():
    trainer, _, rhos = _trainer(handlers=[lambda opt: RhoScheduleHandler(lambda it: 0.01 * (it + 1))])
    trainer.run()
    assert rhos == pytest.approx([0.01, 0.02, 0.03, 0.04])


def test_epoch_level_callable_schedule():
    trainer, _, rhos = _trainer(
        num_batches=2,
        max_epochs=2,
        handlers=[lambda opt: RhoScheduleHandler(lambda ep: 0.1 / (ep + 1), True)],
    )
    trainer.run()
    assert rhos == pytest.approx([0.1, 0.1, 0.05, 0.05])


def test_gsam_rho_follows_the_lr_after_the_lr_handler():
    def lr_handler(opt):
        return LrScheduleHandler(
            torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.25, total_iters=3), epoch_level=False
        )

    trainer, _opt, rhos = _trainer(
        name="gsam", rho=0.2, handlers=[lr_handler, lambda opt: RhoScheduleHandler(GSAMRhoScheduler(opt))]
    )
    trainer.run()
    lrs = [0.1 * f for f in (1.0, 0.75, 0.5, 0.25)]
    assert rhos == pytest.approx([0.2 * lr / 0.1 for lr in lrs])


def test_rho_handler_state_dict_and_plain_optimizer():
    scheduler_state = RhoScheduleHandler(lambda it: 0.1).state_dict()
    assert scheduler_state == {}
    trainer, _, _ = _trainer(name="adam", handlers=[lambda opt: RhoScheduleHandler(lambda it: 0.1)])
    trainer.run()  # no rho to schedule: a warning, no error
    with pytest.raises(ValueError, match="rho"):
        _trainer(handlers=[lambda opt: RhoScheduleHandler(lambda it: -1.0)])[0].run()


def test_stats_handler_epoch_metrics_and_output_transform():
    stats = SharpnessStatsHandler(log_interval=2, prefix="train_")
    trainer, _opt, _ = _trainer(handlers=[lambda opt: stats], rho=0.07)
    sharpness = []
    trainer.add_event_handler(
        SharpnessEvents.RESTORED, lambda e: sharpness.append(float(e.state.output["sharpness"]))
    )
    trainer.run()
    assert trainer.state.metrics["train_sharpness"] == pytest.approx(sum(sharpness) / len(sharpness))
    assert trainer.state.metrics["train_rho"] == pytest.approx(0.07)
    assert trainer.state.rho == pytest.approx(0.07)
    logged = sharpness_output_transform()(trainer.state.output)
    assert set(logged) == {"loss", "loss_perturbed", "sharpness"}
    assert logged["sharpness"] == pytest.approx(sharpness[-1])
    assert sharpness_output_transform(["loss", "missing"])(trainer.state.output[0]) == {
        "loss": trainer.state.output[0]["loss"]
    }


def test_stats_handler_with_plain_optimizer_writes_nothing():
    trainer, _, _ = _trainer(name="adam", handlers=[lambda opt: SharpnessStatsHandler()])
    trainer.run()
    assert "sharpness" not in trainer.state.metrics and trainer.state.rho is None
    assert not math.isnan(trainer.state.output[0]["loss"])
