"""SAM-ON (``perturb="norm"``): only normalisation parameters move, the norm is over them, every method."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.blocks import Convolution
from optim_helpers import small_net
from torch import nn

from monai_sam.optimizers import GSAM, SAM, SharpnessAwareOptimizer, available_optimizers, create_optimizer
from monai_sam.optimizers.factory import PLAIN_OPTIMIZERS
from monai_sam.optimizers.perturbation_set import norm_parameters

METHODS = [name for name in available_optimizers() if name not in PLAIN_OPTIMIZERS]


def norm_net(seed: int = 0) -> nn.Module:
    """Linear -> BatchNorm -> Linear -> LayerNorm -> Linear (float64)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 1)
    ).double()


def _data():
    g = torch.Generator().manual_seed(3)
    return torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randn(
        16, 1, generator=g, dtype=torch.float64
    )


def _is_norm(net: nn.Module) -> list[bool]:
    chosen = {id(p) for p in norm_parameters(net)}
    return [id(p) in chosen for p in net.parameters()]


def test_norm_parameters_finds_torch_and_monai_norm_layers_only():
    net = norm_net()
    assert _is_norm(net) == [False, False, True, True, False, False, True, True, False, False]
    block = Convolution(spatial_dims=2, in_channels=1, out_channels=4, norm=("group", {"num_groups": 2}))
    names = {n for n, p in block.named_parameters() if any(p is q for q in norm_parameters(block))}
    assert names == {"adn.N.weight", "adn.N.bias"}
    others = nn.ModuleList(
        [nn.InstanceNorm2d(3, affine=True), nn.RMSNorm(4), nn.GroupNorm(1, 2), nn.Conv2d(1, 1, 1)]
    )
    assert len(norm_parameters(others)) == 2 + 1 + 2


def _method(name: str, params, seed: int, **extra):
    torch.manual_seed(seed)  # the random-perturbation methods draw their noise seed here
    if name == "bsam":  # its own update (no base) and a required data-set size
        return create_optimizer(name, params, lr=0.05, num_data=64, **extra)
    return create_optimizer(name, params, base="sgd", lr=0.05, momentum=0.9, **extra)


def _passes(opt, net, x, y, on_pass):
    """One step pass by pass; ``on_pass(k)`` sees the weights each pass runs at."""
    opt.zero_grad()
    for k in range(opt.num_passes):
        on_pass(k)
        loss = ((net(x) - y) ** 2).mean()
        loss.backward()
        if k < opt.num_passes - 1:
            opt.perturb(loss.detach())
        else:
            opt.unperturb(loss.detach())
    opt.base_step()


@pytest.mark.parametrize("name", METHODS)
def test_every_method_perturbs_only_the_norm_parameters(name):
    """Non-norm weights stay at w in every pass; norm weights move; the first step's displacement equals the
    same method's over the norm parameters alone (so its norm is over that subset)."""
    net = norm_net()
    alone = copy.deepcopy(net)
    x, y = _data()
    is_norm = _is_norm(net)
    opt = _method(name, net.parameters(), seed=7, perturb="norm", model=net)
    assert isinstance(opt, SharpnessAwareOptimizer) and opt.perturb_mode == "norm"
    subset = [p for p, n in zip(alone.parameters(), is_norm) if n]
    ref = _method(name, subset, seed=7)
    moved = []
    for step in range(3):
        with opt.true_weights():
            w = [p.detach().clone() for p in net.parameters()]
        seen, seen_alone = [], []

        def check(k, w=w, seen=seen):
            now = [p.detach().clone() for p in net.parameters()]
            seen.append(now)
            for p, q, n in zip(now, w, is_norm):
                if not n:
                    assert torch.equal(p, q), f"{name}: a non-norm parameter moved in pass {k}"
            moved.append(any(not torch.equal(p, q) for p, q, n in zip(now, w, is_norm) if n))

        _passes(opt, net, x, y, check)
        if step == 0:
            _passes(
                ref,
                alone,
                x,
                y,
                lambda k, out=seen_alone: out.append([p.detach().clone() for p in alone.parameters()]),
            )
            assert len(seen) == len(seen_alone)
            for ours, theirs in zip(seen, seen_alone):
                for p, q, n in zip(ours, theirs, is_norm):
                    if n:
                        torch.testing.assert_close(p, q, rtol=0, atol=1e-12)
    assert any(moved), f"{name}: the norm parameters never moved (the test would have no power)"


def test_sam_on_closed_form_and_the_final_gradient_of_all_parameters():
    """e = rho g_N / ||g_N|| on the norm set N, 0 elsewhere; every parameter gets the gradient at w + e."""
    rho = 0.2
    net = norm_net()
    x, y = _data()
    opt = SAM(net.parameters(), torch.optim.SGD, rho=rho, lr=0.0, perturb="norm", model=net)
    is_norm = _is_norm(net)
    w = [p.detach().clone() for p in net.parameters()]
    ((net(x) - y) ** 2).mean().backward()
    g0 = [p.grad.clone() for p in net.parameters()]
    norm_n = torch.stack([g.norm() for g, n in zip(g0, is_norm) if n]).norm()
    expected = [wi + rho * g / norm_n if n else wi for wi, g, n in zip(w, g0, is_norm)]
    opt.perturb()
    for p, e in zip(net.parameters(), expected):
        torch.testing.assert_close(p.detach(), e, rtol=0, atol=1e-12)
    displacement = torch.stack([(p.detach() - wi).norm() for p, wi in zip(net.parameters(), w)]).norm()
    torch.testing.assert_close(displacement, torch.tensor(rho, dtype=torch.float64), rtol=1e-12, atol=0)
    # an independent gradient at w + e, through functional_call on a copy
    names = [n for n, _ in net.named_parameters()]
    point = {n: e.clone().requires_grad_(True) for n, e in zip(names, expected)}
    probe = copy.deepcopy(net)
    loss = ((torch.func.functional_call(probe, point, (x,)) - y) ** 2).mean()
    gp = torch.autograd.grad(loss, list(point.values()))
    ((net(x) - y) ** 2).mean().backward()
    opt.unperturb()
    for p, wi, g in zip(net.parameters(), w, gp):
        assert torch.equal(p.detach(), wi)  # restored
        torch.testing.assert_close(p.grad, g, rtol=0, atol=1e-12)
    opt.base_step()


