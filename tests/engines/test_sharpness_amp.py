"""Mixed precision on CPU: ``amp`` means what it means in MONAI (fp32 there); CPU autocast is the
``cpu_autocast_dtype`` opt-in: bf16 without a scaler, fp16 with the iteration's own GradScaler."""

from __future__ import annotations

import logging

import pytest
import torch
from monai.engines.utils import IterationEvents

from monai_sam.engines import SharpnessAwareIteration, SharpnessAwareTrainer
from monai_sam.optimizers import create_optimizer


def _trained(problem, iteration, dtype=torch.float32, **trainer_kwargs):
    net = problem.net(hidden=8, dtype=dtype)
    opt = create_optimizer("sam", net.parameters(), base="sgd", lr=0.1, rho=0.1)
    trainer = problem.run(net, opt, problem.batches(num_batches=3, dtype=dtype), iteration, **trainer_kwargs)
    return net, trainer


@pytest.mark.parametrize("amp", [False, True], ids=["amp_off", "amp_on"])
def test_bf16_cpu_autocast_runs_without_scaler(problem, amp):
    seen = []
    iteration = SharpnessAwareIteration(cpu_autocast_dtype="bfloat16")
    net, trainer = _trained(problem, iteration, amp=amp)
    # run once more to look at the forward dtype inside the iteration
    trainer.add_event_handler(
        IterationEvents.FORWARD_COMPLETED, lambda e: seen.append(e.state.output["pred"].dtype)
    )
    trainer.state.max_epochs += 1
    trainer.run()
    assert seen and all(d == torch.bfloat16 for d in seen)
    assert iteration.scaler.get_scale() == iteration.scaler.state_dict()["scale"] == 65536.0  # untouched
    assert all(torch.isfinite(p).all() for p in net.parameters())
    fp32_net, _ = _trained(problem, SharpnessAwareIteration())
    for p, q in zip(net.parameters(), fp32_net.parameters()):
        torch.testing.assert_close(p, q, rtol=0.05, atol=0.02)


@pytest.mark.parametrize("amp_kwargs", [None, {"dtype": torch.bfloat16}], ids=["default", "bf16_kwargs"])
def test_amp_on_a_cpu_device_trains_in_fp32_as_monai(problem, amp_kwargs, caplog):
    """MONAI's trainer autocasts only "cuda": with amp=True a CPU model trains in fp32, and so does ours."""
    seen = []
    iteration = SharpnessAwareIteration()
    with caplog.at_level(logging.INFO, logger="monai_sam.engines.iteration"):
        net, trainer = _trained(problem, iteration, amp=True, amp_kwargs=amp_kwargs)
    assert sum("autocasts only on CUDA" in r.getMessage() for r in caplog.records) == 1  # said once
    trainer.add_event_handler(
        IterationEvents.FORWARD_COMPLETED, lambda e: seen.append(e.state.output["pred"].dtype)
    )
    trainer.state.max_epochs += 1
    trainer.run()
    assert seen and all(d == torch.float32 for d in seen)
    assert iteration.scaler._scale is None  # never used
    fp32_net, fp32_trainer = _trained(problem, SharpnessAwareIteration())
    fp32_trainer.state.max_epochs += 1
    fp32_trainer.run()
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), fp32_net.parameters()))


def test_an_amp_dtype_that_a_cpu_device_ignores_is_warned_about(problem):
    with pytest.warns(UserWarning, match=r"amp_dtype=torch.bfloat16 applies to CUDA only"):
        _trained(problem, SharpnessAwareIteration(amp_dtype="bfloat16"), amp=True)


def test_grad_scaler_recipe_is_exact_without_autocast(problem):
    """A scaler with autocast disabled only multiplies by powers of two: the result equals fp32."""
    iteration = SharpnessAwareIteration(grad_scaler=True, scaler_kwargs={"init_scale": 2.0**10})
    scaled, _ = _trained(problem, iteration, dtype=torch.float64, amp=True, amp_kwargs={"enabled": False})
    plain, _ = _trained(problem, SharpnessAwareIteration(), dtype=torch.float64)
    for p, q in zip(scaled.parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert iteration.scaler.get_scale() == 2.0**10


def test_fp16_cpu_autocast_with_scaler_matches_fp32(problem):
    iteration = SharpnessAwareIteration(cpu_autocast_dtype="float16")
    assert iteration.scaler is not None
    net, _ = _trained(problem, iteration)
    plain, _ = _trained(problem, SharpnessAwareIteration())
    for p, q in zip(net.parameters(), plain.parameters()):
        torch.testing.assert_close(p, q, rtol=0.02, atol=5e-3)
    assert iteration.scaler._scale is not None  # the scaler was used


def test_fp16_overflow_skips_the_step_and_backs_off(problem):
    iteration = SharpnessAwareIteration(cpu_autocast_dtype="float16", scaler_kwargs={"init_scale": 2.0**40})
    net = problem.net(hidden=8, dtype=torch.float32)
    before = [p.detach().clone() for p in net.parameters()]
    opt = create_optimizer("sam", net.parameters(), base="sgd", lr=0.1, rho=0.1)
    problem.run(net, opt, problem.batches(num_batches=1, dtype=torch.float32), iteration)
    assert iteration.scaler.get_scale() < 2.0**40
    for p, q in zip(net.parameters(), before):
        assert torch.equal(p, q)


def test_trainer_scaler_is_the_iteration_scaler_and_checkpointable(problem):
    net = problem.net(dtype=torch.float32)
    opt = create_optimizer("sam", net.parameters(), base="sgd", lr=0.1)
    trainer = SharpnessAwareTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=problem.batches(num_batches=2, dtype=torch.float32),
        network=net,
        optimizer=opt,
        loss_function=torch.nn.CrossEntropyLoss(),
        cpu_autocast_dtype="float16",
        scaler_kwargs={"init_scale": 256.0, "growth_interval": 1},
    )
    scaler = trainer.scaler
    assert scaler is trainer.iteration.scaler
    trainer.run()
    assert trainer.scaler is scaler and scaler.get_scale() == 1024.0  # grew once per finite step
    fresh = torch.amp.GradScaler("cpu")
    fresh.load_state_dict(scaler.state_dict())
    assert fresh.get_scale() == 1024.0
