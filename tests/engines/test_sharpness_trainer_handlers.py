"""One SharpnessAwareTrainer run with MONAI's usual handlers: stats, validation + ROCAUC, checkpoints,
LR schedule, rho schedule and early stopping."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from monai.engines import SupervisedEvaluator
from monai.handlers import (
    ROCAUC,
    CheckpointLoader,
    CheckpointSaver,
    EarlyStopHandler,
    LrScheduleHandler,
    StatsHandler,
    ValidationHandler,
)

from monai_sam.engines import SharpnessAwareTrainer, SharpnessEvents
from monai_sam.handlers import RhoScheduleHandler, SharpnessStatsHandler, sharpness_output_transform
from monai_sam.optimizers import GSAMRhoScheduler, create_optimizer


def _auc_transform(output):
    preds = [item["pred"].softmax(0) for item in output]
    labels = [torch.nn.functional.one_hot(torch.as_tensor(item["label"]), 2) for item in output]
    return preds, labels


def test_full_handler_stack(problem, tmp_path):
    net = problem.net(hidden=6)
    opt = create_optimizer("gsam", net.parameters(), base="sgd", lr=0.2, momentum=0.9, rho=0.1, alpha=0.2)
    lr_scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    rho_scheduler = GSAMRhoScheduler(opt)
    evaluator = SupervisedEvaluator(
        device="cpu",
        val_data_loader=problem.batches(num_batches=2, seed=1),
        network=net,
        key_val_metric={"auc": ROCAUC(output_transform=_auc_transform)},
    )
    # a score that gets worse every epoch: early stopping must end training after epoch 2
    early_stop = EarlyStopHandler(
        patience=1, score_function=lambda _: -float(trainer.state.epoch), trainer=None
    )
    early_stop.attach(evaluator)
    passes_seen = []
    trainer = SharpnessAwareTrainer(
        device="cpu",
        max_epochs=5,
        train_data_loader=problem.batches(num_batches=3),
        network=net,
        optimizer=opt,
        loss_function=torch.nn.CrossEntropyLoss(),
        train_handlers=[
            LrScheduleHandler(lr_scheduler, print_lr=False),
            RhoScheduleHandler(rho_scheduler, epoch_level=True),
            SharpnessStatsHandler(log_interval=1),
            StatsHandler(name="sam_train", output_transform=sharpness_output_transform(), iteration_log=True),
            ValidationHandler(validator=evaluator, interval=1, epoch_level=True),
        ],
    )
    early_stop.set_trainer(trainer)  # as MONAI bundles do, avoiding a circular constructor reference
    trainer.add_event_handler(SharpnessEvents.PERTURBED, lambda e: passes_seen.append(e.state.iteration))
    save_dict = {
        "network": net,
        "optimizer": opt,
        "lr": lr_scheduler,
        "trainer": trainer,
        "scaler": trainer.scaler,
    }
    CheckpointSaver(str(tmp_path), save_dict, save_interval=1, epoch_level=True, save_final=True).attach(
        trainer
    )
    records: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = records.append
    logging.getLogger("sam_train").addHandler(capture)  # MONAI's loggers do not propagate to caplog
    try:
        trainer.run()
    finally:
        logging.getLogger("sam_train").removeHandler(capture)

    assert trainer.state.epoch == 2  # early stop: the score decreases every epoch
    assert evaluator.state.metrics["auc"] >= 0.0
    assert opt.param_groups[0]["lr"] == 0.2 * 0.25
    assert opt.param_groups[0]["rho"] == pytest.approx(0.1 * 0.25)  # GSAM rho follows the LR
    assert trainer.state.metrics["rho"] == pytest.approx(0.1 * 0.5)  # the rho used during epoch 2
    assert trainer.state.metrics["sharpness"] != 0.0
    assert passes_seen == list(range(1, 7))
    assert any("sharpness" in r.getMessage() and "loss_perturbed" in r.getMessage() for r in records)
    files = sorted(os.listdir(tmp_path))
    assert "checkpoint_epoch=2.pt" in files
    loaded = {k: v for k, v in save_dict.items()}
    CheckpointLoader(str(tmp_path / "checkpoint_epoch=2.pt"), loaded)(trainer)
