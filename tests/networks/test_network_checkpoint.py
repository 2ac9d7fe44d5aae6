"""monai_sam.networks.load_network_checkpoint: strict loading with the mismatch named in the error."""

from __future__ import annotations

import pytest
import torch

from monai_sam.networks import build_network
from monai_sam.networks.checkpoint import load_network_checkpoint


def test_load_network_checkpoint(tmp_path):
    torch.manual_seed(0)
    trained = build_network("resnet18", 3)
    torch.save(trained.state_dict(), tmp_path / "model.pt")
    net = load_network_checkpoint(build_network("resnet18", 3), tmp_path / "model.pt")
    torch.testing.assert_close(net.fc.weight, trained.fc.weight)
    with pytest.raises(
        ValueError, match=r"'fc.weight' has shape \(3, 512\) in the file but \(2, 512\).*num_classes"
    ):
        load_network_checkpoint(build_network("resnet18", 2), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="does not match the configured network"):
        load_network_checkpoint(build_network("resnet50", 3), tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError, match="train first"):
        load_network_checkpoint(trained, tmp_path / "absent.pt")
