"""Non-finite and overflowing gradients in the MONAI engines, for every registered optimizer.

Finite gradients whose fp32 sum of squares overflows (bf16 autocast on the CPU, inputs of 1e20) train;
a final gradient that is really not finite stops the run before the optimizer step with a message that
names the iteration, the cause and the precision, the weights and the optimizer state as they were.
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer

from monai_sam.engines import SharpnessAwareIteration, SharpnessAwareTrainer, SharpnessEvents
from monai_sam.optimizers import SharpnessAwareOptimizer, available_optimizers, create_optimizer

#: under this bf16 overflow case the estimator itself overflows: Frob-SAM multiplies losses of 1e18 with
#: gradients of 1e20, Det-SAM exponentiates loss differences, bSAM's ascent rho * g / s is not normalised
#: (it moves the weights by 1e18, and the logits past bf16's range): the step is refused.
REFUSED_UNDER_BF16 = {"frobsam", "detsam", "bsam"}


def _optimizer(name: str, net: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    extra = {"num_data": 8} if name == "bsam" else {"base": "sgd"}
    if name not in ("bsam", "adam", "adamw"):
        extra["momentum"] = 0.9
    return create_optimizer(name, net.parameters(), lr=lr, method_defaults={"rho": 0.05, "k": 2}, **extra)


def _trainer(runner: str, net, opt, batches, **options):
    common = {
        "device": torch.device("cpu"),
        "max_epochs": 1,
        "train_data_loader": batches,
        "network": net,
        "optimizer": opt,
        "loss_function": torch.nn.CrossEntropyLoss(),
    }
    if runner == "trainer":
        trainer = SharpnessAwareTrainer(**common, **options)
        return trainer, trainer.iteration
    iteration = SharpnessAwareIteration(**options)
    return SupervisedTrainer(**common, iteration_update=iteration, event_names=[SharpnessEvents]), iteration


def _true_weights(opt) -> contextlib.AbstractContextManager:
    return opt.true_weights() if isinstance(opt, SharpnessAwareOptimizer) else contextlib.nullcontext()


def _watch(trainer, net, opt) -> dict:
    """Keep the weights and optimizer state at the start of every iteration (what a refused step keeps)."""
    seen: dict = {}

    def keep(_):
        with _true_weights(opt):
            seen["weights"] = [p.detach().clone() for p in net.parameters()]
        seen["state"] = _optimizer_state(opt)

    trainer.add_event_handler(Events.ITERATION_STARTED, keep)
    return seen


def _optimizer_state(opt) -> dict:
    """A copy of the optimizer's state: the base's, and the method's per-parameter tensors (not its RNG)."""
    if not isinstance(opt, SharpnessAwareOptimizer):
        return copy.deepcopy(opt.state_dict())
    method = opt.state_dict()["sharpness_aware"]["per_param"]
    return copy.deepcopy({"base": opt.base_optimizer.state_dict(), "method": method})


def _state_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_state_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_state_equal(x, y) for x, y in zip(a, b))
    return a == b


def _bf16_overflow_batches() -> list:
    """Inputs of 1e20: bf16 logits of 1e21 and weight gradients of 1e20, whose fp32 sum of squares is inf."""
    gen = torch.Generator().manual_seed(0)
    return [
        (torch.randn(4, 16, generator=gen) * 1e20, torch.randint(0, 2, (4,), generator=gen)) for _ in range(2)
    ]


@pytest.mark.parametrize("runner", ["iteration", "trainer"])
@pytest.mark.parametrize("name", available_optimizers())
def test_bf16_autocast_overflow_trains_or_stops_cleanly(name, runner):
    torch.manual_seed(0)
    net = torch.nn.Linear(16, 2)
    start = [p.detach().clone() for p in net.parameters()]
    opt = _optimizer(name, net, lr=1e-22)
    trainer, _ = _trainer(runner, net, opt, _bf16_overflow_batches(), cpu_autocast_dtype="bfloat16")
    seen = _watch(trainer, net, opt)
    if name in REFUSED_UNDER_BF16:
        with pytest.raises(
            FloatingPointError, match=r"final gradient is not finite .* under bfloat16 autocast"
        ):
            trainer.run()
        with _true_weights(opt):
            assert all(torch.equal(p, q) for p, q in zip(net.parameters(), seen["weights"]))
        assert _state_equal(_optimizer_state(opt), seen["state"])
        return
    trainer.run()
    assert trainer.state.iteration == 2
    with _true_weights(opt):
        weights = [p.detach() for p in net.parameters()]
    assert all(torch.isfinite(w).all() for w in weights)
    if name not in ("adam", "adamw"):  # Adam's v = g * g overflows to inf: its update is exactly 0
        assert not all(torch.equal(w, s) for w, s in zip(weights, start))
    if isinstance(opt, SharpnessAwareOptimizer):
        norm = float(opt.last_grad_norm)
        assert 1e19 < norm < 3.4e38  # the fp32 sum of squares would have been inf


