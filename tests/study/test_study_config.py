"""Study config validation, presets and command-line overrides."""

import argparse
from pathlib import Path

import pytest
from study_fakes import make_config

from monai_sam.cli import build_parser
from monai_sam.cli.study_command import apply_overrides
from monai_sam.study.config import PRESETS, StudyConfig, load_config, load_preset, preset_dict
from monai_sam.study.grid import expand_grid


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load(name):
    config = load_preset(name)
    assert config.analysis["baseline"] in [o.label for o in config.optimizers]
    assert expand_grid(config)


def test_paper_preset_matches_paper_grid():
    config = load_preset("paper")
    assert [n.name for n in config.networks] == ["resnet50", "vgg16", "vit", "swin_t"]
    assert [n.bundle for n in config.networks] == ["breast_us_cnn"] * 2 + ["breast_us_vit"] * 2
    assert {o.name for o in config.optimizers} == {"adam", "sam", "asam", "gsam", "wsam", "crsam"}
    assert config.train["image_size"] == 224 and config.data["folds"] == 5


def test_quick_preset_runs_gcsam_the_seed_groups_follow_up():
    config = load_preset("quick")
    gcsam = next(o for o in config.optimizers if o.name == "gcsam")
    assert gcsam.rho == 0.05 and gcsam.kwargs == {}
    raw = preset_dict("quick")
    gcsam_raw = {"name": "gcsam", "rho": 0.05, "norm": "raw"}
    raw["optimizers"] = ["adam", gcsam_raw, "fsam", {"name": "bsam", "num_data": 400}]
    names = [o.name for o in StudyConfig.from_dict(raw, source="t").optimizers]
    assert names == ["adam", "gcsam", "fsam", "bsam"]


def test_grid_order_and_ids():
    config = make_config()
    specs = expand_grid(config)
    assert len(specs) == 5 * 2 * 2 * 3
    assert specs[0].run_id == "resnet18__adam__fold0__seed0"
    assert len({s.run_id for s in specs}) == len(specs)
    assert [s.fold for s in specs[:12]] == [0] * 12  # fold-major


def test_optimizer_kwargs_parsed():
    config = make_config(optimizers=["adam", {"name": "gsam", "label": "gsam-a", "rho": 0.1, "alpha": 0.2}])
    gsam = config.optimizers[1]
    assert (gsam.name, gsam.label, gsam.rho, gsam.kwargs) == ("gsam", "gsam-a", 0.1, {"alpha": 0.2})
    again = StudyConfig.from_dict(config.to_dict())
    assert again.optimizers == config.optimizers and again.fingerprint() == config.fingerprint()


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"optimizers": ["adam", "notanoptimizer"]}, "unknown optimizer"),
        ({"networks": ["resnet9000"]}, "unknown network"),
        ({"trian": {}}, "unknown key"),
        ({"train": {"max_epoch": 3}}, "unknown key"),
        ({"data": {"source": "s3"}}, "data.source"),
        ({"data": {"source": "folder"}}, "dataset_dir"),
        ({"folds": [7]}, "outside"),
        ({"optimizers": ["sam", "asam"]}, "baseline"),
        ({"optimizers": ["adam", "adam"]}, "unique"),
        ({"sharpness": {"measures": ["flatness"]}}, "sharpness measure"),
        ({"evaluation": {"checkpoint": "middle"}}, "checkpoint"),
        (
            {"networks": [{"name": "resnet18", "evaluation": {"checkpoint": "middle"}}]},
            "networks\\[0\\]: evaluation: checkpoint",
        ),
        ({"networks": [{"name": "resnet18", "evaluation": {"ckpt": "last"}}]}, "unknown key"),
        ({"networks": []}, "non-empty"),
    ],
)
def test_bad_config_errors(changes, match):
    with pytest.raises(ValueError, match=match):
        make_config(**changes)