def test_gsam_combination_uses_the_clean_gradient_of_every_parameter():
    """The unperturbed parameters' g0 must still enter GSAM's combination (it is not a perturbation)."""
    alpha = 0.5
    net = norm_net()
    x, y = _data()
    opt = GSAM(net.parameters(), torch.optim.SGD, rho=0.1, alpha=alpha, lr=0.0, perturb="norm", model=net)
    ((net(x) - y) ** 2).mean().backward()
    g0 = torch.cat([p.grad.reshape(-1).clone() for p in net.parameters()])
    opt.perturb()
    ((net(x) - y) ** 2).mean().backward()
    gp = torch.cat([p.grad.reshape(-1).clone() for p in net.parameters()])
    opt.unperturb()
    final = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
    cosine = g0 @ gp / (g0.norm() * gp.norm() + 1e-12)
    g_perp = g0 - cosine * g0.norm() * gp / (gp.norm() + 1e-12)
    torch.testing.assert_close(final, gp - alpha * g_perp, rtol=0, atol=1e-13)
    opt.base_step()


def test_msam_ascent_is_along_the_norm_momentum_only():
    rho = 0.4
    net = norm_net()
    x, y = _data()
    opt = create_optimizer(
        "msam", net.parameters(), base="sgd", lr=0.1, momentum=0.9, rho=rho, perturb="norm", model=net
    )
    is_norm = _is_norm(net)
    for _ in range(2):
        opt.zero_grad()
        ((net(x) - y) ** 2).mean().backward()
        opt.step()
    here = [p.detach().clone() for p in net.parameters()]
    with opt.true_weights():
        w = [p.detach().clone() for p in net.parameters()]
    v = [opt.state[p]["momentum_buffer"] for p in net.parameters()]
    norm_n = torch.stack([m.norm() for m, n in zip(v, is_norm) if n]).norm()
    for h, wi, m, n in zip(here, w, v, is_norm):
        torch.testing.assert_close(h, wi - rho * m / norm_n if n else wi, rtol=0, atol=1e-12)


def test_a_non_finite_gradient_outside_the_norm_set_still_skips_the_perturbation():
    net = norm_net()
    x, y = _data()
    opt = SAM(net.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, perturb="norm", model=net)
    before = [p.detach().clone() for p in net.parameters()]
    ((net(x) - y) ** 2).mean().backward()
    net[0].weight.grad[0, 0] = float("inf")  # a Linear weight: not perturbed, but the step is bad
    opt.perturb()
    assert bool(opt.last_perturbation_skipped)
    assert all(torch.equal(p, b) for p, b in zip(net.parameters(), before))


def test_clear_errors_when_norm_parameters_cannot_be_identified():
    net = norm_net()
    with pytest.raises(ValueError, match="needs model=<the network>"):
        SAM(net.parameters(), torch.optim.SGD, lr=0.1, perturb="norm")
    plain = small_net()
    with pytest.raises(ValueError, match="has no normalisation layer"):
        SAM(plain.parameters(), torch.optim.SGD, lr=0.1, perturb="norm", model=plain)
    with pytest.raises(ValueError, match="none of the normalisation parameters"):
        SAM(net[0].parameters(), torch.optim.SGD, lr=0.1, perturb="norm", model=net)
    with pytest.raises(ValueError, match="invalid perturb='bn'"):
        SAM(net.parameters(), torch.optim.SGD, lr=0.1, perturb="bn", model=net)
    # "all" is the default and needs no model
    assert SAM(net.parameters(), torch.optim.SGD, lr=0.1).perturb_mode == "all"


def test_create_optimizer_and_a_bundle_config_can_name_it(caplog):
    config = {
        "network": "$torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))",
        "optimizer": {
            "_target_": "monai_sam.optimizers.create_optimizer",
            "name": "asam",
            "params": "$@network.parameters()",
            "base": "adamw",
            "lr": 1e-3,
            "perturb": "norm",
            "model": "@network",
        },
    }
    parser = ConfigParser(config)
    opt = parser.get_parsed_content("optimizer")
    network = parser.get_parsed_content("network")
    assert opt.perturb_mode == "norm" and opt._perturbed_ids == {id(p) for p in network[1].parameters()}
    with caplog.at_level(logging.WARNING):
        plain = create_optimizer("adam", network.parameters(), lr=1e-3, perturb="norm", model=network)
    assert isinstance(plain, torch.optim.Adam) and "ignoring ['model', 'perturb']" in caplog.text
