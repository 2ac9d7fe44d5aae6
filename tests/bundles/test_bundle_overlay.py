"""monai_sam.bundle.overlay: locating the trainer and optimizer on both zoo layouts, the overlay's effect."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from monai.bundle import ConfigParser

from monai_sam.bundle import overlay as ov
from monai_sam.optimizers import SAM, wrap_optimizer

NET = {"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2}

#: spleen_ct_segmentation layout: top-level optimizer and scheduler, trainer under train#trainer.
SPLEEN = {
    "network": NET,
    "optimizer": {
        "_target_": "torch.optim.Adam",
        "params": "$@network.parameters()",
        "lr": 0.01,
        "weight_decay": 0.1,
        "eps": 1e-3,
    },
    "lr_scheduler": {
        "_target_": "torch.optim.lr_scheduler.StepLR",
        "optimizer": "@optimizer",
        "step_size": 1,
        "gamma": 0.5,
    },
    "train": {
        "handlers": [{"_target_": "LrScheduleHandler", "lr_scheduler": "@lr_scheduler"}],
        "trainer": {
            "_target_": "SupervisedTrainer",
            "optimizer": "@optimizer",
            "network": "@network",
            "train_handlers": "@train#handlers",
        },
    },
}
#: segmentation_template layout: top-level trainer and optimizer, lr from a top-level id.
TEMPLATE = {
    "learning_rate": 0.1,
    "network": NET,
    "optimizer": {
        "_target_": "torch.optim.SGD",
        "params": "$@network.parameters()",
        "lr": "@learning_rate",
        "momentum": 0.9,
    },
    "trainer": {"_target_": "SupervisedTrainer", "optimizer": "@optimizer", "network": "@network"},
}


def merged(config: dict, overlay: dict) -> ConfigParser:
    """The parser ``monai.bundle run`` builds from ``[config, overlay]`` (later keys win, ``#`` nests)."""
    parser = ConfigParser(copy.deepcopy(config))
    for key, value in overlay.items():
        parser[key] = value
    return parser


def test_spleen_layout_wraps_the_bundle_optimizer_and_scheduler_drives_it():
    training = ov.find_training(SPLEEN)
    assert (training.trainer_id, training.optimizer_id) == ("train#trainer", "optimizer")
    assert training.optimizer_target == "torch.optim.Adam" and training.iteration_update is None
    overlay = ov.build_overlay(training, "sam", rho=0.2)
    assert overlay["train#trainer#iteration_update"] == "@sam_iteration"
    parser = merged(SPLEEN, overlay)
    opt = parser.get_parsed_content("optimizer")
    assert type(opt) is SAM and type(opt.base_optimizer) is torch.optim.Adam
    group = opt.param_groups[0]
    # the bundle's own arguments all reach the base (Adam's eps is not taken for the method's eps)
    assert (group["lr"], group["weight_decay"], group["eps"], group["rho"]) == (0.01, 0.1, 1e-3, 0.2)
    assert opt.eps == 1e-12
    sched = parser.get_parsed_content("lr_scheduler")
    assert sched.optimizer is opt
    opt.base_optimizer.step()
    with warnings.catch_warnings():  # the base stepped, not the wrapper torch counts
        warnings.simplefilter("ignore")
        sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.005)
    iteration = parser.get_parsed_content("sam_iteration")
    assert type(iteration).__name__ == "SharpnessAwareIteration" and iteration.output_index is None


def test_template_layout_and_cli_overrides_of_the_prefixed_ids():
    training = ov.find_training(TEMPLATE)
    assert (training.trainer_id, training.optimizer_id) == ("trainer", "optimizer")
    overlay = ov.build_overlay(training, "asam")
    assert overlay["sam_rho"] == ov.default_rho("asam") and "trainer#iteration_update" in overlay
    parser = merged(TEMPLATE, overlay)
    for key, value in {"sam_optimizer": "gsam", "sam_rho": 0.3, "learning_rate": 0.02}.items():
        parser[key] = value  # what --sam_optimizer gsam --sam_rho 0.3 --learning_rate 0.02 do
    opt = parser.get_parsed_content("optimizer")
    assert type(opt).__name__ == "GSAM" and type(opt.base_optimizer) is torch.optim.SGD
    assert (opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"], opt.param_groups[0]["rho"]) == (
        0.02,
        0.9,
        0.3,
    )


