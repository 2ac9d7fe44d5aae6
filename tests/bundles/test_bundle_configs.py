"""Bundle configs without training: metadata schema, ConfigWorkflow properties, clear errors on bad knobs."""

from __future__ import annotations

import json
import shutil

import jsonschema
import pytest
import torch
from bundle_cli import BUNDLES, SCHEMA, config, run_cli
from monai.bundle import ConfigWorkflow

from monai_sam.networks import build_network

BUNDLE_NAMES = sorted(BUNDLES)

#: Knobs every bundle must expose at the top level of train.json (the study overrides them by name).
KNOBS = (
    "dataset_dir",
    "datalist",
    "output_dir",
    "sam_optimizer",
    "sam_rho",
    "lr",
    "max_epochs",
    "batch_size",
    "image_size",
    "num_classes",
    "network_name",
    "pretrained_path",
    "amp",
    "seed",
    "device",
    "num_workers",
    "val_interval",
    "max_norm",
    "resume",
    "stop_epoch",
    "sam_interval",
    "sam_start_fraction",
    "class_weights",
)
#: Config ids other tools rely on.
STABLE_IDS = (
    "network_def",
    "train#trainer",
    "validate#evaluator",
    "train#dataset",
    "validate#dataset",
    "network",
    "optimizer",
    "lr_scheduler",
    "initialize",
    "run",
    "finalize",
    "bundle_root",
    "ckpt_dir",
)
STABLE_IDS += ("datalist_dict", "class_names")


def workflow(bundle: str, names: tuple[str, ...], workflow_type: str, **overrides) -> ConfigWorkflow:
    """A ConfigWorkflow over ``names`` of ``bundle`` with ``overrides``."""
    files = [str(BUNDLES[bundle] / "configs" / f"{n}.json") for n in names]
    return ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        meta_file=str(BUNDLES[bundle] / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type=workflow_type,
        **overrides,
    )


# the metadata of both bundles is checked against the schema in test_bundle_zoo_checks.py
def test_schema_rejects_missing_required_key():
    meta = json.loads((BUNDLES["cnn"] / "configs" / "metadata.json").read_text())
    del meta["required_packages_version"]
    with pytest.raises(jsonschema.ValidationError, match="required_packages_version"):
        jsonschema.validate(meta, json.loads(SCHEMA.read_text()))


@pytest.mark.slow
@pytest.mark.parametrize("bundle", ["cnn"])  # the schema itself is checked for both bundles above
def test_verify_metadata_cli_offline(bundle, tmp_path):
    schema = tmp_path / "schema.json"
    shutil.copy(SCHEMA, schema)  # pre-placed: verify_metadata then skips the download
    proc = run_cli(
        [
            "verify_metadata",
            "--meta_file",
            str(BUNDLES[bundle] / "configs" / "metadata.json"),
            "--filepath",
            str(schema),
        ],
        cwd=tmp_path,
    )
    assert "metadata is verified with no error" in proc.stdout + proc.stderr


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
@pytest.mark.parametrize(
    ("names", "workflow_type"),
    # evaluate overrides train's validation, so the pair is a train workflow (as in the zoo's tests)
    [(("train",), "train"), (("train", "evaluate"), "train"), (("inference",), "infer")],
)
def test_check_properties_empty(bundle, names, workflow_type, phantom_dir, tmp_path):
    # check_properties instantiates every required component, so give it data and a checkpoint.
    wf = workflow(bundle, names, workflow_type, output_dir=str(tmp_path), image_size=32)
    net = build_network(wf.parser["network_name"], 3, image_size=32, pretrained=False)
    torch.save(net.state_dict(), tmp_path / "model.pt")
    wf.parser["ckpt_path"] = str(tmp_path / "model.pt")
    wf.parser["dataset_dir"] = str(phantom_dir)
    wf.initialize()
    assert wf.check_properties() == []


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_knobs_and_stable_ids(bundle):
    wf = workflow(bundle, ("train",), "train")
    for key in (*KNOBS, *STABLE_IDS):
        assert key in wf.parser, f"{bundle} train.json lacks {key}"
    wf = workflow(bundle, ("train", "evaluate"), "eval")
    for key in ("ckpt_path", "eval_split", "validate#evaluator", "external", "external_evaluation"):
        assert key in wf.parser
    assert wf.parser["validate#handlers#0#_target_"] == "CheckpointLoader"
    for key in ("evaluator", "dataset", "handlers"):  # no second, top-level evaluator
        assert key not in wf.parser
    wf = workflow(bundle, ("inference",), "infer")
    for key in ("dataset_dir", "input_dir", "ckpt_path", "network_name", "network", "network_def"):
        assert key in wf.parser
    for key in ("num_classes", "image_size", "output_dir", "bundle_root"):
        assert key in wf.parser
    assert wf.parser["handlers#0#_target_"] == "CheckpointLoader"


