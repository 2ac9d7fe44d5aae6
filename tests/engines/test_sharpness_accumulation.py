"""``accumulation_steps``: per-micro-batch SAM, summed outside ``.grad``, one base step per window."""

from __future__ import annotations

import pytest
import torch

from monai_sam.engines import SharpnessAwareIteration
from monai_sam.optimizers import create_optimizer

LR, RHO = 0.5, 0.3


def test_accumulated_sam_equals_mean_of_micro_batch_sam_gradients(problem):
    batches = problem.batches(num_batches=3)  # windows {1, 2} and the epoch-end flush {3}
    net, ref = problem.net(hidden=4), problem.net(hidden=4)
    opt = create_optimizer("sam", net.parameters(), base="sgd", lr=LR, rho=RHO)
    trainer = problem.run(net, opt, batches, SharpnessAwareIteration(), accumulation_steps=2)
    windows = [[batches[0], batches[1]], [batches[2]]]
    for window in windows:
        total = None
        for x, y in window:
            g = problem.sam_gradient(ref, x, y, RHO)
            total = g if total is None else [a + b for a, b in zip(total, g)]
        with torch.no_grad():
            for p, g in zip(ref.parameters(), total):
                p.sub_(LR * g / 2)  # divided by accumulation_steps, also in the flush window (as MONAI)
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    assert opt._step_count == 2  # one base step per window
    assert [o["num_passes"] for o in trainer.state.output] == [2] * 4


def test_accumulation_differs_from_one_sam_step_on_the_whole_window(problem):
    """Per-micro-batch perturbations (m-sharpness) are not the full-batch SAM step."""
    batches = problem.batches(num_batches=2)
    net = problem.net(hidden=4)
    opt = create_optimizer("sam", net.parameters(), base="sgd", lr=LR, rho=RHO)
    problem.run(net, opt, batches, SharpnessAwareIteration(), accumulation_steps=2)
    full = problem.net(hidden=4)
    x = torch.cat([batches[0][0], batches[1][0]])
    y = torch.cat([batches[0][1], batches[1][1]])
    grads = problem.sam_gradient(full, x, y, RHO)
    with torch.no_grad():
        for p, g in zip(full.parameters(), grads):
            p.sub_(LR * g)
    assert any((p - q).abs().max() > 1e-6 for p, q in zip(net.parameters(), full.parameters()))


def test_decoupled_wsam_refuses_accumulation(problem):
    if "wsam" not in __import__("monai_sam.optimizers", fromlist=["x"]).available_optimizers():
        pytest.skip("WSAM not available")
    net = problem.net()
    opt = create_optimizer("wsam", net.parameters(), base="sgd", lr=0.1, decouple=True)
    with pytest.raises(ValueError, match="accumulation"):
        problem.run(net, opt, problem.batches(num_batches=2), SharpnessAwareIteration(), accumulation_steps=2)


def test_accumulated_msam_takes_every_micro_batch_gradient_at_the_same_ascent_point(problem):
    """Two micro-batches of 4 = one batch of 8 (mean losses, equal sizes): the same run, to fp tolerance."""
    micro = problem.batches(num_batches=4)
    whole = [(torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])) for a, b in zip(micro[::2], micro[1::2])]
    kwargs = {"base": "sgd", "lr": LR, "momentum": 0.9, "rho": RHO}
    net, ref = problem.net(hidden=4), problem.net(hidden=4)
    opt = create_optimizer("msam", net.parameters(), **kwargs)
    ref_opt = create_optimizer("msam", ref.parameters(), **kwargs)
    problem.run(net, opt, micro, SharpnessAwareIteration(), max_epochs=3, accumulation_steps=2)
    problem.run(ref, ref_opt, whole, SharpnessAwareIteration(), max_epochs=3)
    assert opt._step_count == ref_opt._step_count == 6
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
