"""DistributedDataParallel through the real trainer (torchrun, 2 gloo ranks on CPU) against a one-process
emulation: each rank perturbs with its local gradient, the per-rank method gradients are averaged."""

from __future__ import annotations

import contextlib
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from monai_sam.optimizers import create_optimizer

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from ddp_sharpness_worker import CONFIGS, global_batches, net  # noqa: E402

sys.path.remove(str(HERE))


def _method_gradient(model, name, x, y):
    """The method's final gradient on (x, y) at the current weights, through its manual API (lr = 0)."""
    model = copy.deepcopy(model)
    opt = create_optimizer(name, model.parameters(), base="sgd", lr=0.0, rho=0.3)
    loss_fn = torch.nn.CrossEntropyLoss()
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    for _ in range(1, opt.num_passes):
        opt.perturb(loss.detach())
        loss = loss_fn(model(x), y)
        loss.backward()
    opt.unperturb(loss.detach())
    return [p.grad.detach().clone() for p in model.parameters()]


def _emulate(name, synced, world=2):
    model = net()
    for x, y in global_batches():
        if synced:  # one global perturbation: the method on the whole batch
            grads = _method_gradient(model, name, x, y)
        else:  # local perturbations, then the mean of the per-rank method gradients
            per_rank = [
                _method_gradient(model, name, xc, yc) for xc, yc in zip(x.chunk(world), y.chunk(world))
            ]
            grads = [sum(gs) / world for gs in zip(*per_rank)]
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads):
                p.sub_(0.5 * g)
    return [p.detach() for p in model.parameters()]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ddp_two_ranks_equal_local_perturbation_emulation(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        str(HERE / "ddp_sharpness_worker.py"), str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stderr[-3000:]
    for config, (name, synced) in CONFIGS.items():
        saved = torch.load(tmp_path / f"{config}.pt", weights_only=True)
        assert saved["ranks_agree"], config
        expected = _emulate(name, synced)
        for got, want in zip(saved["weights"], expected):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=config)
        if not synced:  # and local perturbations really differ from one global perturbation
            other = _emulate(name, True)
            assert any((a - b).abs().max() > 1e-8 for a, b in zip(saved["weights"], other)), config


@pytest.fixture
def single_rank_group(tmp_path):
    """A one-rank gloo group, enough to exercise the DDP code paths in-process."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("sync", [False, True])
def test_decoupled_wsam_under_ddp_needs_synchronised_perturbations(problem, single_rank_group, sync):
    from torch.nn.parallel import DistributedDataParallel

    from monai_sam.engines import SharpnessAwareIteration

    model = DistributedDataParallel(problem.net(hidden=3))
    reference = problem.net(hidden=3)
    opt = create_optimizer("wsam", model.parameters(), base="sgd", lr=0.1, decouple=True)
    ref_opt = create_optimizer("wsam", reference.parameters(), base="sgd", lr=0.1, decouple=True)
    batches = problem.batches(num_batches=2)
    if not sync:
        with pytest.raises(ValueError, match="sync_perturbation=True"):
            problem.run(model, opt, batches, SharpnessAwareIteration())
        return
    problem.run(model, opt, batches, SharpnessAwareIteration(sync_perturbation=True))
    problem.run(reference, ref_opt, batches, SharpnessAwareIteration())
    for p, q in zip(model.module.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_msam_one_pass_is_a_synchronised_ddp_pass(problem, single_rank_group):
    """MSAM declares its final gradient as its (only) pass, so the pass runs with DDP's all-reduce."""
    from torch.nn.parallel import DistributedDataParallel

    from monai_sam.engines import SharpnessAwareIteration
    from monai_sam.engines.step_plan import DDP_LAST_PASS as _DDP_LAST_PASS
    from monai_sam.engines.step_plan import PassScopes as _DistributedPlan

    model = DistributedDataParallel(problem.net(hidden=3))
    reference = problem.net(hidden=3)
    kwargs = {"base": "sgd", "lr": 0.1, "momentum": 0.9, "rho": 0.3}
    opt = create_optimizer("msam", model.parameters(), **kwargs)
    ref_opt = create_optimizer("msam", reference.parameters(), **kwargs)
    iteration = SharpnessAwareIteration()
    plan = _DistributedPlan(model, iteration._ddp_mode(type("E", (), {"network": model})(), opt), opt)
    assert plan.mode == _DDP_LAST_PASS and plan.num_passes == 1
    assert isinstance(plan.pass_scope(0), contextlib.nullcontext)  # not inside no_sync: all-reduced
    batches = problem.batches(num_batches=3)
    problem.run(model, opt, batches, iteration, max_epochs=2)
    problem.run(reference, ref_opt, batches, SharpnessAwareIteration(), max_epochs=2)
    for p, q in zip(model.module.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_bsam_under_ddp_needs_synchronised_perturbations(problem, single_rank_group):
    """bSAM's precision update uses the noisy pass's gradient, which DDP only averages in synced mode."""
    from torch.nn.parallel import DistributedDataParallel

    from monai_sam.engines import SharpnessAwareIteration

    model = DistributedDataParallel(problem.net(hidden=3))
    opt = create_optimizer("bsam", model.parameters(), lr=0.1, num_data=32)
    with pytest.raises(ValueError, match="sync_perturbation=True"):
        problem.run(model, opt, problem.batches(num_batches=1), SharpnessAwareIteration())
    before = [p.detach().clone() for p in model.parameters()]
    problem.run(model, opt, problem.batches(num_batches=1), SharpnessAwareIteration(sync_perturbation=True))
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))
