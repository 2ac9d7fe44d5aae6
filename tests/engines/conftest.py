"""Shared helpers for the engine tests: tiny float64 problems run through a real SupervisedTrainer."""

from __future__ import annotations

import logging

import pytest
import torch
from monai.engines import SupervisedTrainer

from monai_sam.engines import SharpnessAwareIteration, SharpnessEvents

logging.getLogger("ignite").setLevel(logging.WARNING)


def make_batches(num_batches=3, batch_size=4, in_features=3, num_classes=2, seed=0, dtype=torch.float64):
    """A list of (image, label) batches usable as a MONAI ``train_data_loader``."""
    gen = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(batch_size, in_features, generator=gen, dtype=dtype),
            torch.randint(0, num_classes, (batch_size,), generator=gen),
        )
        for _ in range(num_batches)
    ]


def make_net(in_features=3, num_classes=2, hidden=0, seed=0, dtype=torch.float64):
    """A tiny MLP (or a linear layer when ``hidden=0``)."""
    torch.manual_seed(seed)
    if hidden:
        net = torch.nn.Sequential(
            torch.nn.Linear(in_features, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, num_classes)
        )
    else:
        net = torch.nn.Linear(in_features, num_classes)
    return net.to(dtype)


def make_trainer(net, optimizer, batches, iteration=None, max_epochs=1, **kwargs):
    """A SupervisedTrainer (stock ``_iteration`` when ``iteration`` is None), SharpnessEvents registered."""
    kwargs.setdefault("event_names", [SharpnessEvents] if iteration is not None else None)
    return SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=max_epochs,
        train_data_loader=batches,
        network=net,
        optimizer=optimizer,
        loss_function=torch.nn.CrossEntropyLoss(),
        iteration_update=iteration,
        **kwargs,
    )


def run_trainer(net, optimizer, batches, iteration=None, max_epochs=1, **kwargs):
    """Build a trainer with :func:`make_trainer`, run it and return it."""
    trainer = make_trainer(net, optimizer, batches, iteration, max_epochs, **kwargs)
    trainer.run()
    return trainer


def sam_gradient(net, x, y, rho, eps=1e-12):
    """Hand-computed SAM gradient of the mean cross-entropy at the current weights of ``net``."""
    params = list(net.parameters())
    loss = torch.nn.functional.cross_entropy(net(x), y)
    grads = torch.autograd.grad(loss, params)
    scale = rho / (torch.sqrt(sum((g**2).sum() for g in grads)) + eps)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.add_(g * scale)
    perturbed = torch.autograd.grad(torch.nn.functional.cross_entropy(net(x), y), params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.sub_(g * scale)
    return [g.detach() for g in perturbed]


@pytest.fixture
def problem():
    """Factory namespace: ``batches()``, ``net()``, ``trainer(...)``, ``run(...)``, ``sam_gradient(...)``."""

    class Problem:
        batches = staticmethod(make_batches)
        net = staticmethod(make_net)
        run = staticmethod(run_trainer)
        trainer = staticmethod(make_trainer)
        sam_gradient = staticmethod(sam_gradient)
        iteration = SharpnessAwareIteration

    return Problem
