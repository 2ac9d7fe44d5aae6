"""No host synchronisation inside a step: no ``.item()``, ``bool()`` or ``float()`` of a tensor.

Every read of a tensor value on the host goes through ``aten::_local_scalar_dense``; on a GPU it stalls
the stream. The wrapper's own work (norms, perturbation, restore, combination, non-finite handling) must
stay on the device, so a whole step over SGD (which itself reads nothing back) must not run that op.
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


@pytest.mark.parametrize("method", sorted(ACTIVE))
def test_a_full_step_reads_nothing_back(method):
    assert _probe_counts_reads() == 1  # the probe itself sees a host read
    cls, hyper = ACTIVE[method]
    model = small_net()
    x, y = batch()
    opt = cls(model.parameters(), torch.optim.SGD, **hyper, lr=0.1, momentum=0.9)
    for _ in range(3):  # full and (LookSAM) one-pass steps, after momentum exists
        with OpLog() as probe:
            for k in range(opt.num_passes):
                loss = mse(model, x, y)
                loss.backward()
                if k < opt.num_passes - 1:
                    opt.perturb(loss.detach())
                else:
                    opt.unperturb(loss.detach())
            opt.base_step()
        reads = probe.ops.count(HOST_READ)
        assert reads == 0, f"{method}: {reads} host reads in one step"


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
