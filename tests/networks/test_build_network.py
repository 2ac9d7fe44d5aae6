"""Tests of monai_sam.networks.build_network: every name, both channel counts, bad input."""

from __future__ import annotations

import pytest
import torch

from monai_sam.networks import ViTClassifier, available_networks, build_network, network_spec

SIZES = {"vit": 32, "vit_small": 32, "vit_small_conv": 32}
# vgg16_bn shares vgg16's channel adaptation; its 134 M parameters take seconds to initialise.
CASES = [(name, c) for name in available_networks() for c in (1, 3) if (name, c) != ("vgg16_bn", 3)]


@pytest.mark.parametrize(("name", "in_channels"), CASES)
def test_forward_shape_every_network(name, in_channels):
    size = SIZES.get(name, 64)
    net = build_network(name, num_classes=3, in_channels=in_channels, image_size=size).eval()
    with torch.no_grad():
        out = net(torch.rand(2, in_channels, size, size))
    assert isinstance(out, torch.Tensor), f"{name} must return a tensor, not {type(out)}"
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()
    spec = network_spec(name)
    assert net.state_dict()[spec.input_key].shape[1] == in_channels
    head = [k for k in net.state_dict() if k.startswith(spec.head_prefixes) and k.endswith("weight")]
    assert head and net.state_dict()[head[-1]].shape[0] == 3


def test_expected_names_and_case_insensitive():
    assert {"resnet50", "resnet18", "vgg16", "vit", "vit_small", "swin_t"} <= set(available_networks())
    assert isinstance(build_network("ViT_Small", 2, image_size=32), ViTClassifier)


def test_two_classes_and_rectangular_input_for_cnn():
    net = build_network("resnet18", num_classes=2).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 1, 64, 96)).shape == (1, 2)


def test_vit_has_no_tanh_and_returns_logits():
    torch.manual_seed(0)
    net = build_network("vit_small", 3, image_size=32).eval()
    # Large head weights give logits far outside (-1, 1), which a Tanh would squash.
    with torch.no_grad():
        net.classification_head.weight.mul_(100.0)
        out = net(torch.rand(4, 1, 32, 32))
    assert out.abs().max() > 1.5


def test_resnet_uses_torchvision_stem():
    net = build_network("resnet18", 3)
    assert net.conv1.stride == (2, 2) and net.conv1.kernel_size == (7, 7)


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match=r"unknown network 'densenet'.*resnet50.*vit_small"):
        build_network("densenet", 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, "num_classes must be an integer >= 2"),
        ({"num_classes": 3, "in_channels": 0}, "in_channels must be an integer >= 1"),
        ({"num_classes": 3, "image_size": 16}, "image_size must be an integer >= 32"),
    ],
)
def test_bad_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_network("resnet18", **kwargs)


def test_vit_image_size_must_fit_patch():
    with pytest.raises(ValueError, match="multiple of the ViT patch size 16"):
        build_network("vit", 3, image_size=40)
    with pytest.raises(ValueError, match="multiple of the ViT patch size 8"):
        build_network("vit_small", 3, image_size=36)


def test_conv_stem_vit_keeps_the_token_grid_and_encoder():
    plain = build_network("vit_small", 3, image_size=64)
    conv = build_network("vit_small_conv", 3, image_size=64)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        tokens_plain = plain.patch_embedding(x)
        tokens_conv = conv.patch_embedding(x)
    # One token per 8x8 cell in both: the same 64-token sequence reaches the same encoder.
    assert tokens_conv.shape == tokens_plain.shape == (2, 64, 192)
    encoder = {k: v.shape for k, v in plain.state_dict().items() if not k.startswith("patch_embedding.")}
    assert {
        k: v.shape for k, v in conv.state_dict().items() if not k.startswith("patch_embedding.")
    } == encoder
    stem = conv.patch_embedding.patch_embeddings
    strides = [m.stride for m in stem if isinstance(m, torch.nn.Conv2d)]
    assert strides == [(2, 2)] * 3 + [(1, 1)]  # log2(8) stride-2 3x3 convs, then the 1x1 projection


def test_conv_stem_tokens_are_local():
    # A change confined to one 8x8 cell moves that cell's token most: the stem's receptive field is
    # local (a patchifying convolution would move only that token; the 3x3 stem leaks to neighbours).
    torch.manual_seed(0)
    net = build_network("vit_small_conv", 3, image_size=64).eval()
    x = torch.rand(1, 1, 64, 64)
    y = x.clone()
    y[..., 24:32, 24:32] += 1.0  # cell (3, 3) of the 8x8 grid: token 3 * 8 + 3
    with torch.no_grad():
        change = (net.patch_embedding(y) - net.patch_embedding(x)).norm(dim=-1)[0]
    assert int(change.argmax()) == 27
    assert change[0] < 1e-4 * change[27]  # the far corner's token does not move


@pytest.mark.parametrize("patch", [6, 1])
def test_conv_stem_needs_a_power_of_two_patch(patch):
    with pytest.raises(ValueError, match="power of two"):
        ViTClassifier(
            1,
            48 if patch == 6 else 32,
            patch,
            3,
            hidden_size=48,
            mlp_dim=96,
            num_layers=1,
            num_heads=2,
            conv_stem=True,
        )
