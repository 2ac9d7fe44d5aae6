"""The bundle knobs a study run passes to ConfigWorkflow (no training)."""

from pathlib import Path

import pytest
from study_fakes import make_config

from monai_sam.study.data import StudyData
from monai_sam.study.grid import expand_grid
from monai_sam.study.training import BundleRunFunction, bundle_config_file


def _run_function(tmp_path, **changes):
    config = make_config(**changes)
    run_fn = BundleRunFunction(config, tmp_path)
    split = tmp_path / "fold_0.json"
    run_fn._data = StudyData(dataset_dir=tmp_path, split_files={0: split}, class_names=["a", "b", "c"])
    return config, run_fn


def test_knobs_follow_spec_and_network_settings(tmp_path):
    config, run_fn = _run_function(
        tmp_path,
        networks=["resnet18", {"name": "vit_small", "train": {"lr": 3.0e-4}}],
        optimizers=["adam", {"name": "gsam", "rho": 0.1, "alpha": 0.2}],
        train={
            "lr": 1.0e-3,
            "max_epochs": 3,
            "pretrained": {"resnet18": "/w/r18.pth"},
            "overrides": {"val_interval": 2},
        },
        folds=[0],
        seeds=[4],
    )
    specs = {s.run_id: s for s in expand_grid(config)}
    cnn = run_fn.overrides(specs["resnet18__gsam__fold0__seed4"], tmp_path / "w")
    assert cnn["sam_optimizer"] == "gsam" and cnn["sam_rho"] == 0.1 and cnn["optimizer#alpha"] == 0.2
    assert cnn["lr"] == 1.0e-3 and cnn["max_epochs"] == 3 and cnn["seed"] == 4 and cnn["num_workers"] == 0
    assert cnn["datalist"] == str(tmp_path / "fold_0.json") and cnn["network_name"] == "resnet18"
    assert cnn["pretrained_path"] == "/w/r18.pth" and cnn["val_interval"] == 2 and cnn["progress"] is False
    vit = run_fn.overrides(specs["vit_small__adam__fold0__seed4"], tmp_path / "w")
    assert vit["lr"] == 3.0e-4 and "sam_rho" not in vit and "pretrained_path" not in vit


def test_bundle_config_lookup(tmp_path):
    assert bundle_config_file("breast_us_cnn", None).name == "train.json"
    with pytest.raises(FileNotFoundError, match="bundles_dir"):
        bundle_config_file("breast_us_cnn", tmp_path)
    own = tmp_path / "mine" / "configs"
    own.mkdir(parents=True)
    (own / "train.json").write_text("{}")
    assert bundle_config_file(str(tmp_path / "mine"), None) == Path(own / "train.json")


def test_bad_network_train_key():
    with pytest.raises(ValueError, match="unknown key"):
        make_config(networks=[{"name": "resnet18", "train": {"learning_rate": 1}}])


def test_mode_options_go_to_the_optimizer_or_the_iteration(tmp_path):
    config, run_fn = _run_function(
        tmp_path,
        optimizers=[
            "adam",
            {"name": "sam", "label": "sam-i5", "interval": 5},
            {"name": "sam", "label": "sam-late", "start_fraction": 0.5},
        ],
        folds=[0],
    )
    specs = {s.optimizer.label: s for s in expand_grid(config)}
    interval = run_fn.overrides(specs["sam-i5"], tmp_path / "w")
    assert interval["optimizer#interval"] == 5 and "sam_start_fraction" not in interval
    late = run_fn.overrides(specs["sam-late"], tmp_path / "w")
    assert late["sam_start_fraction"] == 0.5 and "optimizer#start_fraction" not in late


def test_network_evaluation_chooses_the_weights_that_are_evaluated(tmp_path):
    # The ViT of busi-cpu is evaluated with its final weights, the CNN with its best-validation checkpoint.
    import torch

    own = {"name": "vit_small", "evaluation": {"checkpoint": "last"}}
    config, run_fn = _run_function(tmp_path, networks=["resnet18", own], folds=[0])
    specs = {s.run_id: s for s in expand_grid(config)}
    best = torch.nn.Linear(2, 2)
    torch.save(best.state_dict(), tmp_path / "model.pt")  # what the bundle's CheckpointSaver writes
    expected_use = {"resnet18__adam__fold0__seed0": "best", "vit_small__adam__fold0__seed0": "last"}
    for run_id, expected in expected_use.items():
        final = torch.nn.Linear(2, 2)
        evaluation = specs[run_id].evaluation_settings(config.evaluation)
        used = run_fn._load_checkpoint(final, tmp_path, evaluation)
        assert used.split()[0] == expected
        assert torch.equal(final.weight, best.weight) == (expected == "best")


@pytest.mark.parametrize(
    ("old", "new"), [("rho", "sam_rho"), ("optimizer", "sam_optimizer"), ("optim#alpha", "optimizer#alpha")]
)
def test_old_knob_names_in_overrides_are_refused(tmp_path, old, new):
    config, run_fn = _run_function(tmp_path, train={"overrides": {old: 0.1 if old != "optimizer" else "sam"}})
    spec = expand_grid(config)[0]
    with pytest.raises(ValueError, match=f"--{new}"):
        run_fn.overrides(spec, tmp_path / "w")
