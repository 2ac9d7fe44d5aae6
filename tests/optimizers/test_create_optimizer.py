"""create_optimizer: names, aliases, kwarg splitting and errors."""

from __future__ import annotations

import logging

import pytest
import torch
from optim_helpers import small_net

from monai_sam.optimizers import CRSAM, SAM, WSAM, available_optimizers, create_optimizer


def test_available_names():
    names = available_optimizers()
    for name in ("adam", "adamw", "sgd", "sam", "asam", "gsam", "wsam", "crsam", "ssam", "frobsam", "detsam"):
        assert name in names
    assert "looksam" in names and "msam" in names


def test_method_with_base_name_splits_kwargs():
    opt = create_optimizer("sam", small_net().parameters(), base="sgd", lr=0.1, momentum=0.9, rho=0.2)
    assert isinstance(opt, SAM) and isinstance(opt.base_optimizer, torch.optim.SGD)
    assert opt.param_groups[0]["rho"] == 0.2 and opt.param_groups[0]["momentum"] == 0.9
    opt = create_optimizer("WSAM", small_net().parameters(), lr=1e-3, gamma=0.8, decouple=False)
    assert isinstance(opt, WSAM) and isinstance(opt.base_optimizer, torch.optim.Adam)
    assert opt.decouple is False and opt.param_groups[0]["gamma"] == 0.8


@pytest.mark.parametrize("alias", ["CR-SAM", "cr_sam", "crsam", "CrSam"])
def test_aliases(alias):
    assert isinstance(create_optimizer(alias, small_net().parameters(), base="adamw", lr=1e-3), CRSAM)


def test_base_class_is_accepted():
    opt = create_optimizer("sam", small_net().parameters(), base=torch.optim.RMSprop, lr=1e-3, rho=0.1)
    assert isinstance(opt.base_optimizer, torch.optim.RMSprop)


def test_plain_name_ignores_method_hyperparameters_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="monai_sam.optimizers.factory"):
        opt = create_optimizer("adam", small_net().parameters(), lr=1e-3, rho=0.05, gamma=0.9)
    assert type(opt) is torch.optim.Adam and opt.param_groups[0]["lr"] == 1e-3
    assert "rho" not in opt.param_groups[0]
    assert "ignoring ['gamma', 'rho']" in caplog.text


def test_method_defaults_log_nothing_about_themselves(caplog):
    with caplog.at_level(logging.WARNING, logger="monai_sam.optimizers.factory"):
        adam = create_optimizer(
            "adam", small_net().parameters(), lr=1e-3, rho=None, method_defaults={"rho": 0.05}
        )
        sam = create_optimizer(
            "sam", small_net().parameters(), lr=1e-3, rho=None, method_defaults={"rho": 0.05}
        )
        asam = create_optimizer("asam", small_net().parameters(), lr=1e-3, method_defaults={"rho": 0.05})
    assert type(adam) is torch.optim.Adam and "rho" not in adam.param_groups[0]
    assert sam.param_groups[0]["rho"] == 0.05 and asam.param_groups[0]["rho"] == 0.05  # not ASAM's own 0.5
    assert caplog.text == ""  # the config's default was never a request to Adam
    with caplog.at_level(logging.WARNING, logger="monai_sam.optimizers.factory"):
        create_optimizer("adam", small_net().parameters(), lr=1e-3, rho=0.1, method_defaults={"rho": 0.05})
    assert "ignoring ['rho']" in caplog.text  # a value the user gave is still reported
    sam = create_optimizer("sam", small_net().parameters(), lr=1e-3, rho=0.2, method_defaults={"rho": 0.05})
    assert sam.param_groups[0]["rho"] == 0.2


def test_other_methods_hyperparameters_are_ignored_for_a_method(caplog):
    with caplog.at_level(logging.WARNING):
        opt = create_optimizer("sam", small_net().parameters(), lr=1e-3, rho=0.05, alpha=0.4)
    assert "alpha" not in opt.param_groups[0] and "ignoring ['alpha']" in caplog.text


def test_errors():
    with pytest.raises(ValueError, match=r"Unknown optimizer name 'samm'.*available.*'sam'"):
        create_optimizer("samm", small_net().parameters())
    with pytest.raises(ValueError, match=r"unknown keyword argument\(s\) \['lrr'\]"):
        create_optimizer("sam", small_net().parameters(), lrr=0.1)
    with pytest.raises(ValueError, match=r"unknown keyword argument\(s\) \['momentum'\]"):
        create_optimizer("adam", small_net().parameters(), momentum=0.9)
    with pytest.raises(ValueError, match="Unknown base optimizer 'lion'"):
        create_optimizer("sam", small_net().parameters(), base="lion")
    with pytest.raises(ValueError, match="rho=-1"):
        create_optimizer("sam", small_net().parameters(), rho=-1)


def test_config_style_call():
    """The bundle config form: name, params, lr and rho by keyword."""
    for name in ("adam", "sam", "gsam", "frobsam"):
        opt = create_optimizer(name=name, params=small_net().parameters(), lr=1e-4, rho=0.05)
        assert opt.param_groups[0]["lr"] == 1e-4