def test_inline_optimizer_and_relative_reference():
    inline = copy.deepcopy(TEMPLATE)
    inline["trainer"]["optimizer"] = inline.pop("optimizer")
    assert ov.find_training(inline).optimizer_id == "trainer#optimizer"
    nested = {
        "network": NET,
        "train": {
            "optimizer": TEMPLATE["optimizer"] | {"lr": 0.1},
            "trainer": {"_target_": "monai.engines.SupervisedTrainer", "optimizer": "@##optimizer"},
        },
    }
    training = ov.find_training(nested)
    assert training.optimizer_id == "train#optimizer"
    opt = merged(nested, ov.build_overlay(training, "sam")).get_parsed_content("train#optimizer")
    assert type(opt) is SAM


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c.pop("trainer"), "exactly one SupervisedTrainer component, found none"),
        (lambda c: c.update(trainer2=copy.deepcopy(c["trainer"])), "found 2 SupervisedTrainer"),
        (lambda c: c["trainer"].update(_target_="scripts.trainer.DetectionTrainer"), "DetectionTrainer"),
        (
            lambda c: c["trainer"].update(optimizer="$torch.optim.SGD(@network.parameters())"),
            "optimizer-like",
        ),
        (lambda c: c["trainer"].update(optimizer="@opt"), "'@opt', which is not in the config"),
        (lambda c: c.pop("optimizer"), "'@optimizer', which is not in the config"),
        (lambda c: c["optimizer"].update(_target_="monai_sam.optimizers.create_optimizer"), "already built"),
        (lambda c: c["optimizer"].update(_target_="monai_sam.optimizers.SAM"), "already sharpness-aware"),
        (lambda c: c["optimizer"].update(_target_="torch.nn.Linear"), "not name a torch.optim.Optimizer"),
        (lambda c: c["optimizer"].update(_mode_="callable"), "_mode_"),
        (lambda c: c.update(sam_rho=0.1), r"top-level id\(s\) \['sam_rho'\]"),
        (
            lambda c: c["trainer"].update(_target_="monai_sam.engines.SharpnessAwareTrainer"),
            "already a Sharp",
        ),
    ],
)
def test_errors_name_what_was_found(edit, match):
    config = copy.deepcopy(TEMPLATE)
    edit(config)
    with pytest.raises(ov.OverlayError, match=match):
        ov.find_training(config)


def test_existing_iteration_update_is_refused_or_composed(monkeypatch):
    config = copy.deepcopy(SPLEEN)
    config["train"]["trainer"]["iteration_update"] = {"_target_": "Interaction", "deepgrow_probability": 0.5}
    training = ov.find_training(config)
    monkeypatch.setattr(ov, "_trainer_composes", lambda: False)
    with pytest.raises(ov.OverlayError, match=r"already sets iteration_update.*refuses"):
        ov.build_overlay(training, "sam")
    monkeypatch.setattr(ov, "_trainer_composes", lambda: True)
    overlay = ov.build_overlay(training, "sam")
    assert overlay["train#trainer#_target_"] == ov.TRAINER_TARGET and "sam_iteration" not in overlay
    assert "train#trainer#iteration_update" not in overlay  # the bundle's own interaction stays


def test_bad_method_and_rho():
    training = ov.find_training(TEMPLATE)
    with pytest.raises(ov.OverlayError, match="not a sharpness-aware method"):
        ov.build_overlay(training, "adam")
    with pytest.raises(ov.OverlayError, match="--rho must be >= 0"):
        ov.build_overlay(training, "sam", rho=-1.0)


def test_wrap_optimizer_validates():
    params = list(torch.nn.Linear(2, 1).parameters())
    with pytest.raises(ValueError, match="sam_method='adam'"):
        wrap_optimizer("adam", torch.optim.SGD, params, lr=0.1)
    with pytest.raises(ValueError, match=r"does not take \['alpha'\]"):
        wrap_optimizer("sam", torch.optim.SGD, params, {"alpha": 0.1}, lr=0.1)
    with pytest.raises(TypeError, match="sam_base"):
        wrap_optimizer("sam", torch.nn.Linear, params)


def test_load_and_write(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        ov.load_bundle_config([tmp_path / "missing.json"])
    (tmp_path / "a.txt").write_text("{}")
    with pytest.raises(ov.OverlayError, match=r"a\.txt"):
        ov.load_bundle_config([tmp_path / "a.txt"])
    overlay = ov.build_overlay(ov.find_training(SPLEEN), "sam")
    for name in ("o.yaml", "o.json"):
        path = ov.write_overlay(overlay, tmp_path / name, header=["hello"])
        assert ConfigParser.load_config_file(str(path)) == overlay
    with pytest.raises(ov.OverlayError, match=r"o\.txt"):
        ov.write_overlay(overlay, tmp_path / "o.txt")