def _error_chain(err: BaseException) -> str:
    """All messages of an exception and its causes (MONAI wraps config errors)."""
    messages = []
    while err is not None:
        messages.append(str(err))
        err = err.__cause__ or err.__context__
    return "\n".join(messages)


def _parse_error(wf: ConfigWorkflow, item: str) -> str:
    """The error chain of initialising ``wf`` and resolving ``item`` (the test fails if none is raised)."""
    with pytest.raises(Exception) as info:  # MONAI wraps the cause in a RuntimeError
        wf.initialize()
        wf.parser.get_parsed_content(item)
    return _error_chain(info.value)


def test_bad_dataset_dir_is_named(tmp_path):
    wf = workflow("cnn", ("train",), "train", dataset_dir="/no/such/busi", output_dir=str(tmp_path))
    message = _parse_error(wf, "datalist_dict")
    assert "dataset_dir '/no/such/busi' is not a directory" in message


def test_unknown_optimizer_lists_names(tmp_path):
    wf = workflow("cnn", ("train",), "train", sam_optimizer="sharpy", output_dir=str(tmp_path), image_size=32)
    message = _parse_error(wf, "optimizer")
    assert "Unknown optimizer name 'sharpy'" in message and "sam" in message


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_unknown_network_lists_names(bundle, tmp_path):
    wf = workflow(bundle, ("train",), "train", network_name="densenet", output_dir=str(tmp_path))
    message = _parse_error(wf, "network_def")
    assert "unknown network 'densenet'; available networks:" in message and "resnet50" in message


def test_checkpoint_of_wrong_shape_is_explained(tmp_path):
    torch.save(build_network("resnet18", 3, image_size=32).state_dict(), tmp_path / "model.pt")
    wf = workflow(
        "cnn",
        ("inference",),
        "infer",
        ckpt_path=str(tmp_path / "model.pt"),
        num_classes=2,
        network_name="resnet18",
        output_dir=str(tmp_path),
    )
    message = _parse_error(wf, "run#0")  # the check before CheckpointLoader loads the file
    assert "'fc.weight' has shape (3, 512) in the file but (2, 512) in the network" in message
    assert "num_classes" in message


