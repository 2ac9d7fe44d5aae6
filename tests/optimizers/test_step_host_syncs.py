"""No host synchronisation inside a step: no ``.item()``, ``bool()`` or ``float()`` of a tensor.

Every read of a tensor value on the host goes through ``aten::_local_scalar_dense``; on a GPU it stalls
the stream. The wrapper's own work (norms, perturbation, restore, combination, non-finite handling) must
stay on the device, so a whole step over SGD (which itself reads nothing back) must not run that op. The
one exception is deliberate: without a GradScaler, ``base_step`` reads whether the final gradient is
finite (one flag) so that a non-finite step is refused before any weight changes; with a GradScaler the
scaler's own read does that, and ``check_finite=False`` (what the MONAI iteration passes, having read the
flag together with the loss) reads nothing.
"""

from __future__ import annotations

import pytest
import torch
from optim_helpers import ACTIVE, OpLog, batch, mse, small_net

HOST_READ = "aten._local_scalar_dense"


def _probe_counts_reads():
    with OpLog() as probe:
        bool(torch.ones(()) > 0)
    return probe.ops.count(HOST_READ)


def _reads_per_step(opt, model, scaler=None, **base_step_kwargs) -> list[int]:
    x, y = batch()
    counts = []
    for _ in range(3):  # full and (LookSAM) one-pass steps, after momentum exists
        with OpLog() as probe:
            for k in range(opt.num_passes):
                loss = mse(model, x, y)
                (scaler.scale(loss) if scaler is not None else loss).backward()
                if k < opt.num_passes - 1:
                    opt.perturb(loss.detach())
                else:
                    opt.unperturb(loss.detach())
            opt.base_step(scaler, **base_step_kwargs)
        counts.append(probe.ops.count(HOST_READ))
        if scaler is not None:
            scaler.update()
    return counts


@pytest.mark.parametrize("method", sorted(ACTIVE))
def test_a_full_step_reads_nothing_back(method):
    """The wrapper's own work (passes, combination, non-finite handling) stays on the device."""
    assert _probe_counts_reads() == 1  # the probe itself sees a host read
    cls, hyper = ACTIVE[method]
    model = small_net()
    opt = cls(model.parameters(), torch.optim.SGD, **hyper, lr=0.1, momentum=0.9)
    reads = _reads_per_step(opt, model, check_finite=False)
    assert reads == [0, 0, 0], f"{method}: {reads} host reads per step"


@pytest.mark.parametrize("method", sorted(ACTIVE))
def test_the_finite_check_is_the_one_read_of_a_step(method):
    """By default base_step reads one flag (is the final gradient finite?), and none with a GradScaler,
    which reads its own found-inf flag exactly as it does for a plain optimizer."""
    cls, hyper = ACTIVE[method]
    model = small_net()
    opt = cls(model.parameters(), torch.optim.SGD, **hyper, lr=0.1, momentum=0.9)
    assert _reads_per_step(opt, model) == [1, 1, 1]
    if not opt.supports_grad_scaler:
        return
    plain_model = small_net()
    plain = torch.optim.SGD(plain_model.parameters(), lr=0.1, momentum=0.9)
    plain_scaler = torch.amp.GradScaler("cpu")
    with OpLog() as probe:
        plain_scaler.scale(mse(plain_model, *batch())).backward()
        plain_scaler.step(plain)
    scaler_reads = probe.ops.count(HOST_READ)
    assert scaler_reads >= 1
    assert _reads_per_step(opt, model, torch.amp.GradScaler("cpu")) == [scaler_reads] * 3


def test_a_non_finite_gradient_is_handled_without_reading_it_back():
    model = small_net()
    x, y = batch()
    opt = ACTIVE["sam"][0](model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    with OpLog() as probe:
        mse(model, x, y).backward()
        next(model.parameters()).grad[0, 0] = float("inf")
        opt.perturb()
        mse(model, x, y).backward()
        opt.unperturb()
    assert probe.ops.count(HOST_READ) == 0
    assert bool(opt.last_perturbation_skipped)
