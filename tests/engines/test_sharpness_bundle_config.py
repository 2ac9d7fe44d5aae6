"""Everything is nameable from a MONAI bundle config: the optimizer by name, the iteration, the trainer."""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser

CONFIG = {
    "imports": ["$import torch", "$import monai_sam"],
    "network": {"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2},
    "optimizer": {
        "_target_": "monai_sam.optimizers.create_optimizer",
        "name": "@optimizer_name",
        "params": "$@network.parameters()",
        "base": "adam",
        "lr": 0.01,
        "rho": 0.05,
    },
    "data": "$[(torch.randn(4, 3), torch.randint(0, 2, (4,))) for _ in range(2)]",
    "iteration": {
        "_target_": "monai_sam.engines.SharpnessAwareIteration",
        "bn_policy": "clean",
        "max_norm": 1.0,
        "cpu_autocast_dtype": "bfloat16",
    },
    "trainer": {
        "_target_": "SupervisedTrainer",
        "device": "cpu",
        "max_epochs": 1,
        "train_data_loader": "@data",
        "network": "@network",
        "optimizer": "@optimizer",
        "loss_function": "$torch.nn.CrossEntropyLoss()",
        "iteration_update": "@iteration",
        "event_names": "$[monai_sam.engines.SharpnessEvents]",
        "amp": True,
        "amp_kwargs": {"dtype": "$torch.bfloat16"},
    },
    "sam_trainer": {
        "_target_": "monai_sam.engines.SharpnessAwareTrainer",
        "device": "cpu",
        "max_epochs": 1,
        "train_data_loader": "@data",
        "network": "@network",
        "optimizer": "@optimizer",
        "loss_function": "$torch.nn.CrossEntropyLoss()",
        "amp": True,
        "cpu_autocast_dtype": "bfloat16",
        "replay_rng": True,
        "train_handlers": [
            {"_target_": "monai_sam.handlers.SharpnessStatsHandler"},
            {"_target_": "monai_sam.handlers.RhoScheduleHandler", "schedule": "$lambda it: 0.05"},
        ],
    },
    "save_dict": {"scaler": "$@iteration.scaler", "trainer_scaler": "$@sam_trainer.scaler"},
}


@pytest.mark.parametrize("optimizer_name", ["sam", "crsam", "adam"])
@pytest.mark.parametrize("trainer_id", ["trainer", "sam_trainer"])
def test_config_builds_and_runs(optimizer_name, trainer_id):
    parser = ConfigParser(dict(CONFIG, optimizer_name=optimizer_name))
    torch.manual_seed(0)
    trainer = parser.get_parsed_content(trainer_id)
    trainer.run()
    assert trainer.state.iteration == 2
    item = trainer.state.output[0]
    assert ("sharpness" in item) is (optimizer_name != "adam")
    save_dict = parser.get_parsed_content("save_dict")
    assert all(isinstance(v, torch.amp.GradScaler) for v in save_dict.values())
