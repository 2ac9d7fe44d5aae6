"""Helpers of the bundle tests: bundle paths, tiny settings and the real-CLI runner.

A plain module (not ``conftest``): several test folders have a conftest, and importing one by that
name is ambiguous when the whole suite runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLES = {"cnn": REPO / "bundles" / "breast_us_cnn", "vit": REPO / "bundles" / "breast_us_vit"}
SCHEMA = Path(__file__).resolve().parent / "meta_schema_20240725.json"

#: Tiny-run overrides: 32-pixel images, one epoch, no progress bars.
TINY = ["--image_size", "32", "--batch_size", "8", "--max_epochs", "1", "--progress", "False"]


def config(bundle: str, *names: str) -> str:
    """The ``--config_file`` value for one or more configs of a bundle (a list literal for several)."""
    paths = [str(BUNDLES[bundle] / "configs" / f"{name}.json") for name in names]
    return paths[0] if len(paths) == 1 else repr(paths)


def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses: one thread each (the tests share two cores)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def run_cli(
    args: list[str], cwd: Path, timeout: int = 300, check: bool = True
) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle <args>`` in ``cwd``; with ``check``, fail showing the output tail."""
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"monai.bundle {args[0]} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}"
        )
    return proc


#: the CNN bundle's smaller network: tests train it instead of the default ResNet-50 to save time
CNN_NET = ["--network_name", "resnet18"]


def train_args(bundle: str, output_dir: Path, dataset_dir: Path, *extra: str) -> list[str]:
    """Arguments of a tiny training run of ``bundle`` (ResNet-18 for the CNN bundle unless ``extra`` says)."""
    net = CNN_NET if bundle == "cnn" and "--network_name" not in extra else []
    return [
        "run",
        "--config_file",
        config(bundle, "train"),
        "--output_dir",
        str(output_dir),
        "--dataset_dir",
        str(dataset_dir),
        *TINY,
        *net,
        *extra,
    ]
