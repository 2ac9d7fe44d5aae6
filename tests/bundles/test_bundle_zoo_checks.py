"""Our equivalents of the MONAI Model Zoo's CI checks, on both bundles as shipped.

What the zoo's ``ci/verify_bundle.py`` and ``ci/unit_tests/runner.py`` check, written for our bundles: the
necessary files, the metadata against the 20240725 schema, the network's input and output shapes, the
TorchScript export and its loading through ``monai.bundle.load``, and the unit-test flow (train, train +
evaluate, inference with ``--dataset_dir``) run from the bundle's own folder. Beyond the zoo's CPU checks:
the 2-process torchrun flow (Gloo on CPU) and the zip -> ``monai.bundle download`` -> inference route.

Every flow runs on a copy of the bundle folder, from inside it, as a user who unzipped the bundle would.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import monai.bundle
import pytest
import torch
from bundle_cli import BUNDLES, SCHEMA, cli_env, run_cli
from monai.bundle import ConfigParser, ConfigWorkflow

BUNDLE_NAMES = sorted(BUNDLES)
#: The zoo's ``verify_bundle.py`` list of files every bundle must have.
NECESSARY_FILES = (
    "configs/metadata.json",
    "configs/inference.json",
    "models/model.pt",
    "docs/README.md",
    "LICENSE",
)
#: Tiny training: 32-pixel images, batches of 8, one epoch, no progress bars.
TINY = {"image_size": 32, "batch_size": 8, "max_epochs": 1, "progress": False}


def _copy_bundle(bundle: str, parent: Path) -> Path:
    """The bundle folder as shipped (run outputs and exports left out), copied to ``parent/<bundle name>``."""
    source = BUNDLES[bundle]
    target = parent / source.name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("outputs", "model.ts", "__pycache__"))
    return target


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _input_shape(meta: dict) -> tuple[int, ...]:
    """A batch of 2 of metadata's input image shape."""
    image = meta["network_data_format"]["inputs"]["image"]
    return (2, image["num_channels"], *image["spatial_shape"])


def _metadata(root: Path) -> dict:
    return json.loads((root / "configs" / "metadata.json").read_text())


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_necessary_files(bundle):
    missing = [name for name in NECESSARY_FILES if not (BUNDLES[bundle] / name).is_file()]
    assert not missing, f"{bundle} lacks {missing}"


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_metadata_matches_schema(bundle):
    meta = _metadata(BUNDLES[bundle])
    jsonschema.validate(meta, json.loads(SCHEMA.read_text()))
    assert meta["schema"].endswith("meta_schema_20240725.json")
    assert "monai-sam" in meta["required_packages_version"]
    fmt = meta["network_data_format"]
    assert fmt["inputs"]["image"]["num_channels"] == 1
    assert fmt["outputs"]["pred"]["num_channels"] == 3


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_net_in_out(bundle):
    """The inference config's network takes metadata's input shape and gives its output channels."""
    root = BUNDLES[bundle]
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser.read_meta(str(root / "configs" / "metadata.json"))
    network = parser.get_parsed_content("network_def").eval()
    meta = _metadata(root)
    with torch.no_grad():
        out = network(torch.rand(_input_shape(meta)))
    assert out.shape == (2, meta["network_data_format"]["outputs"]["pred"]["num_channels"])


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_ckpt_export_and_load_from_a_local_bundle_folder(bundle, tmp_path):
    root = _copy_bundle(bundle, tmp_path)
    export = ["ckpt_export", "network_def", "--filepath", "models/model.ts", "--ckpt_file", "models/model.pt"]
    run_cli(
        [*export, "--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json"], root
    )
    device = "cpu"
    scripted, meta, _ = monai.bundle.load(root.name, bundle_dir=tmp_path, load_ts_module=True, device=device)
    eager = monai.bundle.load(root.name, bundle_dir=tmp_path, workflow_type="inference", device=device)
    trained = monai.bundle.load(root.name, bundle_dir=tmp_path, workflow_type="train", device=device)
    size = ConfigParser.load_config_file(str(root / "configs" / "inference.json"))["image_size"]
    x = torch.rand(2, 1, size, size)
    with torch.no_grad():
        expected = eager.eval()(x)
        torch.testing.assert_close(scripted.eval()(x), expected)
        torch.testing.assert_close(trained.eval()(x), expected)  # the shipped weights, not ImageNet's
    assert meta["version"] == _metadata(root)["version"]
    assert not (root / "outputs").exists()  # building the network alone writes nothing