def test_bad_preset_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="unknown study preset"):
        load_preset("fast")
    with pytest.raises(FileNotFoundError, match="study config not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(bad)


def test_network_evaluation_round_trips_and_keeps_other_fingerprints():
    plain = make_config()
    own = make_config(networks=["resnet18", {"name": "vit_small", "evaluation": {"checkpoint": "last"}}])
    assert own.networks[1].evaluation == {"checkpoint": "last"} and own.networks[0].evaluation == {}
    assert StudyConfig.from_dict(own.to_dict()).networks == own.networks
    # Only the network with its own evaluation changes identity: the other network's records stay valid.
    ids = {s.run_id: s for s in expand_grid(plain)}
    for spec in expand_grid(own):
        same = spec.network.name == "resnet18"
        assert (spec.describe() == ids[spec.run_id].describe()) == same
    assert "network_evaluation" not in next(iter(ids.values())).describe()


def test_fingerprint_tracks_training_settings_only():
    base = make_config()
    assert make_config(seeds=[0, 1, 2]).fingerprint() == base.fingerprint()  # grid changes resume
    assert make_config(train={"max_epochs": 3}).fingerprint() != base.fingerprint()


def test_cli_overrides():
    args = build_parser().parse_args(
        [
            "study",
            "--preset",
            "busi-cpu",
            "--output",
            "x",
            "--max-epochs",
            "2",
            "--folds",
            "0",
            "1",
            "--optimizers",
            "adamw",
            "sam",
            "--networks",
            "resnet18",
            "--dataset-dir",
            "/data",
            "--no-sharpness",
            "--repeats",
            "3",
        ]
    )
    config = StudyConfig.from_dict(apply_overrides(preset_dict("busi-cpu"), args))
    assert config.train["max_epochs"] == 2 and config.folds == [0, 1]
    assert config.data["repeats"] == 3 and config.split_seeds == [0, 1, 2]
    assert [o.label for o in config.optimizers] == ["adamw", "sam"]
    assert [n.name for n in config.networks] == ["resnet18"]
    assert config.data["dataset_dir"] == "/data" and config.sharpness["enabled"] is False
    with pytest.raises(ValueError, match="not in the config"):
        apply_overrides(preset_dict("quick"), argparse.Namespace(**{**vars(args), "optimizers": ["lion"]}))


def test_cli_bad_input_exit_code(tmp_path, capsys):
    from monai_sam.cli import main

    assert main(["study", "--output", str(tmp_path)]) == 2
    assert "--preset" in capsys.readouterr().err
    assert main(["study", "--report-only", "--output", str(tmp_path / "nothing")]) == 2
    assert "study.yaml" in capsys.readouterr().err


STUDY_DIR = Path(__file__).resolve().parents[2] / "study"


@pytest.mark.parametrize("path", sorted(STUDY_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_study_yamls_in_repository_are_valid(path):
    assert expand_grid(load_config(path))


def test_example_yaml_keeps_method_settings():
    config = load_config(STUDY_DIR / "example.yaml")
    assert [o.label for o in config.optimizers] == ["adam", "sam", "gsam-a0.1", "gsam-a0.4"]
    assert config.optimizers[2].kwargs == {"alpha": 0.1}
    assert config.train["overrides"] == {"early_stop_patience": 8}


def test_missing_data_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from monai_sam.cli import main

    missing = tmp_path / "no_such_dir"
    assert (
        main(["study", "--preset", "quick", "--output", str(tmp_path / "a"), "--dataset-dir", str(missing)])
        == 2
    )
    assert "not a directory" in capsys.readouterr().err
    monkeypatch.setenv("MONAI_SAM_BUSI_DIR", str(tmp_path))  # no benign/ malignant/ inside
    assert main(["study", "--preset", "busi-cpu", "--output", str(tmp_path / "b")]) == 2
    assert "BUSI not found" in capsys.readouterr().err
    assert not list((tmp_path / "b").glob("runs/*.json"))


@pytest.mark.parametrize("network", ["resnet18", "vit_small_conv"])
def test_busi_cpu_baseline_is_the_base_of_the_sharpness_aware_methods(network):
    # The ViT bundle's plain "adam" couples L2 decay into the gradient while its SAM methods wrap
    # AdamW: the baseline must be the base optimizer itself, so only the sharpness term differs.
    import torch
    import yaml

    from monai_sam.optimizers import create_optimizer
    from monai_sam.study.training import bundle_config_file

    config = load_preset("busi-cpu")
    spec = next(s for s in expand_grid(config) if s.network.name == network)
    knobs = yaml.safe_load(bundle_config_file(spec.network.bundle, None).read_text())
    common = {"lr": spec.train_settings(config.train)["lr"], "weight_decay": knobs["weight_decay"]}
    torch.manual_seed(0)
    start = torch.randn(50)
    grads = [torch.randn(50) for _ in range(3)]
    params = [torch.nn.Parameter(start.clone()) for _ in range(2)]
    baseline = create_optimizer(config.analysis["baseline"], [params[0]], **common)
    base = create_optimizer(
        "sam", [params[1]], base=knobs["base_optimizer"], rho=0.05, **common
    ).base_optimizer
    for g in grads:  # the base optimizer's own step on the same gradients: the same trajectory
        for p, opt in zip(params, (baseline, base), strict=True):
            p.grad = g.clone()
            opt.step()
    torch.testing.assert_close(params[0], params[1], rtol=0, atol=1e-7)