class _PoisonOnce:
    """A gradient hook that makes one entry inf in the first backward of iteration ``at``."""

    def __init__(self, trainer, param: torch.nn.Parameter, at: int) -> None:
        self.armed = False
        param.register_hook(self)
        trainer.add_event_handler(Events.ITERATION_STARTED, self._arm)
        self.at = at

    def _arm(self, engine) -> None:
        self.armed = engine.state.iteration == self.at

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        if not self.armed:
            return grad
        self.armed = False
        grad = grad.clone()
        grad.view(-1)[0] = float("inf")
        return grad


@pytest.mark.parametrize("runner", ["iteration", "trainer"])
@pytest.mark.parametrize("name", available_optimizers())
def test_an_inf_gradient_stops_before_the_optimizer_step(name, runner):
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = _optimizer(name, net, lr=0.1)
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(4, 3, generator=gen), torch.randint(0, 2, (4,), generator=gen)) for _ in range(3)]
    trainer, _ = _trainer(runner, net, opt, batches)
    seen = _watch(trainer, net, opt)
    _PoisonOnce(trainer, net.weight, at=3)  # a full step for LookSAM (k=2) too
    cause = "clean pass's gradient" if isinstance(opt, SharpnessAwareOptimizer) else "plain optimizer"
    with pytest.raises(FloatingPointError, match=rf"iteration 3 .*without autocast.*{cause}"):
        trainer.run()
    with _true_weights(opt):
        assert all(torch.equal(p, q) for p, q in zip(net.parameters(), seen["weights"]))
        assert all(torch.isfinite(p).all() for p in net.parameters())
    assert _state_equal(_optimizer_state(opt), seen["state"])


def test_check_finite_false_trains_on_as_monai_does():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    opt = _optimizer("sam", net, lr=0.1)
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(4, 3, generator=gen), torch.randint(0, 2, (4,), generator=gen)) for _ in range(2)]
    trainer, _ = _trainer("trainer", net, opt, batches, check_finite=False)
    _PoisonOnce(trainer, net.weight, at=2)
    trainer.run()
    assert not torch.isfinite(net.weight).all()  # the opt-out steps on the poisoned gradient


SCALABLE = [
    name
    for name in available_optimizers()
    if not isinstance(opt := _optimizer(name, torch.nn.Linear(3, 2), 0.1), SharpnessAwareOptimizer)
    or opt.supports_grad_scaler
]


@pytest.mark.parametrize("runner", ["iteration", "trainer"])
@pytest.mark.parametrize("name", SCALABLE)
def test_with_a_grad_scaler_an_overflowing_step_is_skipped(name, runner):
    """fp16 CPU autocast with a scale of 2**40: every scaled gradient overflows, every step is skipped."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    start = [p.detach().clone() for p in net.parameters()]
    opt = _optimizer(name, net, lr=0.1)
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(4, 3, generator=gen), torch.randint(0, 2, (4,), generator=gen)) for _ in range(2)]
    options = {"cpu_autocast_dtype": "float16", "scaler_kwargs": {"init_scale": 2.0**40}}
    trainer, iteration = _trainer(runner, net, opt, batches, **options)
    trainer.run()  # no FloatingPointError: a GradScaler skipping a step is the normal outcome
    assert iteration.scaler.get_scale() == 2.0**38  # halved once per skipped step
    with _true_weights(opt):
        assert all(torch.equal(p, s) for p, s in zip(net.parameters(), start))
