"""``monai-sam overlay`` through the real CLIs, on tiny bundles written in the model zoo's two styles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from monai.data import create_test_image_3d

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
#: written after training by every bundle: what the trainer really used.
REPORT = (
    "$open(@report_path, 'w').write(json.dumps({'optimizer': type(@optimizer).__name__, "
    "'base': type(getattr(@optimizer, 'base_optimizer', @optimizer)).__name__, "
    "'lr': @optimizer.param_groups[0]['lr'], 'rho': @optimizer.param_groups[0].get('rho'), "
    "'grad_norm': float(getattr(@optimizer, 'last_grad_norm', 0.0)), "
    "'keys': sorted(@{trainer}.state.output[0] if isinstance(@{trainer}.state.output, list) "
    "else @{trainer}.state.output)}))"
)


def run(args: list[str], cwd: Path, module: str = "monai.bundle") -> str:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


def spleen_style_bundle(root: Path) -> Path:
    """A 3-D segmentation bundle in spleen_ct_segmentation's layout (JSON, train#trainer, train#handlers)."""
    data = root / "data"
    data.mkdir(parents=True)
    for i in range(4):
        image, label = create_test_image_3d(
            16,
            16,
            16,
            num_objs=2,
            rad_max=4,
            rad_min=2,
            num_seg_classes=1,
            channel_dim=None,
            random_state=np.random.RandomState(i),
        )
        nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), data / f"img{i}.nii.gz")
        nib.save(nib.Nifti1Image(label.astype(np.uint8), np.eye(4)), data / f"lbl{i}.nii.gz")
    keys = ["image", "label"]
    config = {
        "imports": ["$import glob", "$import json"],
        "bundle_root": str(root),
        "report_path": "$@bundle_root + '/report.json'",
        "device": "$torch.device('cpu')",
        "images": "$sorted(glob.glob(@bundle_root + '/data/img*.nii.gz'))",
        "labels": "$sorted(glob.glob(@bundle_root + '/data/lbl*.nii.gz'))",
        "network_def": {
            "_target_": "UNet",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 2,
            "channels": [4, 8],
            "strides": [2],
            "num_res_units": 0,
        },
        "network": "$@network_def.to(@device)",
        "loss": {"_target_": "DiceCELoss", "to_onehot_y": True, "softmax": True},
        "optimizer": {
            "_target_": "Novograd",
            "params": "$@network.parameters()",
            "lr": 0.01,
            "weight_decay": 0.001,
        },
        "lr_scheduler": {
            "_target_": "torch.optim.lr_scheduler.StepLR",
            "optimizer": "@optimizer",
            "step_size": 1,
            "gamma": 0.5,
        },
        "train": {
            "preprocessing": {
                "_target_": "Compose",
                "transforms": [
                    {"_target_": "LoadImaged", "keys": keys, "image_only": True},
                    {"_target_": "EnsureChannelFirstd", "keys": keys},
                    {"_target_": "ScaleIntensityd", "keys": "image"},
                ],
            },
            "dataset": {
                "_target_": "Dataset",
                "transform": "@train#preprocessing",
                "data": "$[{'image': i, 'label': l} for i, l in zip(@images, @labels)]",
            },
            "dataloader": {
                "_target_": "DataLoader",
                "dataset": "@train#dataset",
                "batch_size": 2,
                "shuffle": True,
                "num_workers": 0,
            },
            "handlers": [
                {"_target_": "LrScheduleHandler", "lr_scheduler": "@lr_scheduler", "print_lr": True},
                {
                    "_target_": "StatsHandler",
                    "tag_name": "train_loss",
                    "output_transform": "$monai.handlers.from_engine(['loss'], first=True)",
                },
            ],
            "trainer": {
                "_target_": "SupervisedTrainer",
                "max_epochs": 2,
                "device": "@device",
                "train_data_loader": "@train#dataloader",
                "network": "@network",
                "loss_function": "@loss",
                "optimizer": "@optimizer",
                "train_handlers": "@train#handlers",
            },
        },
        "run": ["$@train#trainer.run()", REPORT.replace("{trainer}", "train#trainer")],
    }
    (root / "configs").mkdir()
    (root / "configs" / "train.json").write_text(json.dumps(config, indent=4))
    return root