def _workflow(names: tuple[str, ...], workflow_type: str, **overrides) -> ConfigWorkflow:
    """A workflow over ``configs/<name>.json`` of the current folder, built as the zoo's unit tests do."""
    files = [f"configs/{name}.json" for name in names]
    return ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        meta_file="configs/metadata.json",
        logging_file=False,
        workflow_type=workflow_type,
        **overrides,
    )


def _run(workflow: ConfigWorkflow) -> None:
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    workflow.finalize()


def _prediction_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_unit_flow_from_the_bundle_folder(bundle, phantom_dir, tmp_path, monkeypatch):
    """Train, train + evaluate (a train workflow, as the zoo runs it) and inference with ``dataset_dir``."""
    root = _copy_bundle(bundle, tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # the configs install their own
    shipped = _digest(root / "models" / "model.pt")
    _run(_workflow(("train",), "train", dataset_dir=str(phantom_dir), **TINY))
    _run(_workflow(("train", "evaluate"), "train", dataset_dir=str(phantom_dir), **TINY))
    outputs = root / "outputs"
    metrics = json.loads((outputs / "eval_test_metrics.json").read_text())
    assert metrics["ckpt_path"] == "./outputs/model.pt"  # evaluate reads what train wrote (ckpt_dir)
    assert _digest(root / "models" / "model.pt") == shipped  # training left the shipped weights alone
    images = phantom_dir / "benign"
    _run(_workflow(("inference",), "infer", dataset_dir=str(images)))
    rows = _prediction_rows(outputs / "predictions.csv")
    assert len(rows) == len(list(images.glob("*.png")))


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 -m monai.bundle <args>`` in ``cwd`` (Gloo on CPU)."""
    runner = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*runner, "-m", "monai.bundle", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


@pytest.mark.slow
def test_two_process_flow_from_the_bundle_folder(phantom_dir, tmp_path):
    """multi_gpu_train, then multi_gpu_evaluate, on 2 CPU processes (GSAM: rho follows the LR everywhere)."""
    root = _copy_bundle("cnn", tmp_path)
    knobs = ["--dataset_dir", str(phantom_dir), "--network_name", "resnet18", "--sam_optimizer", "gsam"]
    for name, value in TINY.items():
        knobs += [f"--{name}", str(value)]
    _torchrun(["run", "--config_file", "['configs/train.json','configs/multi_gpu_train.json']", *knobs], root)
    outputs = root / "outputs"
    log = (outputs / "train.log").read_text()
    assert log.count("Epoch[1] Metrics -- val_accuracy") == 1  # metrics logged by rank 0 only
    assert "Current rho: 0.0" in log  # GSAM: rho followed the cosine LR down to 0
    split = json.loads((outputs / "data_split" / "split.json").read_text())
    # Ranks hold 2 and 1 validation images; the metrics gather all of them.
    assert (
        json.loads((outputs / "metrics.json").read_text())["final"]["val_n"] == len(split["validation"]) == 3
    )
    evaluate = "['configs/train.json','configs/evaluate.json','configs/multi_gpu_evaluate.json']"
    _torchrun(["run", "--config_file", evaluate, *knobs], root)
    metrics = json.loads((outputs / "eval_test_metrics.json").read_text())
    assert metrics["final"]["n"] == len(split["test"])  # gathered from both ranks


@pytest.mark.slow
def test_zip_download_and_inference(phantom_dir, tmp_path):
    """The zoo's packaging: a zip of the bundle folder, ``monai.bundle download --url``, then inference."""
    root = _copy_bundle("cnn", tmp_path / "src")
    archive = shutil.make_archive(str(tmp_path / root.name), "zip", root_dir=root.parent, base_dir=root.name)
    downloads = tmp_path / "downloads"
    run_cli(
        ["download", "--name", root.name, "--url", Path(archive).as_uri(), "--bundle_dir", str(downloads)],
        tmp_path,
    )
    unzipped = downloads / root.name
    images = phantom_dir / "malignant"
    run_cli(["run", "--config_file", "configs/inference.json", "--dataset_dir", str(images)], unzipped)
    rows = _prediction_rows(unzipped / "outputs" / "predictions.csv")
    assert len(rows) == len(list(images.glob("*.png")))
    assert _digest(unzipped / "models" / "model.pt") == _digest(BUNDLES["cnn"] / "models" / "model.pt")
