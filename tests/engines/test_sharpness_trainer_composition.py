"""``SharpnessAwareTrainer`` composes: wrappers that end in ``engine._iteration(...)`` run SAM inside."""

from __future__ import annotations

import pytest
import torch
from monai.apps.deepedit.interaction import Interaction as DeepEditInteraction
from monai.apps.deepgrow.interaction import Interaction as DeepGrowInteraction
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from parity_cases import CASES, DEVICE, make_optimizer, state_differences

from monai_sam.engines import SharpnessAwareIteration, SharpnessAwareTrainer, SharpnessEvents

CASE = next(case for case in CASES if case.name == "classification_2d")


class DoubleTheImage:
    """A tiny interaction: changes the batch, then delegates to the trainer's own ``_iteration``."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, engine, batchdata):
        self.calls += 1
        batchdata = {**batchdata, "image": batchdata["image"] * 2}
        return engine._iteration(engine, batchdata)


def _double(item: dict) -> dict:
    """A click transform for MONAI's interactions: it sees the inner prediction, doubles the image."""
    assert "pred" in item and "probability" in item
    return {**item, "image": item["image"] * 2}


def _run(trainer_class, optimizer: str, batches, iteration_update=None):
    net = CASE.net()
    trainer = trainer_class(
        device=DEVICE,
        max_epochs=CASE.epochs,
        train_data_loader=batches,
        network=net,
        optimizer=make_optimizer(optimizer, net),
        loss_function=CASE.loss(),
        iteration_update=iteration_update,
    )
    counts = {"perturbed": 0, "inner": 0}
    if trainer.has_registered_events(SharpnessEvents.PERTURBED):
        trainer.add_event_handler(
            SharpnessEvents.PERTURBED, lambda _: counts.__setitem__("perturbed", counts["perturbed"] + 1)
        )
    trainer.add_event_handler(
        IterationEvents.INNER_ITERATION_STARTED, lambda _: counts.__setitem__("inner", counts["inner"] + 1)
    )
    trainer.run()
    return net.state_dict(), trainer, counts


def _doubled_batches():
    return [{**b, "image": b["image"] * 2} for b in CASE.batches()]


def _interactions():
    return {
        "tiny": DoubleTheImage(),
        "deepgrow": DeepGrowInteraction(transforms=[_double], max_interactions=1, train=True),
        "deepedit": DeepEditInteraction(deepgrow_probability=1.0, transforms=[_double], train=True),
    }


@pytest.mark.parametrize("kind", ["tiny", "deepgrow", "deepedit"])
def test_sam_runs_inside_an_interaction(kind):
    steps = CASE.epochs * len(CASE.batches())
    wrapped, trainer, counts = _run(SharpnessAwareTrainer, "sam", CASE.batches(), _interactions()[kind])
    direct, _, direct_counts = _run(SharpnessAwareTrainer, "sam", _doubled_batches())
    assert counts["perturbed"] == direct_counts["perturbed"] == steps  # the SAM passes ran in every iteration
    assert counts["inner"] == (0 if kind == "tiny" else steps)  # and so did the interaction
    assert trainer.state.output[0]["num_passes"] == 2
    assert not state_differences(direct, wrapped)  # on the batch the interaction made, bit for bit


@pytest.mark.parametrize("kind", ["tiny", "deepgrow"])
def test_plain_optimizer_inside_an_interaction_matches_monai(kind):
    ours, _, _ = _run(SharpnessAwareTrainer, "torch_adam", CASE.batches(), _interactions()[kind])
    monai, _, _ = _run(SupervisedTrainer, "torch_adam", CASE.batches(), _interactions()[kind])
    assert not state_differences(monai, ours)


def test_a_sharpness_aware_iteration_as_iteration_update_is_refused():
    net = CASE.net()
    with pytest.raises(TypeError, match="iteration_update"):
        SharpnessAwareTrainer(
            device=DEVICE,
            max_epochs=1,
            train_data_loader=CASE.batches(),
            network=net,
            optimizer=make_optimizer("sam", net),
            loss_function=CASE.loss(),
            iteration_update=SharpnessAwareIteration(),
        )


def test_the_trainer_iteration_is_its_own_method():
    net = CASE.net()
    trainer = SharpnessAwareTrainer(
        device=DEVICE,
        max_epochs=1,
        train_data_loader=CASE.batches(),
        network=net,
        optimizer=make_optimizer("sam", net),
        loss_function=CASE.loss(),
    )
    assert type(trainer)._iteration is not SupervisedTrainer._iteration
    assert trainer._process_function == trainer._iteration
    assert isinstance(trainer.iteration, SharpnessAwareIteration)
    assert trainer.scaler is trainer.iteration.scaler
    torch.manual_seed(0)  # nothing random in the run; keeps the test independent of order
    trainer.run()
    assert trainer.state.output[0]["num_passes"] == 2
