"""MSAM inside a real SupervisedTrainer: validation, checkpoints and resume see the true weights."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from ignite.metrics import Loss
from monai.engines import SupervisedEvaluator
from monai.handlers import CheckpointLoader, CheckpointSaver, ValidationHandler

from monai_sam import sharpness
from monai_sam.engines import SharpnessAwareIteration
from monai_sam.handlers import TrueWeightsHandler
from monai_sam.optimizers import MSAM

LR, MU, RHO = 0.2, 0.9, 0.5


def _reference_true_weights(net, batches, epochs):
    """The official MSAM update (SGD, no weight decay) by hand: the true weights after every iteration."""
    w = [p.detach().clone() for p in net.parameters()]
    v = None
    history = []
    for _ in range(epochs):
        for x, y in batches:
            point = w
            if v is not None:
                norm = torch.stack([m.norm() for m in v]).norm()
                point = [wi - RHO * m / (norm + 1e-12) for wi, m in zip(w, v)]
            g = _grads(net, point, x, y)
            v = g if v is None else [MU * m + gi for m, gi in zip(v, g)]
            w = [wi - LR * m for wi, m in zip(w, v)]
            history.append(w)
    return history


def _grads(net, weights, x, y):
    names = [n for n, _ in net.named_parameters()]
    params = {n: t.clone().requires_grad_(True) for n, t in zip(names, weights)}
    loss = torch.nn.functional.cross_entropy(torch.func.functional_call(net, params, (x,)), y)
    return [g.detach() for g in torch.autograd.grad(loss, list(params.values()))]


def _val_loss(net, weights, batches):
    names = [n for n, _ in net.named_parameters()]
    with torch.no_grad():
        params = dict(zip(names, weights))
        losses = [
            torch.nn.functional.cross_entropy(torch.func.functional_call(net, params, (x,)), y)
            for x, y in batches
        ]
    return float(torch.stack(losses).mean())


def _build(problem, driver, max_epochs, extra_handlers=()):
    net = problem.net(hidden=5)
    opt = MSAM(net.parameters(), torch.optim.SGD, rho=RHO, lr=LR, momentum=MU)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=problem.batches(num_batches=2, seed=5),
        network=net,
        key_val_metric={
            "val_loss": Loss(
                torch.nn.functional.cross_entropy, output_transform=lambda o: (o["pred"], o["label"])
            )
        },
        decollate=False,
    )
    handlers = [TrueWeightsHandler()] if driver == "handler" else []
    handlers.append(ValidationHandler(interval=1, validator=evaluator, epoch_level=True))
    trainer = problem.trainer(
        net,
        opt,
        problem.batches(num_batches=2),
        SharpnessAwareIteration() if driver == "iteration" else None,
        max_epochs=max_epochs,
        train_handlers=handlers,
    )
    save_dict = {"network": net, "optimizer": opt, "trainer": trainer}
    for make in extra_handlers:
        make(save_dict).attach(trainer)
    seen = []
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen.append(e.state.metrics["val_loss"]))
    weights = []  # what the evaluator's network holds while validating
    evaluator.add_event_handler(
        Events.ITERATION_STARTED,
        lambda e: weights.append([p.detach().clone() for p in e.network.parameters()]),
    )
    trainer.validated_weights = weights
    after = []  # what every ITERATION_COMPLETED handler (iteration-level checkpoints, sharpness, logs) sees
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED,
        lambda e: after.append([p.detach().clone() for p in e.network.parameters()]),
    )
    trainer.iteration_weights = after
    return trainer, net, opt, seen


@pytest.mark.parametrize("driver", ["iteration", "handler"])  # SharpnessAwareIteration, or MONAI's own
def test_validation_and_checkpoints_see_the_true_weights(problem, tmp_path, driver):
    saver = [
        lambda d: CheckpointSaver(str(tmp_path), {"network": d["network"]}, save_interval=1, n_saved=None)
    ]
    trainer, net, opt, seen = _build(problem, driver, 3, saver)
    initial = problem.net(hidden=5)
    history = _reference_true_weights(initial, problem.batches(num_batches=2), 3)
    val_batches = problem.batches(num_batches=2, seed=5)
    trainer.run()
    expected = [_val_loss(initial, history[i], val_batches) for i in (1, 3, 5)]
    assert seen == pytest.approx(expected, rel=0, abs=1e-6)  # ignite's Loss accumulates in float32
    assert len(trainer.validated_weights) == 3 * 2
    for k, weights in enumerate(trainer.validated_weights):
        for p, w in zip(weights, history[2 * (k // 2) + 1]):
            torch.testing.assert_close(p, w, rtol=0, atol=1e-12)
    assert len(trainer.iteration_weights) == len(history)
    for weights, true in zip(trainer.iteration_weights, history):
        for p, w in zip(weights, true):
            torch.testing.assert_close(p, w, rtol=0, atol=1e-12)
    for p, w in zip(net.parameters(), history[5]):  # after the run the network holds w
        torch.testing.assert_close(p.detach(), w, rtol=0, atol=1e-12)
    for epoch in (1, 2, 3):
        saved = torch.load(tmp_path / f"network_epoch={epoch}.pt", weights_only=True)
        for value, w in zip(saved.values(), history[2 * epoch - 1]):
            torch.testing.assert_close(value, w, rtol=0, atol=1e-12)
    # the sharpness measures on the trained network measure at w
    reference = problem.net(hidden=5)
    with torch.no_grad():
        for p, w in zip(reference.parameters(), history[5]):
            p.copy_(w)
    loss_fn = torch.nn.CrossEntropyLoss()
    measured = sharpness.sam_sharpness(net, val_batches, loss_fn, rho=0.1, progress=False).sharpness
    expected_sharpness = sharpness.sam_sharpness(
        reference, val_batches, loss_fn, rho=0.1, progress=False
    ).sharpness
    assert measured == pytest.approx(expected_sharpness, rel=1e-9)
    # between steps the optimizer itself would rest at the ascent point, and that point validates differently
    opt.move_to_perturbed_point()
    ascent = [p.detach().clone() for p in net.parameters()]
    opt.move_to_true_weights()
    assert abs(_val_loss(initial, ascent, val_batches) - expected[-1]) > 1e-3


@pytest.mark.parametrize("driver", ["iteration", "handler"])
def test_resume_from_a_checkpoint_is_bit_exact(problem, tmp_path, driver):
    full, full_net, full_opt, full_seen = _build(problem, driver, 3)
    full.run()
    first, _, _, _ = _build(
        problem,
        driver,
        1,
        [lambda d: CheckpointSaver(str(tmp_path), d, save_final=True, final_filename="stop.pt")],
    )
    first.run()
    resumed, net, opt, seen = _build(
        problem, driver, 3, [lambda d: CheckpointLoader(str(tmp_path / "stop.pt"), d)]
    )
    resumed.run()
    assert resumed.state.iteration == full.state.iteration == 6
    for p, q in zip(net.parameters(), full_net.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(net.parameters(), full_net.parameters()):
        assert torch.equal(opt.state[p]["momentum_buffer"], full_opt.state[q]["momentum_buffer"])
    assert seen == full_seen[1:]