def template_style_bundle(root: Path) -> Path:
    """A 2-D classification bundle in segmentation_template's layout (YAML, top-level trainer), with DDP."""
    config = {
        "imports": ["$import json"],
        "bundle_root": str(root),
        "report_path": "$@bundle_root + '/report.json'",
        "rank": 0,
        "learning_rate": 0.05,
        "device": "$torch.device('cpu')",
        "network_def": {
            "_target_": "Classifier",
            "in_shape": [1, 16, 16],
            "classes": 2,
            "channels": [4, 8],
            "strides": [2, 2],
        },
        "network": "$@network_def.to(@device)",
        "train_data": "$[{'image': torch.rand(1, 16, 16), 'label': i % 2} for i in range(8)]",
        "train_dataset": {"_target_": "Dataset", "data": "@train_data"},
        "train_dataloader": {
            "_target_": "DataLoader",
            "dataset": "@train_dataset",
            "batch_size": 4,
            "shuffle": True,
        },
        "lossfn": {"_target_": "torch.nn.CrossEntropyLoss"},
        "optimizer": {
            "_target_": "torch.optim.SGD",
            "params": "$@network.parameters()",
            "lr": "@learning_rate",
            "momentum": 0.9,
            "weight_decay": 0.0001,
        },
        "handlers": [
            {
                "_target_": "StatsHandler",
                "name": None,
                "tag_name": "train_loss",
                "output_transform": "$monai.handlers.from_engine(['loss'], first=True)",
            }
        ],
        "trainer": {
            "_target_": "SupervisedTrainer",
            "max_epochs": 1,
            "device": "@device",
            "train_data_loader": "@train_dataloader",
            "network": "@network",
            "loss_function": "@lossfn",
            "optimizer": "@optimizer",
            "train_handlers": "@handlers",
        },
        "run": ["$@trainer.run()", REPORT.replace("{trainer}", "trainer")],
    }
    multi_gpu = {
        "is_dist": "$dist.is_initialized()",
        "rank": "$dist.get_rank() if @is_dist else 0",
        "report_path": "$@bundle_root + '/report' + str(@rank) + '.json'",
        "network": {
            "_target_": "torch.nn.parallel.DistributedDataParallel",
            "module": "$@network_def.to(@device)",
        },
        "train_sampler": {
            "_target_": "DistributedSampler",
            "dataset": "@train_dataset",
            "even_divisible": True,
            "shuffle": True,
        },
        "train_dataloader#sampler": "@train_sampler",
        "train_dataloader#shuffle": False,
        "run": [
            "$import torch.distributed as dist",
            "$dist.init_process_group(backend='gloo')",
            "$@trainer.run()",
            REPORT.replace("{trainer}", "trainer"),
            "$dist.destroy_process_group()",
        ],
    }
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "train.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "configs" / "multi_gpu_train.yaml").write_text(yaml.safe_dump(multi_gpu, sort_keys=False))
    return root


def report(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_overlay_trains_a_spleen_style_3d_bundle_with_sam(tmp_path):
    root = spleen_style_bundle(tmp_path / "seg3d")
    out = run(
        ["overlay", "configs/train.json", "--optimizer", "sam", "--rho", "0.1", "--out", "sam.yaml"],
        root,
        module="monai_sam.cli",
    )
    assert "configs/train.json', 'sam.yaml'" in out
    run(["run", "--config_file", "['configs/train.json','sam.yaml']"], root)
    got = report(root / "report.json")
    assert (got["optimizer"], got["base"], got["rho"]) == ("SAM", "Novograd", 0.1)
    assert got["grad_norm"] > 0  # set by the perturbing first pass only
    assert got["lr"] == pytest.approx(0.01 * 0.5**2)  # StepLR stepped once per epoch, through the wrapper
    assert "loss_perturbed" in got["keys"]


@pytest.mark.slow
def test_overlay_trains_a_template_style_2d_bundle_and_overrides_apply(tmp_path):
    root = template_style_bundle(tmp_path / "cls2d")
    run(
        ["overlay", "configs/train.yaml", "--optimizer", "sam", "--out", "sam.json"],
        root,
        module="monai_sam.cli",
    )
    run(
        [
            "run",
            "--config_file",
            "['configs/train.yaml','sam.json']",
            "--sam_optimizer",
            "asam",
            "--sam_rho",
            "0.5",
            "--learning_rate",
            "0.02",
        ],
        root,
    )
    got = report(root / "report.json")
    assert (got["optimizer"], got["base"], got["rho"], got["lr"]) == ("ASAM", "SGD", 0.5, 0.02)
    assert "loss_perturbed" in got["keys"]


@pytest.mark.slow
def test_overlay_with_multi_gpu_train_under_torchrun(tmp_path):
    root = template_style_bundle(tmp_path / "ddp")
    run(
        [
            "overlay",
            "configs/train.yaml",
            "configs/multi_gpu_train.yaml",
            "--optimizer",
            "sam",
            "--out",
            "sam.yaml",
        ],
        root,
        module="monai_sam.cli",
    )
    configs = "['configs/train.yaml','configs/multi_gpu_train.yaml','sam.yaml']"
    run(
        ["--standalone", "--nproc_per_node=2", "-m", "monai.bundle", "run", "--config_file", configs],
        root,
        module="torch.distributed.run",
    )
    for rank in (0, 1):
        got = report(root / f"report{rank}.json")
        assert (got["optimizer"], got["base"]) == ("SAM", "SGD") and "loss_perturbed" in got["keys"]
