"""MONAI's iteration contract: parity with ``_iteration``, events, outputs, tuple networks, misuse errors."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.data import MetaTensor
from monai.engines.utils import IterationEvents
from monai.networks.nets import ViT

from monai_sam.engines import SharpnessAwareIteration, SharpnessEvents
from monai_sam.optimizers import SharpnessAwareOptimizer, create_optimizer


def _params(net):
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"optim_set_to_none": True}, {"accumulation_steps": 2}],
    ids=["default", "set_to_none", "accumulation"],
)
def test_plain_adam_is_bit_identical_to_monai_iteration(problem, kwargs):
    batches = problem.batches(num_batches=3, dtype=torch.float32)
    stock_net, ours_net = (
        problem.net(hidden=5, dtype=torch.float32),
        problem.net(hidden=5, dtype=torch.float32),
    )
    stock = problem.run(
        stock_net, torch.optim.Adam(stock_net.parameters(), lr=0.01), batches, None, 2, **kwargs
    )
    ours = problem.run(
        ours_net,
        torch.optim.Adam(ours_net.parameters(), lr=0.01),
        batches,
        SharpnessAwareIteration(),
        2,
        **kwargs,
    )
    for p, q in zip(stock_net.parameters(), ours_net.parameters()):
        assert torch.equal(p, q)
    assert stock.state.output[0]["loss"] == ours.state.output[0]["loss"]
    assert sorted(stock.state.output[0]) == sorted(ours.state.output[0])


def _record_events(trainer, log):
    names = {
        Events.ITERATION_STARTED: "started",
        IterationEvents.FORWARD_COMPLETED: "forward",
        IterationEvents.LOSS_COMPLETED: "loss",
        SharpnessEvents.PASS_COMPLETED: "pass",
        SharpnessEvents.PERTURBED: "perturbed",
        SharpnessEvents.RESTORED: "restored",
        IterationEvents.BACKWARD_COMPLETED: "backward",
        IterationEvents.MODEL_COMPLETED: "model",
        Events.ITERATION_COMPLETED: "completed",
    }
    for event, name in names.items():

        def handler(engine, name=name):
            suffix = str(engine.state.sharpness_pass) if name == "pass" else ""
            log.append(name + suffix)
            if name in ("model", "completed"):
                assert isinstance(engine.state.output, list), name  # decollated before user handlers

        trainer.add_event_handler(event, handler)


@pytest.mark.parametrize(("name", "passes"), [("sam", 2), ("crsam", 3)])
def test_event_order_and_outputs(problem, name, passes):
    net = problem.net(hidden=4)
    batches = problem.batches(num_batches=1)
    opt = create_optimizer(name, net.parameters(), base="sgd", lr=0.1, rho=0.2)
    trainer = problem.trainer(net, opt, batches, SharpnessAwareIteration())
    log: list[str] = []
    _record_events(trainer, log)
    trainer.run()
    middle = ["pass0"] + [e for k in range(1, passes) for e in ("perturbed", f"pass{k}")]
    assert log == ["started", "forward", "loss", *middle, "restored", "backward", "model", "completed"]
    out = trainer.state.output
    assert isinstance(out, list) and len(out) == 4
    item = out[0]
    assert set(item) >= {"image", "label", "pred", "loss", "loss_perturbed", "sharpness", "num_passes"}
    assert item["num_passes"] == passes
    assert item["sharpness"] == pytest.approx(item["loss_perturbed"] - item["loss"], abs=1e-12)
    assert item["sharpness"] > 0  # an ascent step increases the loss on a smooth problem
    assert not item["pred"].requires_grad


@pytest.mark.parametrize("name", ["sam", "crsam"])
def test_loss_perturbed_is_the_loss_at_the_ascent_point(problem, name):
    net = problem.net()
    batches = problem.batches(num_batches=1)
    x, y = batches[0]
    w = [p.detach().clone() for p in net.parameters()]
    trainer = problem.run(
        net,
        create_optimizer(name, net.parameters(), base="sgd", lr=0.0, rho=0.5),
        batches,
        SharpnessAwareIteration(),
    )
    ref = problem.net()
    loss = torch.nn.functional.cross_entropy(ref(x), y)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    with torch.no_grad():
        for p, g in zip(ref.parameters(), grads):
            p.add_(g, alpha=0.5 / (norm.item() + 1e-12))
    expected = torch.nn.functional.cross_entropy(ref(x), y).item()
    assert trainer.state.output[0]["loss_perturbed"] == pytest.approx(expected, rel=1e-12)
    assert trainer.state.output[0]["loss"] == pytest.approx(loss.item(), rel=1e-12)
    for p, q in zip(net.parameters(), w):  # lr = 0: restored bit-exactly
        assert torch.equal(p, q)


def test_events_are_registered_on_first_call(problem):
    net = problem.net()
    opt = create_optimizer("sam", net.parameters(), base="sgd", lr=0.1)
    trainer = problem.trainer(
        net, opt, problem.batches(num_batches=1), SharpnessAwareIteration(), event_names=None
    )
    assert not trainer.has_registered_events(SharpnessEvents.PERTURBED)
    trainer.run()
    assert all(trainer.has_registered_events(e) for e in SharpnessEvents)


class _Scaled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 2).double()
        self.seen: list[float] = []

    def forward(self, x, scale=1.0):
        self.seen.append(scale)
        return self.linear(x) * scale


def test_four_tuple_prepare_batch_reaches_every_pass(problem):
    net = _Scaled()

    def prepare(batchdata, device, non_blocking, **kwargs):
        return batchdata[0].to(device), batchdata[1].to(device), (), {"scale": 2.0}

    opt = create_optimizer("crsam", net.parameters(), base="sgd", lr=0.1)
    problem.run(net, opt, problem.batches(num_batches=1), SharpnessAwareIteration(), prepare_batch=prepare)
    assert net.seen == [2.0, 2.0, 2.0]


def test_vit_tuple_output_needs_the_explicit_output_index(problem):
    """By default the tuple reaches the loss as in MONAI; ``output_index=0`` opts in."""
    torch.manual_seed(0)
    net = ViT(
        in_channels=1,
        img_size=(16, 16),
        patch_size=(8, 8),
        hidden_size=16,
        mlp_dim=32,
        num_layers=1,
        num_heads=2,
        classification=True,
        num_classes=2,
        spatial_dims=2,
    )
    batches = [(torch.randn(2, 1, 16, 16), torch.tensor([0, 1]))]
    opt = create_optimizer("sam", net.parameters(), base="adam", lr=1e-3)
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(Exception):  # noqa: B017 - the loss function rejects the raw tuple, as in MONAI
        problem.run(net, opt, batches, SharpnessAwareIteration())
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before))
    trainer = problem.run(net, opt, batches, SharpnessAwareIteration(output_index=0))
    assert trainer.state.output[0]["pred"].shape == (2,)
    assert any(not torch.equal(p, q) for p, q in zip(net.parameters(), before))


@pytest.mark.parametrize("value", ["0", 1.0, True])
def test_output_index_must_be_an_int(value):
    with pytest.raises(TypeError, match="output_index"):
        SharpnessAwareIteration(output_index=value)


def test_compile_strips_and_restores_metatensor(problem):
    batches = [(MetaTensor(x), MetaTensor(y)) for x, y in problem.batches(num_batches=2)]
    plain_batches = problem.batches(num_batches=2)
    compiled_net, plain_net = problem.net(), problem.net()
    trainer = problem.run(
        compiled_net,
        create_optimizer("sam", compiled_net.parameters(), base="sgd", lr=0.1),
        batches,
        SharpnessAwareIteration(),
        decollate=False,
        compile=True,
        compile_kwargs={"backend": "eager"},
    )
    problem.run(
        plain_net,
        create_optimizer("sam", plain_net.parameters(), base="sgd", lr=0.1),
        plain_batches,
        SharpnessAwareIteration(),
    )
    assert isinstance(trainer.state.output["image"], MetaTensor)
    assert isinstance(trainer.state.output["pred"], MetaTensor)
    for p, q in zip(compiled_net.parameters(), plain_net.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


def test_max_norm_clips_the_final_gradient(problem):
    batches = problem.batches(num_batches=1)
    net, ref = problem.net(), problem.net()
    problem.run(
        net,
        create_optimizer("sam", net.parameters(), base="sgd", lr=1.0, rho=0.1),
        batches,
        SharpnessAwareIteration(max_norm=1e-3),
    )
    # reference: same SAM step without clipping, then the gradient rescaled to norm 1e-3
    unclipped = problem.net()
    problem.run(
        unclipped,
        create_optimizer("sam", unclipped.parameters(), base="sgd", lr=1.0, rho=0.1),
        batches,
        SharpnessAwareIteration(),
    )
    deltas = [q.detach() - u.detach() for q, u in zip(ref.parameters(), unclipped.parameters())]  # = gp
    norm = torch.sqrt(sum((d**2).sum() for d in deltas))
    for p, q, d in zip(net.parameters(), ref.parameters(), deltas):
        torch.testing.assert_close(p.detach(), q.detach() - d * (1e-3 / (norm + 1e-6)), rtol=1e-9, atol=1e-12)


def test_non_finite_loss_raises_naming_the_iteration(problem):
    batches = problem.batches(num_batches=2)
    batches[1][0][0, 0] = float("nan")
    net = problem.net()
    opt = create_optimizer("sam", net.parameters(), base="sgd", lr=0.1)
    with pytest.raises(FloatingPointError, match="iteration 2"):
        problem.run(net, opt, batches, SharpnessAwareIteration())
    # raised before the optimizer step: the weights are those after iteration 1
    first_only = problem.net()
    problem.run(
        first_only,
        create_optimizer("sam", first_only.parameters(), base="sgd", lr=0.1),
        batches[:1],
        SharpnessAwareIteration(),
    )
    for p, q in zip(net.parameters(), first_only.parameters()):
        assert torch.equal(p, q)
    # opting out trains on (NaN) instead of raising
    problem.run(
        problem.net(),
        create_optimizer("sam", problem.net().parameters(), lr=0.1),
        batches,
        SharpnessAwareIteration(check_finite=False),
    )


class _ClosureSAM(torch.optim.SGD):
    """Stands in for another library's closure-only SAM (pytorch_optimizer.SAM has this shape)."""

    def first_step(self, zero_grad=False):
        pass

    def second_step(self, zero_grad=False):
        pass


