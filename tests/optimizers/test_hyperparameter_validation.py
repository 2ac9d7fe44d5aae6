"""Invalid hyperparameters raise ValueError naming the parameter and its range."""

from __future__ import annotations

import pytest
import torch
from optim_helpers import small_net

from monai_sam.optimizers import ASAM, CRSAM, GSAM, SAM, WSAM, DetSAM, FrobSAM, LookSAM

CASES = [
    (SAM, {"rho": -0.1}, r"rho=-0.1: must be in \[0.0, inf\]"),
    (SAM, {"interval": 0}, r"interval=0: must be an integer >= 1"),
    (SAM, {"eps": -1.0}, r"eps=-1.0"),
    (ASAM, {"eta": -0.01}, r"eta=-0.01"),
    (GSAM, {"alpha": -1.0}, r"alpha=-1.0"),
    (WSAM, {"gamma": 1.0}, r"gamma=1.0: must be in \[0.0, 1.0\)"),
    (WSAM, {"gamma": -0.1}, r"gamma=-0.1"),
    (WSAM, {"max_norm": 0.0}, r"max_norm=0.0: must be in \(0.0, inf\]"),
    (CRSAM, {"beta": -0.1}, r"beta=-0.1"),
    (FrobSAM, {"n_samples": 1}, r"n_samples=1: FrobSAM needs an integer >= 2"),
    (FrobSAM, {"lam": -1.0}, r"lam=-1.0"),
    (DetSAM, {"n_samples": 0}, r"n_samples=0"),
    (DetSAM, {"half_cube_len": 0.0}, r"half_cube_len=0.0"),
    (LookSAM, {"k": 0}, r"k=0: must be an integer >= 1"),
]


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"), CASES, ids=[f"{c.__name__}-{next(iter(k))}" for c, k, _ in CASES]
)
def test_invalid_hyperparameter_raises(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(small_net().parameters(), torch.optim.SGD, lr=0.1, **kwargs)


def test_invalid_per_group_value_raises():
    net = small_net()
    with pytest.raises(ValueError, match="rho=-1"):
        SAM([{"params": net[0].parameters(), "rho": -1}, {"params": net[2].parameters()}], lr=0.1)


def test_per_group_hyperparameters_are_kept():
    net = small_net()
    opt = GSAM(
        [{"params": net[0].parameters(), "rho": 0.2}, {"params": net[2].parameters()}], lr=0.1, alpha=0.3
    )
    assert [g["rho"] for g in opt.param_groups] == [0.2, 0.05]
    assert [g["alpha"] for g in opt.param_groups] == [0.3, 0.3]
    assert opt.defaults["rho"] == 0.05
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))], "rho": 0.5})
    assert opt.base_optimizer.param_groups[-1]["alpha"] == 0.3 and opt.param_groups[-1]["rho"] == 0.5


def test_base_optimizer_key_clash_is_refused():
    with pytest.raises(ValueError, match=r"RMSprop.*\['alpha'\]"):
        GSAM(small_net().parameters(), torch.optim.RMSprop, lr=0.1)
    with pytest.raises(ValueError, match=r"\['rho'\]"):
        SAM(small_net().parameters(), torch.optim.Adadelta)


def test_ready_instance_as_base():
    net = small_net()
    base = torch.optim.SGD(net.parameters(), lr=0.1)
    opt = SAM(net.parameters(), base, rho=0.1)
    assert opt.base_optimizer is base and opt.param_groups is base.param_groups
    assert base.param_groups[0]["rho"] == 0.1
    with pytest.raises(ValueError, match="ready instance"):
        SAM(net.parameters(), base, lr=0.1)
    with pytest.raises(ValueError, match="exactly the parameters"):
        SAM(net[0].parameters(), base)
    with pytest.raises(TypeError, match="base_optimizer"):
        SAM(net.parameters(), "sgd")


def test_detsam_needs_one_rho():
    net = small_net()
    with pytest.raises(ValueError, match="same in every param group"):
        DetSAM([{"params": net[0].parameters(), "rho": 0.2}, {"params": net[2].parameters()}], lr=0.1)


def test_issue_signatures_accept_method_hyperparameters_positionally():
    """The issue's signatures, e.g. ``GSAM(params, base, rho, alpha, **kw)``, work positionally."""
    net = small_net()
    sam = SAM(net.parameters(), torch.optim.SGD, 0.2, lr=0.1)
    gsam = GSAM(net.parameters(), torch.optim.SGD, 0.3, 0.1, lr=0.1)
    wsam = WSAM(net.parameters(), torch.optim.SGD, 0.4, 0.8, False, lr=0.1)
    assert sam.param_groups[0]["rho"] == 0.2 and sam.param_groups[0]["lr"] == 0.1
    assert (gsam.param_groups[0]["rho"], gsam.param_groups[0]["alpha"]) == (0.3, 0.1)
    assert (wsam.param_groups[0]["gamma"], wsam.decouple) == (0.8, False)