@pytest.mark.slow
def test_bad_dataset_dir_message_reaches_cli_user(tmp_path):
    proc = run_cli(
        [
            "run",
            "--config_file",
            config("cnn", "train"),
            "--output_dir",
            str(tmp_path),
            "--dataset_dir",
            "/no/busi",
        ],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    assert "dataset_dir '/no/busi' is not a directory" in proc.stderr


@pytest.mark.parametrize(("optimizer", "with_rho"), [("gsam", True), ("sam", False)])
def test_resume_objects_follow_the_rho_schedule(optimizer, with_rho, phantom_dir, tmp_path):
    wf = workflow(
        "vit", ("train",), "train", output_dir=str(tmp_path), image_size=32, sam_optimizer=optimizer
    )
    wf.parser["dataset_dir"] = str(phantom_dir)
    wf.initialize()
    objects = wf.parser.get_parsed_content("train#resume_objects")
    expected = {"model", "optimizer", "lr_scheduler", "scaler", "trainer", "random", "validation"}
    assert set(objects) == expected | ({"rho_scheduler"} if with_rho else set())
    assert objects["scaler"] is wf.parser.get_parsed_content("train#iteration").scaler
    assert wf.parser.get_parsed_content("train#iteration").max_norm == 1.0  # the ViT default clips


@pytest.mark.slow
def test_batchnorm_counts_one_clean_pass_per_iteration(phantom_dir, tmp_path):
    # SAM runs two forward passes per iteration; the bundle's BatchNorm statistics must see only the clean one
    # (validation runs in eval mode and adds nothing).
    wf = workflow(
        "cnn", ("train",), "train", output_dir=str(tmp_path), image_size=32, max_epochs=2, batch_size=8
    )
    wf.parser["progress"] = False
    wf.parser["dataset_dir"] = str(phantom_dir)
    wf.initialize()
    wf.run()
    net, trainer = wf.parser.get_parsed_content("network_def"), wf.parser.get_parsed_content("train#trainer")
    counts = {int(m.num_batches_tracked) for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert trainer.state.iteration == 4 and counts == {4}  # 15 images, batch 8, 2 epochs


@pytest.mark.parametrize(("bundle", "network"), [("cnn", "efficientnet_lite0"), ("vit", "vit_hybrid_lite0")])
def test_default_networks(bundle, network):
    """The CNN bundle defaults to the ImageNet-pretrained EfficientNet-Lite0, the ViT bundle to the
    hybrid ViT on its pretrained features."""
    for names, workflow_type in ((("train",), "train"), (("inference",), "infer")):
        assert workflow(bundle, names, workflow_type).parser["network_name"] == network


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_mode_knobs_reach_the_iteration_and_the_optimizer(bundle, phantom_dir, tmp_path):
    wf = workflow(
        bundle,
        ("train",),
        "train",
        output_dir=str(tmp_path),
        image_size=32,
        sam_optimizer="looksam",
        sam_start_fraction=0.5,
        **{"optimizer#k": 3},
    )
    wf.parser["dataset_dir"] = str(phantom_dir)
    wf.initialize()
    iteration = wf.parser.get_parsed_content("train#iteration")
    assert (iteration.interval, iteration.start_fraction) == (None, 0.5)  # null keeps LookSAM's k
    assert wf.parser.get_parsed_content("optimizer").interval == 3
    assert wf.parser.get_parsed_content("settings")["sam_start_fraction"] == 0.5


@pytest.mark.parametrize(("bundle", "balanced"), [("cnn", False), ("vit", True)])
def test_class_weights_come_from_the_training_list(bundle, balanced, phantom_dir, tmp_path):
    """The ViT bundle balances the classes by default (it collapsed to the majority class unweighted)."""
    wf = workflow(bundle, ("train",), "train", output_dir=str(tmp_path), image_size=32)
    wf.parser["dataset_dir"] = str(phantom_dir)
    wf.initialize()
    weight = wf.parser.get_parsed_content("loss").weight
    if not balanced:
        assert weight is None
        return
    training = wf.parser.get_parsed_content("datalist_dict")["training"]
    labels = torch.tensor([item["label"] for item in training])
    counts = torch.bincount(labels, minlength=3).float()
    torch.testing.assert_close(weight, len(labels) / (3 * counts))
    assert wf.parser.get_parsed_content("settings")["class_weights"] == "balanced"


def test_explicit_class_weights_and_bad_ones_are_named(phantom_dir, tmp_path):
    out = str(tmp_path)
    wf = workflow("cnn", ("train",), "train", output_dir=out, image_size=32, class_weights=[1, 2, 4])
    wf.parser["dataset_dir"] = str(phantom_dir)
    wf.initialize()
    assert wf.parser.get_parsed_content("loss").weight.tolist() == [1.0, 2.0, 4.0]
    wf = workflow("vit", ("train",), "train", output_dir=out, image_size=32, class_weights=[1, 2])
    wf.parser["dataset_dir"] = str(phantom_dir)
    assert "class_weights has 2 weights but num_classes=3" in _parse_error(wf, "loss")
