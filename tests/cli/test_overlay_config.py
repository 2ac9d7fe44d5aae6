"""monai_sam.cli.overlay_config: locating the trainer, optimizer and run id on both zoo layouts, the overlay's
effect, every registered method through it (trains, or refused when written)."""

from __future__ import annotations

import contextlib
import copy
import traceback
import warnings

import pytest
import torch
from monai.bundle import ConfigParser

from monai_sam.cli import overlay_config as ov
from monai_sam.optimizers import SAM, available_optimizers, wrap_optimizer

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
        ov.build_overlay(training, "rmsprop")
    with pytest.raises(
        ov.OverlayError, match=r"--optimizer adam: 'adam' keeps .* only when it is Adam, but it is SGD"
    ):
        ov.build_overlay(training, "adam")  # TEMPLATE's optimizer is SGD: 'adam' would not be the baseline
    with pytest.raises(ov.OverlayError, match="--rho must be >= 0"):
        ov.build_overlay(training, "sam", rho=-1.0)


def test_wrap_optimizer_validates():
    params = list(torch.nn.Linear(2, 1).parameters())
    with pytest.raises(ValueError, match=r"sam_method='adam': 'adam' keeps .* only when it is Adam"):
        wrap_optimizer("adam", torch.optim.SGD, params, lr=0.1)
    with pytest.raises(ValueError, match=r"sam_method='rmsprop': .* not a sharpness-aware method"):
        wrap_optimizer("rmsprop", torch.optim.SGD, params, lr=0.1)
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


# ------------------------------------------------------------------ every method, through the overlay
#: a runnable bundle (spleen layout: top-level optimizer, train#trainer) whose optimizer is Adam.
RUNNABLE = {
    "imports": ["$import torch"],
    "network": NET,
    "optimizer": {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 0.01},
    "train": {
        "data": "$[(torch.randn(4, 3), torch.randint(0, 2, (4,))) for _ in range(2)]",
        "trainer": {
            "_target_": "SupervisedTrainer",
            "device": "cpu",
            "max_epochs": 1,
            "train_data_loader": "@train#data",
            "network": "@network",
            "optimizer": "@optimizer",
            "loss_function": "$torch.nn.CrossEntropyLoss()",
            "amp": True,
        },
    },
    "run": ["$@train#trainer.run()"],
}
#: refused when the overlay is written over an Adam bundle, with the reason's words.
REFUSED_OVER_ADAM = {
    "bsam": "bSAM cannot keep the Adam optimizer: it replaces it with its own variational update",
    "adamw": "'adamw' keeps the optimizer as it is only when it is AdamW, but it is Adam",
    "sgd": "'sgd' keeps the optimizer as it is only when it is SGD, but it is Adam",
}


@pytest.mark.parametrize("method", [*available_optimizers(), "none"])
def test_every_method_trains_through_the_overlay_or_is_refused_when_written(method):
    training = ov.find_training(RUNNABLE)
    assert training.run_ids == ("run",) and training.optimizer_class is torch.optim.Adam
    if method in REFUSED_OVER_ADAM:
        with pytest.raises(ov.OverlayError, match=f"--optimizer {method}: {REFUSED_OVER_ADAM[method]}"):
            ov.build_overlay(training, method)
        return
    overlay = ov.build_overlay(training, method, rho=0.05)
    assert not {key for key in overlay if "amp" in key or "autocast" in key}  # precision stays the bundle's
    parser = merged(RUNNABLE, overlay)
    torch.manual_seed(0)
    trainer = parser.get_parsed_content("train#trainer")
    trainer.run()
    assert trainer.state.iteration == 2 and trainer.amp  # the bundle's amp: true, kept
    opt = parser.get_parsed_content("optimizer")
    output = trainer.state.output[0]
    if method in ("none", "adam"):
        assert type(opt) is torch.optim.Adam  # the bundle's own optimizer, unwrapped
        assert "num_passes" not in output
    else:
        assert type(opt).__name__.lower() == method and type(opt.base_optimizer) is torch.optim.Adam
        assert output["num_passes"] == opt.num_passes >= 1
    with opt.true_weights() if hasattr(opt, "true_weights") else contextlib.nullcontext():
        assert all(torch.isfinite(p).all() for p in parser.get_parsed_content("network").parameters())


