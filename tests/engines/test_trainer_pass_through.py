"""SharpnessAwareTrainer passes MONAI's arguments through instead of copying SupervisedTrainer's signature."""

from __future__ import annotations

import inspect

import torch
from monai.engines import SupervisedTrainer

from monai_sam.engines import SharpnessAwareIteration, SharpnessAwareTrainer, SharpnessEvents
from monai_sam.optimizers import SAM


def test_only_its_own_options_are_in_its_signature():
    own = set(inspect.signature(SharpnessAwareTrainer.__init__).parameters) - {
        "self",
        "args",
        "trainer_kwargs",
    }
    iteration = set(inspect.signature(SharpnessAwareIteration.__init__).parameters) - {"self", "amp"}
    assert own == iteration | {"iteration_update", "event_names"}


def test_monai_arguments_reach_the_supervised_trainer_positionally_and_by_name(problem):
    net = problem.net(hidden=3)
    opt = SAM(net.parameters(), torch.optim.SGD, lr=0.1)
    batches = problem.batches(num_batches=2)
    trainer = SharpnessAwareTrainer(
        torch.device("cpu"),
        2,
        batches,
        network=net,
        optimizer=opt,
        loss_function=torch.nn.CrossEntropyLoss(),
        decollate=False,
        optim_set_to_none=True,
        max_norm=1.0,
    )
    assert isinstance(trainer, SupervisedTrainer) and trainer.state.max_epochs == 2
    assert trainer.network is net and trainer.optimizer is opt and trainer.optim_set_to_none
    assert trainer.iteration.max_norm == 1.0 and trainer.scaler is trainer.iteration.scaler
    assert trainer.has_registered_events(SharpnessEvents.PERTURBED)
    trainer.run()
    assert trainer.state.iteration == 4
