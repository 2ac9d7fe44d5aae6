"""The declared registry: it covers every method, its records are frozen, and each record tells the truth.

Every declared trait is checked against what the class does when built with its default options, so a
record cannot drift from its class.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from optim_helpers import batch, mse, small_net

import monai_sam.optimizers as optimizers
from monai_sam.optimizers import SharpnessAwareOptimizer, available_optimizers, create_optimizer
from monai_sam.optimizers.registry import (
    METHOD_REGISTRY,
    PLAIN_OPTIMIZERS,
    MethodInfo,
    canonical_name,
    find_method,
)

NAMES = [info.name for info in METHOD_REGISTRY]


def _build(info: MethodInfo, **kwargs) -> SharpnessAwareOptimizer:
    """The method with its default options over a tiny float64 net (SGD with momentum as the base)."""
    net = small_net()
    if not info.needs_base_optimizer:
        opt = info.cls(net.parameters(), num_data=16, lr=1e-3, **kwargs)
    else:
        opt = info.cls(net.parameters(), torch.optim.SGD, lr=1e-2, momentum=0.9, **kwargs)
    opt.net = net  # the test's handle on the parameters
    return opt


def _step(opt) -> int:
    """One ``step(closure)`` on a fixed batch; returns how many passes it ran."""
    x, y = batch()
    calls = []

    def closure():
        calls.append(1)
        loss = mse(opt.net, x, y)
        loss.backward()
        return loss

    opt.step(closure)
    return len(calls)


def test_every_exported_method_is_registered_once():
    exported = {
        obj
        for name in optimizers.__all__
        if inspect.isclass(obj := getattr(optimizers, name))
        and issubclass(obj, SharpnessAwareOptimizer)
        and obj is not SharpnessAwareOptimizer
    }
    registered = [info.cls for info in METHOD_REGISTRY]
    assert len(registered) == len(set(registered)) and set(registered) == exported
    assert len(NAMES) == len(set(NAMES))
    assert available_optimizers() == [*PLAIN_OPTIMIZERS, *NAMES]


def test_records_and_registry_are_frozen():
    info = METHOD_REGISTRY[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.default_rho = 1.0  # type: ignore[misc]
    assert isinstance(METHOD_REGISTRY, tuple)
    with pytest.raises(TypeError):
        PLAIN_OPTIMIZERS["rmsprop"] = torch.optim.RMSprop  # type: ignore[index]


@pytest.mark.parametrize("name", NAMES)
def test_names_and_aliases_resolve(name):
    info = find_method(name)
    assert info is not None and info.name == name == canonical_name(info.cls.__name__)
    assert find_method(name.upper()) is info and find_method(f"{name[:-3]}-{name[-3:]}") is info
    for alias in info.aliases:
        assert find_method(alias) is info


def test_other_names_are_not_methods():
    for name in (*PLAIN_OPTIMIZERS, "none", "lbfgs"):
        assert find_method(name) is None
    assert canonical_name("CR_S-am") == "crsam"


@pytest.mark.parametrize("name", NAMES)
def test_declared_keywords_are_the_constructor_s(name):
    info = find_method(name)
    signature = inspect.signature(info.cls.__init__).parameters
    named = {
        k
        for k, p in signature.items()
        if k not in ("self", "params", "base_optimizer") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }
    assert info.keywords == named
    assert info.default_rho == signature["rho"].default


@pytest.mark.parametrize("name", NAMES)
def test_declared_traits_match_the_class(name):
    info = find_method(name)
    opt = _build(info)  # no model: needs_model is False for every method
    assert not info.needs_model
    assert set(info.hyperparameters) == set(opt.defaults)
    assert opt.param_groups[0]["rho"] == info.default_rho
    assert opt.supports_grad_scaler is info.grad_scaler_exact
    assert opt.own_update is (not info.needs_base_optimizer)
    if opt.has_post_step_correction:
        ddp = "synced"
    elif opt.final_grad_is_last_pass:
        ddp = "last_pass"
    else:
        ddp = "local"
    assert info.ddp_mode == ddp
    assert opt.num_passes == info.passes and _step(opt) == info.passes
    assert len(opt.persistent_keys) <= info.buffers[1] <= info.buffers[0]


@pytest.mark.parametrize("name", NAMES)
def test_rests_at_true_weights_as_declared(name):
    """Between steps the parameters hold ``w`` exactly when the record says so."""
    opt = _build(find_method(name))
    for _ in range(2):
        _step(opt)
    now = [p.detach().clone() for p in opt.net.parameters()]
    with opt.true_weights():
        true = [p.detach().clone() for p in opt.net.parameters()]
    at_true = all(torch.equal(a, b) for a, b in zip(now, true))
    assert at_true is find_method(name).rests_at_true_weights


@pytest.mark.parametrize("name", NAMES)
def test_needs_base_optimizer_as_declared(name):
    info = find_method(name)
    if info.needs_base_optimizer:
        assert create_optimizer(
            name, small_net().parameters(), base="sgd", lr=0.1, momentum=0.9
        ).base_optimizer
    else:
        with pytest.raises(ValueError, match="takes no base"):
            create_optimizer(name, small_net().parameters(), base="sgd", num_data=4)
