"""Tests of local pretrained-weight loading: RGB stems on grey input, heads, checkpoint formats, errors."""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision

from monai_sam.networks import adapt_input_channels, build_network, load_pretrained_weights


@pytest.mark.parametrize(("name", "size"), [("resnet18", 64), ("vit_small", 32), ("swin_micro", 64)])
def test_rgb_weights_on_grey_input_match_replicated_rgb(tmp_path, name, size):
    torch.manual_seed(0)
    rgb = build_network(name, 3, in_channels=3, image_size=size).eval()
    path = tmp_path / "rgb.pt"
    torch.save(rgb.state_dict(), path)
    grey = build_network(name, 3, in_channels=1, image_size=size, pretrained_path=str(path)).eval()
    image = torch.rand(2, 1, size, size)
    with torch.no_grad():
        expected = rgb(image.repeat(1, 3, 1, 1))
        got = grey(image)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_torchvision_imagenet_layout_loads_into_monai_resnet(tmp_path, caplog):
    torch.manual_seed(0)
    source = torchvision.models.resnet18(weights=None)  # ImageNet layout: 3 channels, 1000 classes
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(source.state_dict(), path)
    net = build_network("resnet18", 3, in_channels=1)
    fresh_fc = net.fc.weight.detach().clone()
    with caplog.at_level(logging.INFO):
        report = load_pretrained_weights(
            net, path, input_key="conv1.weight", head_prefixes=("fc.",), reinit_head=True
        )
    assert report.adapted == ["conv1.weight"]
    assert report.reinitialised == ["fc.weight", "fc.bias"]
    assert not report.missing and not report.unexpected
    torch.testing.assert_close(net.conv1.weight, source.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(net.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    torch.testing.assert_close(net.fc.weight, fresh_fc)


def test_head_shape_mismatch_names_tensor_and_shapes(tmp_path):
    path = tmp_path / "imagenet.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(
        ValueError, match=r"'fc.weight' has shape \(1000, 512\) in the file but \(3, 512\).*reinit"
    ):
        build_network("resnet18", 3, pretrained_path=str(path))


def test_body_shape_mismatch_raises_even_with_reinit_head(tmp_path):
    path = tmp_path / "small.pt"
    torch.save(build_network("vit_small", 3, image_size=32).state_dict(), path)
    with pytest.raises(ValueError, match=r"'patch_embedding.position_embeddings' has shape \(1, 16, 192\)"):
        build_network("vit_small", 3, image_size=64, pretrained_path=str(path), reinit_head=True)


def test_checkpoint_dict_with_ddp_prefix(tmp_path):
    torch.manual_seed(1)
    source = build_network("resnet18", 2)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    path = tmp_path / "ckpt.pt"
    torch.save({"model": state, "epoch": 3}, path)
    net = build_network("resnet18", 2, pretrained_path=str(path))
    for key, value in source.state_dict().items():
        torch.testing.assert_close(net.state_dict()[key], value)


def test_other_architecture_is_rejected(tmp_path):
    path = tmp_path / "swin.pt"
    torch.save(build_network("swin_micro", 3).state_dict(), path)
    with pytest.raises(ValueError, match=r"no tensor .* matches the network by name"):
        build_network("resnet18", 3, pretrained_path=str(path))


def test_missing_keys_strict_and_lenient(tmp_path, caplog):
    state = build_network("resnet18", 3).state_dict()
    del state["layer4.1.bn2.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"1 network tensors missing.*layer4.1.bn2.weight.*extra.weight"):
        build_network("resnet18", 3, pretrained_path=str(path))
    with caplog.at_level(logging.WARNING):
        build_network("resnet18", 3, pretrained_path=str(path), strict=False)
    assert "layer4.1.bn2.weight" in caplog.text


def test_missing_file_and_non_state_dict(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        build_network("resnet18", 3, pretrained_path=str(tmp_path / "absent.pth"))
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="holds no state dict"):
        build_network("resnet18", 3, pretrained_path=str(path))


def test_adapt_input_channels_grey_to_rgb_and_bad_combination():
    weight = torch.randn(4, 1, 3, 3)
    rgb = adapt_input_channels(weight, 3)
    image = torch.rand(1, 1, 8, 8)
    torch.testing.assert_close(
        torch.nn.functional.conv2d(image.repeat(1, 3, 1, 1), rgb), torch.nn.functional.conv2d(image, weight)
    )
    with pytest.raises(ValueError, match="cannot adapt a 3-channel input layer to 2 channels"):
        adapt_input_channels(torch.randn(4, 3, 3, 3), 2)
