"""``monai-sam overlay`` through the real CLIs, on tiny bundles written in the model zoo's two styles."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from monai.data import create_test_image_3d

from monai_sam.cli import main

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


#: a tiny 2-D classifier on eight random 16 x 16 images, for the classification bundles below.
CLASSIFIER_16PX = {
    "network_def": {
        "_target_": "Classifier",
        "in_shape": [1, 16, 16],
        "classes": 2,
        "channels": [4, 8],
        "strides": [2, 2],
    },
    "network": "$@network_def.to(@device)",
    "train_data": "$[{'image': torch.rand(1, 16, 16), 'label': i % 2} for i in range(8)]",
}


def template_style_bundle(root: Path) -> Path:
    """A 2-D classification bundle in segmentation_template's layout (YAML, top-level trainer), with DDP."""
    config = {
        "imports": ["$import json"],
        "bundle_root": str(root),
        "report_path": "$@bundle_root + '/report.json'",
        "rank": 0,
        "learning_rate": 0.05,
        "device": "$torch.device('cpu')",
        **CLASSIFIER_16PX,
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


def adam_bundle_run_by_training(root: Path) -> Path:
    """A 2-D classification bundle with Adam and ``amp: true``, run by the id ``training`` (as
    ventricular_short_axis_3label is): it saves the initial and the final weights."""
    config = {
        "imports": ["$import torch"],
        "bundle_root": str(root),
        "device": "$torch.device('cpu')",
        **CLASSIFIER_16PX,
        "train_dataloader": {
            "_target_": "DataLoader",
            "dataset": {"_target_": "Dataset", "data": "@train_data"},
            "batch_size": 4,
            "shuffle": True,
        },
        "optimizer": {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 0.01},
        "trainer": {
            "_target_": "SupervisedTrainer",
            "max_epochs": 2,
            "device": "@device",
            "train_data_loader": "@train_dataloader",
            "network": "@network",
            "loss_function": "$torch.nn.CrossEntropyLoss()",
            "optimizer": "@optimizer",
            "amp": True,
        },
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "training": [
            "$torch.save(@network.state_dict(), @bundle_root + '/initial.pt')",
            "$@trainer.run()",
            "$torch.save(@network.state_dict(), @bundle_root + '/final.pt')",
        ],
    }
    (root / "configs").mkdir(parents=True)
    (root / "configs" / "train.json").write_text(json.dumps(config, indent=4))
    return root


def printed_command(out: str, label: str) -> list[str]:
    """The command the overlay printed after ``label``, as a shell would split it."""
    line = next(line for line in out.splitlines() if line.startswith(label))
    return shlex.split(line[len(label) :])


@pytest.mark.slow
def test_the_printed_baseline_command_runs_as_printed_and_equals_the_bundle_alone(
    tmp_path, monkeypatch, capsys
):
    """One overlay, two runs: with --sam_optimizer adam the overlaid bundle is the bundle, bit for bit."""
    root = adam_bundle_run_by_training(tmp_path / "ab")
    run(["run", "training", "--config_file", "configs/train.json"], root)
    alone = torch.load(root / "final.pt", weights_only=True)
    initial = torch.load(root / "initial.pt", weights_only=True)
    (root / "final.pt").unlink()
    monkeypatch.chdir(root)  # the overlay through the CLI's own entry point (the bundle runs are real CLIs)
    assert main(["overlay", "configs/train.json", "--optimizer", "sam", "--out", "sam.yaml"]) == 0
    command = printed_command(capsys.readouterr().out, "the bundle's own optimizer (A/B baseline): ")
    assert command[:5] == ["python", "-m", "monai.bundle", "run", "training"]  # the bundle's run id
    assert command[-2:] == ["--sam_optimizer", "adam"]
    proc = subprocess.run(
        [sys.executable, *command[1:]], cwd=root, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    overlaid = torch.load(root / "final.pt", weights_only=True)
    assert alone.keys() == overlaid.keys()
    assert [k for k in alone if not torch.equal(alone[k], overlaid[k])] == []
    assert any(not torch.equal(alone[k], initial[k]) for k in alone)  # it trained


PROBE = '''"""What the DeepEdit-style test checks: clicks per iteration, the forward dtype, the weights."""

import collections

import torch
from monai.engines.utils import IterationEvents


class Probe:
    def __init__(self):
        self.clicks = collections.Counter()
        self.dtypes = set()

    def attach(self, engine):
        engine.add_event_handler(IterationEvents.INNER_ITERATION_COMPLETED, self._click)
        engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._forward)

    def _click(self, engine):
        self.clicks[engine.state.iteration] += 1

    def _forward(self, engine):
        self.dtypes.add(str(engine.state.output["pred"].dtype))

    def summary(self, trainer, optimizer, network):
        return {
            "clicks": {str(k): v for k, v in sorted(self.clicks.items())},
            "iterations": trainer.state.iteration,
            "dtypes": sorted(self.dtypes),
            "trainer": type(trainer).__name__,
            "optimizer": type(optimizer).__name__,
            "num_passes": trainer.state.output[0].get("num_passes"),
            "finite": all(bool(torch.isfinite(p).all()) for p in network.parameters()),
        }
'''


def deepedit_style_bundle(root: Path) -> Path:
    """spleen_deepedit_annotation's layout in miniature: 3-D NIfTI volumes, DeepEdit's guidance transforms,
    MONAI's ``Interaction`` as ``train#trainer``'s ``iteration_update`` (clicks in every iteration),
    ``amp: true``, a DynUNet, Adam with StepLR, ``initialize`` and ``run`` ids."""
    data = root / "data"
    data.mkdir(parents=True)
    for i in range(2):
        image, label = create_test_image_3d(
            16, 16, 16, num_objs=2, rad_max=5, rad_min=3, num_seg_classes=1, channel_dim=None,
            random_state=np.random.RandomState(i),
        )  # fmt: skip
        nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), data / f"img{i}.nii.gz")
        nib.save(nib.Nifti1Image(label.astype(np.uint8), np.eye(4)), data / f"lbl{i}.nii.gz")
    both = ["image", "label"]
    guidance = {"_target_": "AddGuidanceSignalDeepEditd", "keys": "image", "guidance": "guidance"}
    config = {
        "imports": ["$import glob", "$import json"],
        "bundle_root": str(root),
        "images": "$sorted(glob.glob(@bundle_root + '/data/img*'))",
        "labels": "$sorted(glob.glob(@bundle_root + '/data/lbl*'))",
        "label_names": {"spleen": 1, "background": 0},
        "device": "$torch.device('cpu')",
        "network_def": {
            "_target_": "DynUNet",
            "spatial_dims": 3,
            "in_channels": "$len(@label_names) + 1",
            "out_channels": "$len(@label_names)",
            "kernel_size": [3, 3, 3],
            "strides": [1, 2, 2],
            "upsample_kernel_size": [2, 2],
            "filters": [4, 8, 16],
            "norm_name": "instance",
            "res_block": True,
        },
        "network": "$@network_def.to(@device)",
        "loss": {"_target_": "DiceCELoss", "to_onehot_y": True, "softmax": True},
        "optimizer": {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 0.0001},
        "lr_scheduler": {
            "_target_": "torch.optim.lr_scheduler.StepLR",
            "optimizer": "@optimizer",
            "step_size": 1000,
            "gamma": 0.1,
        },
        "train": {
            "preprocessing": {
                "_target_": "Compose",
                "transforms": [
                    {"_target_": "LoadImaged", "keys": both},
                    {"_target_": "NormalizeLabelsInDatasetd", "keys": "label", "label_names": "@label_names"},
                    {"_target_": "EnsureChannelFirstd", "keys": both},
                    {"_target_": "ScaleIntensityd", "keys": "image"},
                    {
                        "_target_": "Resized",
                        "keys": both,
                        "spatial_size": [16, 16, 16],
                        "mode": ["area", "nearest"],
                    },
                    guidance,  # no initial seed point (its transform needs scikit-image): clicks add them
                    {"_target_": "ToTensord", "keys": both},
                ],
            },
            "click_transforms": {
                "_target_": "Compose",
                "transforms": [
                    {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                    {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
                    {"_target_": "ToNumpyd", "keys": ["image", "label", "pred"]},
                    {
                        "_target_": "FindDiscrepancyRegionsDeepEditd",
                        "keys": "label",
                        "pred": "pred",
                        "discrepancy": "discrepancy",
                    },
                    {
                        "_target_": "AddRandomGuidanceDeepEditd",
                        "keys": "NA",
                        "guidance": "guidance",
                        "discrepancy": "discrepancy",
                        "probability": "probability",
                    },
                    guidance,
                    {"_target_": "ToTensord", "keys": both},
                ],
            },
            "dataset": {
                "_target_": "Dataset",
                "data": "$[{'image': i, 'label': l, 'guidance': {k: '[]' for k in @label_names}} "
                "for i, l in zip(@images, @labels)]",
                "transform": "@train#preprocessing",
            },
            "dataloader": {"_target_": "DataLoader", "dataset": "@train#dataset", "batch_size": 1},
            "probe": {"_target_": "scripts.probe.Probe"},
            "handlers": [
                {"_target_": "LrScheduleHandler", "lr_scheduler": "@lr_scheduler", "print_lr": True},
                "@train#probe",
            ],
            "train_iteration_update": {
                "_target_": "Interaction",
                "deepgrow_probability": 1.0,
                "transforms": "@train#click_transforms",
                "click_probability_key": "probability",
                "train": True,
                "label_names": "@label_names",
                "max_interactions": 2,
            },
            "trainer": {
                "_target_": "SupervisedTrainer",
                "device": "@device",
                "max_epochs": 1,
                "train_data_loader": "@train#dataloader",
                "network": "@network",
                "optimizer": "@optimizer",
                "loss_function": "@loss",
                "amp": True,
                "train_handlers": "@train#handlers",
                "iteration_update": "@train#train_iteration_update",
            },
        },
        "initialize": ["$monai.utils.set_determinism(seed=123)"],
        "run": [
            "$@train#trainer.run()",
            "$open(@bundle_root + '/report.json', 'w').write(json.dumps("
            "@train#probe.summary(@train#trainer, @optimizer, @network)))",
        ],
    }
    (root / "configs").mkdir()
    (root / "configs" / "train.json").write_text(json.dumps(config, indent=4))
    (root / "scripts").mkdir()
    (root / "scripts" / "__init__.py").write_text("")
    (root / "scripts" / "probe.py").write_text(PROBE)
    return root


@pytest.mark.slow
def test_overlay_trains_a_deepedit_style_bundle_with_its_interaction(tmp_path, monkeypatch, capsys):
    """The overlay composes with DeepEdit's Interaction: every pass of SAM runs on the batch the clicks
    made, in every iteration, at the bundle's own precision (amp: true on a CPU is fp32), without NaN."""
    root = deepedit_style_bundle(tmp_path / "deepedit")
    monkeypatch.chdir(root)
    assert main(["overlay", "configs/train.json", "--optimizer", "sam", "--out", "sam.yaml"]) == 0
    command = printed_command(capsys.readouterr().out, "run (overlay last): ")
    overlay = yaml.safe_load((root / "sam.yaml").read_text())
    assert overlay["train#trainer#_target_"] == "monai_sam.engines.SharpnessAwareTrainer"
    assert "train#trainer#iteration_update" not in overlay  # the bundle's Interaction stays
    proc = subprocess.run(
        [sys.executable, *command[1:]], cwd=root, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    got = report(root / "report.json")
    assert (got["trainer"], got["optimizer"], got["num_passes"]) == ("SharpnessAwareTrainer", "SAM", 2)
    assert got["iterations"] == 2 and got["clicks"] == {"1": 2, "2": 2}  # Interaction's loop, each time
    assert got["dtypes"] == ["torch.float32"]  # amp: true trains a CPU model in fp32, as MONAI does
    assert got["finite"]