def test_a_refused_method_given_at_run_time_says_why():
    overlay = ov.build_overlay(ov.find_training(RUNNABLE), "sam")
    parser = merged(RUNNABLE, overlay)
    parser["sam_optimizer"] = "bsam"  # what --sam_optimizer bsam does
    with pytest.raises(RuntimeError) as caught:
        parser.get_parsed_content("optimizer")
    assert "bSAM cannot keep the Adam optimizer" in "".join(traceback.format_exception(caught.value))


@pytest.mark.parametrize(
    "target, kwargs, refused",
    [
        ("torch.optim.SGD", {"lr": 0.1}, "SGD base has momentum=0"),
        ("torch.optim.SGD", {"lr": 0.1, "momentum": 0.0}, "SGD base has momentum=0"),
        ("torch.optim.SGD", {"lr": 0.1, "momentum": "@momentum"}, None),  # followed: 0.9
        ("Novograd", {"lr": 0.1}, "cannot tell which state buffer of Novograd is its momentum"),
        ("torch.optim.AdamW", {"lr": 0.1}, None),
        ("scripts.optim.Missing", {"lr": 0.1}, None),  # not importable here: the run decides
    ],
)
def test_msam_needs_a_momentum_it_knows(target, kwargs, refused):
    config = copy.deepcopy(TEMPLATE) | {"momentum": 0.9}
    config["optimizer"] = {"_target_": target, "params": "$@network.parameters()", **kwargs}
    training = ov.find_training(config)
    if refused is None:
        assert ov.build_overlay(training, "msam")["sam_optimizer"] == "msam"
        return
    with pytest.raises(ov.OverlayError, match=f"--optimizer msam: .*{refused}"):
        ov.build_overlay(training, "msam")


def test_run_ids_are_the_ids_that_run_the_trainer():
    spleen = copy.deepcopy(SPLEEN) | {"run": ["$print('go')", "$@train#trainer.run()"]}
    assert ov.find_training(spleen).run_ids == ("run",)
    ventricular = copy.deepcopy(TEMPLATE) | {"training": ["$@trainer.run()"], "evaluating": ["$print(1)"]}
    assert ov.find_training(ventricular).run_ids == ("training",)
    both = copy.deepcopy(SPLEEN) | {"training": "$@train::trainer.run()", "run": ["$@train#trainer .run()"]}
    assert ov.find_training(both).run_ids == ("run", "training")
    assert ov.find_training(TEMPLATE).run_ids == ()  # nothing runs it: the CLI warns and assumes "run"
    files = ["configs/train.json", "sam.yaml"]
    assert ov.run_command(files, "training") == (
        "python -m monai.bundle run training --config_file \"['configs/train.json', 'sam.yaml']\""
    )
    assert ov.run_command(files, "run") == ov.run_command(files, None)
    assert ov.run_command(files, "run").startswith("python -m monai.bundle run --config_file")


def test_msam_over_novograd_with_its_momentum_key_given_at_run_time():
    """Refused when written (MSAM cannot guess Novograd's momentum, see above), accepted once it is named."""
    config = copy.deepcopy(SPLEEN)
    config["optimizer"]["_target_"] = "Novograd"
    parser = merged(config, ov.build_overlay(ov.find_training(config), "sam"))
    parser["sam_optimizer"] = (
        "msam"  # --sam_optimizer msam --optimizer#sam_hyperparameters#momentum_key exp_avg
    )
    parser["optimizer#sam_hyperparameters#momentum_key"] = "exp_avg"
    opt = parser.get_parsed_content("optimizer")
    assert type(opt).__name__ == "MSAM" and type(opt.base_optimizer).__name__ == "Novograd"
    assert opt.momentum_key == "exp_avg"
