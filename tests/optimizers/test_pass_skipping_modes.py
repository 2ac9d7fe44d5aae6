"""Modes that skip passes: late phase (``start_step``), ``interval`` from the start step, and what a
skipped step really costs (exactly the kernels of a base step, no buffers, no norms)."""

from __future__ import annotations

import copy

import pytest
import torch
from optim_helpers import ACTIVE, OpLog, batch, closure_for, mse, small_net

from monai_sam.optimizers import ASAM, SAM, LookSAM, create_optimizer


def _counting_closure(model, x, y, calls):
    def closure():
        calls.append(1)
        loss = mse(model, x, y)
        loss.backward()
        return loss

    return closure


@pytest.mark.parametrize(
    "method", sorted(set(ACTIVE) - {"msam"})
)  # one pass: see tests/optimizers/test_msam.py
def test_late_phase_steps_equal_the_base_optimizer_then_the_method_starts(method):
    cls, hyper = ACTIVE[method]
    x, y = batch()
    model = small_net()
    reference = copy.deepcopy(model)
    opt = cls(model.parameters(), torch.optim.AdamW, **hyper, start_step=3, lr=0.01)
    plain = torch.optim.AdamW(reference.parameters(), lr=0.01)
    calls: list[int] = []
    for _ in range(3):
        assert opt.num_passes == 1
        opt.step(_counting_closure(model, x, y, calls))
        plain.zero_grad()
        mse(reference, x, y).backward()
        plain.step()
    assert len(calls) == 3
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)  # bit-exact: the late phase is the base optimizer
    assert not any(opt.method_state.values()) and not opt._workspace  # truly skipped: no buffer
    assert opt.num_passes == opt.passes_per_step > 1
    opt.step(_counting_closure(model, x, y, calls))
    assert len(calls) == 3 + opt.passes_per_step


def test_interval_counts_from_the_start_step():
    model = small_net()
    x, y = batch()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, interval=3, start_step=2, lr=0.1)
    passes = []
    calls: list[int] = []
    for _ in range(9):
        passes.append(opt.num_passes)
        opt.step(_counting_closure(model, x, y, calls))
    assert passes == [1, 1, 2, 1, 1, 2, 1, 1, 2]
    assert len(calls) == sum(passes)


def test_looksam_with_a_late_start_reuses_nothing_before_its_first_sam_step():
    model = small_net()
    reference = copy.deepcopy(model)
    x, y = batch()
    opt = LookSAM(model.parameters(), torch.optim.SGD, rho=0.1, k=2, alpha=0.7, start_step=2, lr=0.1)
    plain = torch.optim.SGD(reference.parameters(), lr=0.1)
    passes = []
    for _ in range(2):
        passes.append(opt.num_passes)
        opt.step(closure_for(opt, lambda: mse(model, x, y)))
        plain.zero_grad()
        mse(reference, x, y).backward()
        plain.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)
    for _ in range(4):
        passes.append(opt.num_passes)
        opt.step(closure_for(opt, lambda: mse(model, x, y)))
    assert passes == [1, 1, 2, 1, 2, 1]


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_start_step_and_interval_name_the_parameter(bad):
    model = small_net()
    with pytest.raises(ValueError, match="start_step"):
        SAM(model.parameters(), start_step=bad, lr=0.1)
    opt = SAM(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="interval"):
        opt.interval = 0 if bad == -1 else bad
    with pytest.raises(ValueError, match="start_step"):
        opt.start_step = bad


def test_create_optimizer_routes_the_mode_options():
    model = small_net()
    opt = create_optimizer("sam", model.parameters(), base="sgd", lr=0.1, interval=4, start_step=10)
    assert (opt.interval, opt.start_step) == (4, 10)
    look = create_optimizer("looksam", model.parameters(), base="sgd", lr=0.1, k=3, start_step=5)
    assert (look.interval, look.start_step) == (3, 5)


def test_late_phase_resume_is_bit_exact():
    x, y = batch()

    def build(model):
        return SAM(
            model.parameters(), torch.optim.SGD, rho=0.1, start_step=2, interval=2, lr=0.1, momentum=0.9
        )

    model = small_net()
    opt = build(model)
    for _ in range(6):
        opt.step(closure_for(opt, lambda: mse(model, x, y)))
    resumed_model = small_net()
    resumed = build(resumed_model)
    for _ in range(1):  # interrupted inside the late phase's base-only steps
        resumed.step(closure_for(resumed, lambda: mse(resumed_model, x, y)))
    saved = copy.deepcopy((resumed_model.state_dict(), resumed.state_dict()))
    resumed_model = small_net(seed=5)
    resumed = build(resumed_model)
    resumed_model.load_state_dict(saved[0])
    resumed.load_state_dict(saved[1])
    for _ in range(5):
        resumed.step(closure_for(resumed, lambda: mse(resumed_model, x, y)))
    for p, q in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("cls", [SAM, ASAM])
def test_a_skipped_step_runs_exactly_the_kernels_of_a_base_step(cls):
    x, y = batch()
    model = small_net()
    reference = copy.deepcopy(model)
    opt = cls(model.parameters(), torch.optim.SGD, interval=2, lr=0.1, momentum=0.9)
    plain = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):  # full, skipped, full: the next one is skipped and momentum exists on both sides
        opt.step(closure_for(opt, lambda: mse(model, x, y)))
        plain.zero_grad()
        mse(reference, x, y).backward()
        plain.step()
    assert opt.num_passes == 1
    mse(model, x, y).backward()
    with OpLog() as skipped:
        opt.unperturb()
        opt.base_step(check_finite=False)  # the finite check is base_step's own (tested elsewhere)
    mse(reference, x, y).backward()
    with OpLog() as base:
        plain.step()
    assert skipped.ops == base.ops


def test_the_weight_backup_is_allocated_once_and_not_checkpointed():
    x, y = batch()
    model = small_net()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    opt.step(closure_for(opt, lambda: mse(model, x, y)))
    first = {id(p): buffer.data_ptr() for p, buffer in opt._workspace.items()}
    opt.step(closure_for(opt, lambda: mse(model, x, y)))
    assert first == {id(p): buffer.data_ptr() for p, buffer in opt._workspace.items()}
    assert len(first) == len(list(model.parameters()))
    assert "per_param" not in opt.state_dict()["sharpness_aware"] or not any(
        opt.state_dict()["sharpness_aware"]["per_param"].values()
    )


def test_the_backup_follows_a_dtype_change_of_the_model():
    x, y = batch()
    model = small_net().float()
    reference = copy.deepcopy(model).double()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    opt.step(closure_for(opt, lambda: mse(model, x.float(), y.float())))
    model.double()  # parameters keep their identity, their data become fp64
    ref_opt = SAM(reference.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    reference.load_state_dict(model.state_dict())
    opt.step(closure_for(opt, lambda: mse(model, x, y)))
    ref_opt.step(closure_for(ref_opt, lambda: mse(reference, x, y)))
    for p, q in zip(model.parameters(), reference.parameters()):
        assert p.dtype == torch.float64 and torch.equal(p, q)
