"""The parts a sharpness-aware step is built from: StepPasses, WeightBackup and ParamBuffer."""

from __future__ import annotations

import pytest
import torch

from monai_sam.optimizers import SAM, create_optimizer
from monai_sam.optimizers.param_buffers import BoundBuffer, ParamBuffer
from monai_sam.optimizers.registry import METHOD_REGISTRY
from monai_sam.optimizers.step_passes import StepPasses
from monai_sam.optimizers.weight_backup import WeightBackup


@pytest.mark.parametrize(
    ("interval", "start_step", "expected"),
    [(1, 0, [3, 3, 3, 3, 3]), (2, 0, [3, 1, 3, 1, 3]), (1, 2, [1, 1, 3, 3, 3]), (3, 1, [1, 3, 1, 1, 3])],
)
def test_step_passes_counts_the_passes_of_each_step(interval, start_step, expected):
    passes = StepPasses("M", interval=interval, start_step=start_step)
    got = []
    for _ in expected:
        got.append(passes.passes_of_next_step(3))
        passes.close(stepped=True)
    assert got == expected and passes.step_count == len(expected)


def test_step_passes_refuses_calls_out_of_order():
    passes = StepPasses("M")
    with pytest.raises(RuntimeError, match=r"M.base_step\(\) before unperturb"):
        passes.check_base_step()
    with pytest.raises(RuntimeError, match=r"M.unperturb\(\) called after 1 of 3"):
        passes.check_unperturb(3)
    passes.passes_done = 2
    with pytest.raises(RuntimeError, match=r"M.perturb\(\) called after pass 3 of 3"):
        passes.check_perturb(3)
    passes.unperturbed = True
    with pytest.raises(RuntimeError, match=r"call base_step\(\) to finish"):
        passes.check_perturb(3)
    with pytest.raises(RuntimeError, match="called twice"):
        passes.check_unperturb(3)
    with pytest.raises(RuntimeError, match=r"M.state_dict\(\) called in the middle of a step"):
        passes.check_between_steps("state_dict()")
    passes.close(stepped=False)
    assert not passes.in_step and passes.step_count == 0


@pytest.mark.parametrize(("name", "value"), [("interval", 0), ("start_step", -1), ("interval", True)])
def test_step_passes_validates_its_modes(name, value):
    with pytest.raises(ValueError, match=f"Invalid {name}="):
        StepPasses("M", **{name: value})


def test_weight_backup_restores_bit_for_bit_and_reuses_its_buffers():
    params = [torch.randn(3, 2), torch.randn(4, dtype=torch.float64)]
    before = [p.clone() for p in params]
    backup = WeightBackup()
    backup.save(params)
    assert all(backup.holds(p) for p in params)
    buffers = [backup.buffer(p).data_ptr() for p in params]
    backup.move_to_plus(params, [torch.full_like(p, 0.1) for p in params], alpha=-1.0)
    assert not any(torch.equal(p, b) for p, b in zip(params, before))
    backup.restore()
    assert all(torch.equal(p, b) for p, b in zip(params, before)) and not backup.saved
    backup.save(params)
    assert [backup.buffer(p).data_ptr() for p in params] == buffers  # allocated once


class _Kept(SAM):
    """A SAM with one peak and one persistent named buffer (for the declaration rules)."""

    peak = ParamBuffer("test_peak")
    kept = ParamBuffer("test_kept", persistent=True)


def test_param_buffers_are_named_keys_of_method_state():
    net = torch.nn.Linear(2, 2)
    opt = _Kept(net.parameters(), lr=0.1)
    assert isinstance(_Kept.kept, ParamBuffer) and isinstance(opt.kept, BoundBuffer)
    assert _Kept.persistent_keys == ("test_kept",) and SAM.persistent_keys == ()
    w, b = net.weight, net.bias
    w.grad, b.grad = torch.ones_like(w), torch.ones_like(b)
    grad_w = w.grad
    opt.peak.stash([b, w])
    assert w.grad is None and opt.peak[w] is grad_w and opt.method_state[w]["test_peak"] is grad_w
    opt.peak.accumulate([w], [torch.ones_like(w)])
    assert torch.equal(opt.peak[w], torch.full_like(w, 2.0))
    assert list(opt.peak.holders()) == [w, b]  # param-group order, not stash order
    opt.kept[w] = torch.zeros_like(w)
    opt.end_passes()  # closes the step: peak buffers go, persistent ones stay
    assert w not in opt.peak and opt.peak.get(w) is None and w in opt.kept
    assert list(opt.kept.take()) == [w] and w not in opt.kept


@pytest.mark.parametrize("info", METHOD_REGISTRY, ids=lambda info: info.name)
def test_no_weight_backup_is_left_between_steps(info):
    """The copy of w lives only within a step (not in method_state, not in the checkpoint)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    kwargs = {"num_data": 16} if info.name == "bsam" else {}
    opt = create_optimizer(info.name, net.parameters(), lr=0.05, **kwargs)
    x, y = torch.randn(8, 4), torch.randn(8, 2)

    def closure():
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(2):
        opt.step(closure)
        assert not opt._weights.saved
        per_param = opt.state_dict()["sharpness_aware"]["per_param"]
        assert set().union(*map(set, per_param.values())) <= set(opt.persistent_keys)
