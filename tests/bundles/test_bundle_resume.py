"""Resuming a bundle run through the real CLI: stopped after epoch 1, resumed, equals two epochs in one go."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from bundle_cli import run_cli, train_args
from ignite.engine import Engine

from monai_sam.handlers import ResumeHandler
from monai_sam.networks import build_network

pytestmark = pytest.mark.slow


def _train(out, phantom_dir, *extra: str, check: bool = True):
    args = train_args("cnn", out, phantom_dir, *extra)
    args[args.index("--max_epochs") + 1] = "2"
    return run_cli(args, cwd=out, check=check)


def _load(path):
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, phantom_dir):
    """Two SAM epochs in one go."""
    out = tmp_path_factory.mktemp("full")
    _train(out, phantom_dir)
    return out


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, phantom_dir, trained_cnn):
    """The same run stopped after epoch 1 (``trained_cnn``), then resumed with ``resume auto``."""
    out = tmp_path_factory.mktemp("resumed") / "run"
    shutil.copytree(trained_cnn, out)
    proc = _train(out, phantom_dir, "--resume", "auto")
    return out, proc


def test_resumed_run_equals_uninterrupted_run(uninterrupted, resumed):
    out, proc = resumed
    assert "Resumed from" in proc.stdout + proc.stderr
    full, res = _load(uninterrupted / "checkpoint_final.pt"), _load(out / "checkpoint_final.pt")
    assert res["trainer"]["iteration"] == full["trainer"]["iteration"] == 4  # 15 images, batch 8
    for name, tensor in full["model"].items():  # weights and BatchNorm statistics, bit for bit
        assert torch.equal(tensor, res["model"][name]), name
    for index, state in full["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(res["optimizer"]["state"][index][key]))
    assert res["lr_scheduler"] == full["lr_scheduler"]
    # The validation history and best epoch continue across the stop.
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert metrics == json.loads((uninterrupted / "metrics.json").read_text())


def test_epoch_checkpoint_holds_everything_to_resume(resumed):
    out, _ = resumed
    state = _load(out / "checkpoint_epoch=1.pt")
    assert {"model", "optimizer", "lr_scheduler", "scaler", "trainer", "random", "validation"} <= set(state)
    assert state["trainer"]["iteration"] == 2
    steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert steps == {2.0}  # Adam moments of two base steps survive the stop


def test_resume_errors_are_clear(resumed, tmp_path):
    out, _ = resumed
    with pytest.raises(FileNotFoundError, match=r"nope\.pt' does not exist"):
        ResumeHandler(str(tmp_path / "nope.pt"), out, {"model": build_network("resnet18", 3)})
    assert (
        ResumeHandler("auto", tmp_path, {"model": build_network("resnet18", 3)}).path is None
    )  # fresh start

    def attach(path, num_classes=3, max_epochs=2):
        trainer = Engine(lambda engine, batch: None)
        trainer.state.max_epochs = max_epochs
        handler = ResumeHandler(
            path, out, {"model": build_network("resnet18", num_classes), "trainer": trainer}
        )
        handler.attach(trainer)  # checks eagerly: a failing resume trains (and overwrites) nothing

    attach(out / "checkpoint_epoch=1.pt")
    with pytest.raises(ValueError, match=r"not from model\.pt"):
        attach(out / "model.pt")
    with pytest.raises(ValueError, match=r"'fc.weight' has shape \(3, 512\) in the checkpoint, \(2, 512\)"):
        attach(out / "checkpoint_epoch=1.pt", num_classes=2)
    with pytest.raises(ValueError, match="past max_epochs 1"):
        attach(out / "checkpoint_final.pt", max_epochs=1)
