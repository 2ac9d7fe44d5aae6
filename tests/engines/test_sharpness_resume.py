"""A run stopped after epoch k and resumed from its checkpoint equals the uninterrupted run, bit for bit."""

from __future__ import annotations

import pytest
import torch
from monai.handlers import CheckpointLoader, CheckpointSaver, LrScheduleHandler

from monai_sam.engines import SharpnessAwareTrainer
from monai_sam.handlers import RhoScheduleHandler
from monai_sam.optimizers import GSAMRhoScheduler, create_optimizer


def _build(problem, max_epochs, handlers_extra=(), name="gsam"):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 6), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 2)
    ).double()
    opt = create_optimizer(name, net.parameters(), base="adam", lr=0.05, rho=0.1)
    lr_scheduler = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.7)
    rho_scheduler = GSAMRhoScheduler(opt, rho_min=0.01)
    trainer = SharpnessAwareTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=problem.batches(num_batches=3),
        network=net,
        optimizer=opt,
        loss_function=torch.nn.CrossEntropyLoss(),
        amp=True,  # on a CPU: no autocast (MONAI's meaning), so the scaler runs without fp16 noise
        grad_scaler=True,  # and is checkpointed
        scaler_kwargs={"init_scale": 2.0**8, "growth_interval": 2},
        train_handlers=[
            LrScheduleHandler(lr_scheduler, epoch_level=False, print_lr=False),
            RhoScheduleHandler(rho_scheduler),
        ],
    )
    save_dict = {
        "network": net,
        "optimizer": opt,
        "lr_scheduler": lr_scheduler,
        "rho_scheduler": rho_scheduler,
        "trainer": trainer,
        "scaler": trainer.scaler,
    }
    for handler in handlers_extra:
        handler(save_dict).attach(trainer)
    return trainer, net, opt


@pytest.mark.parametrize("name", ["gsam", "wsam"])
def test_resume_after_epoch_one_is_exact(problem, tmp_path, name):
    full, full_net, full_opt = _build(problem, 3, name=name)
    full.run()

    first, _, _ = _build(
        problem,
        1,
        [lambda d: CheckpointSaver(str(tmp_path), d, save_final=True, final_filename="stop.pt")],
        name,
    )
    first.run()
    resumed, net, opt = _build(problem, 3, [lambda d: CheckpointLoader(str(tmp_path / "stop.pt"), d)], name)
    resumed.run()

    assert resumed.state.epoch == 3 and resumed.state.iteration == full.state.iteration == 9
    for p, q in zip(net.state_dict().values(), full_net.state_dict().values()):
        assert torch.equal(p, q)
    assert opt.param_groups[0]["rho"] == full_opt.param_groups[0]["rho"]
    assert resumed.scaler.get_scale() == full.scaler.get_scale() > 2.0**8
