"""frozen_running_stats and bn_momentum_zero keep BatchNorm statistics out of the extra passes."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DenseNet121
from torch import nn

from monai_sam.batchnorm import bn_momentum_zero, frozen_running_stats, running_stat_buffers


def _net(momentum=0.1) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4, momentum=momentum),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3),
        nn.BatchNorm1d(3, momentum=momentum),
        nn.Unflatten(1, (1, 3)),
        nn.InstanceNorm1d(1, track_running_stats=True),
    )


def _buffers(net):
    return [b.clone() for b in running_stat_buffers(net)]


@pytest.mark.parametrize("momentum", [0.1, None])
def test_frozen_running_stats_is_bit_identical(momentum):
    net = _net(momentum)
    x = torch.randn(5, 1, 8, 8)
    net(x)  # some history
    before = _buffers(net)
    assert len(before) == 9
    with frozen_running_stats(net):
        out = net(x * 3 + 1)
        out.sum().backward()
    for b, a in zip(before, running_stat_buffers(net)):
        assert torch.equal(a, b)
    net(x * 2 - 1)  # statistics still update outside the context
    assert not torch.equal(running_stat_buffers(net)[0], before[0])


def test_frozen_running_stats_restores_after_an_exception():
    net = _net()
    before = _buffers(net)
    with pytest.raises(RuntimeError, match="boom"), frozen_running_stats(net):
        net(torch.randn(5, 1, 8, 8))
        raise RuntimeError("boom")
    for b, a in zip(before, running_stat_buffers(net)):
        assert torch.equal(a, b)


def test_pass_inside_uses_batch_statistics():
    """Train mode is kept: the output equals an unfrozen train-mode forward."""
    net = _net()
    x = torch.randn(5, 1, 8, 8)
    with frozen_running_stats(net):
        frozen = net(x)
    reference = _net()(x)
    assert torch.equal(frozen, reference)


def test_monai_densenet_buffers_are_covered():
    net = DenseNet121(
        spatial_dims=2,
        in_channels=1,
        out_channels=2,
        init_features=8,
        growth_rate=4,
        block_config=(1, 1, 1, 1),
    )
    n_bn = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert len(running_stat_buffers(net)) == 3 * n_bn > 0
    before = _buffers(net)
    with frozen_running_stats(net):
        net(torch.randn(2, 1, 32, 32))
    assert all(torch.equal(a, b) for a, b in zip(before, running_stat_buffers(net)))


def test_bn_momentum_zero_keeps_mean_and_var_and_restores_momentum():
    net = _net()
    x = torch.randn(5, 1, 8, 8)
    net(x)
    bn = net[1]
    mean, var, count = bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked)
    with bn_momentum_zero(net):
        assert bn.momentum == 0.0
        net(x * 2)
    assert bn.momentum == 0.1
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    assert int(bn.num_batches_tracked) == count + 1  # the documented difference to frozen_running_stats