class _NoScalerSAM(SharpnessAwareOptimizer):
    supports_grad_scaler = False


@pytest.mark.parametrize(
    ("make_opt", "iteration_kwargs", "trainer_kwargs", "error", "match"),
    [
        (lambda ps: torch.optim.LBFGS(ps), {}, {}, TypeError, "requires a closure"),
        (lambda ps: _ClosureSAM(ps, lr=0.1), {}, {}, TypeError, "another library"),
        (
            lambda ps: _NoScalerSAM(ps, torch.optim.SGD, hyperparameters={"rho": 0.05}, lr=0.1),
            {"grad_scaler": True, "cpu_autocast_dtype": "bfloat16"},
            {"amp": True},
            ValueError,
            "does not support a GradScaler",
        ),
        (lambda ps: torch.optim.SGD(ps, lr=0.1), {"grad_scaler": True}, {}, ValueError, "needs AMP"),
    ],
    ids=["lbfgs", "foreign_sam", "scaler_unsupported", "scaler_without_amp"],
)
def test_misuse_raises_clear_errors(problem, make_opt, iteration_kwargs, trainer_kwargs, error, match):
    net = problem.net(dtype=torch.float32)
    with pytest.raises(error, match=match):
        problem.run(
            net,
            make_opt(net.parameters()),
            problem.batches(num_batches=1, dtype=torch.float32),
            SharpnessAwareIteration(**iteration_kwargs),
            **trainer_kwargs,
        )


def test_bad_options_raise():
    with pytest.raises(ValueError, match="bn_policy"):
        SharpnessAwareIteration(bn_policy="freeze")
    with pytest.raises(ValueError, match="max_norm"):
        SharpnessAwareIteration(max_norm=0)
    with pytest.raises(ValueError, match="amp_dtype"):
        SharpnessAwareIteration(amp_dtype="float8")
