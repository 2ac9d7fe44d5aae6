"""Shared fixtures of the bundle tests: a tiny phantom and one trained tiny checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundle_cli import run_cli, train_args

from monai_sam.data import make_phantom_dataset


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """8 phantom images per class at 48 pixels (split 15 / 3 / 6)."""
    return make_phantom_dataset(tmp_path_factory.mktemp("phantom"), num_per_class=8, image_size=48, seed=0)


@pytest.fixture(scope="session")
def trained_cnn(tmp_path_factory, phantom_dir) -> Path:
    """Output folder of one tiny CNN-bundle training run (resnet18, SAM, 32 px): epoch 1 of a 2-epoch
    schedule, stopped there with ``stop_epoch`` (so the resume test can continue it)."""
    out = tmp_path_factory.mktemp("cnn_run")
    args = train_args("cnn", out, phantom_dir, "--stop_epoch", "1")
    args[args.index("--max_epochs") + 1] = "2"
    run_cli(args, cwd=out)
    return out
