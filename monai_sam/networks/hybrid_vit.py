"""A hybrid Vision Transformer: a transformer encoder over a pretrained CNN's feature map.

This is the hybrid of the ViT paper (Dosovitskiy et al., ICLR 2021, section 3.1, "Hybrid
Architecture"): the input sequence is formed from a CNN feature map with patch size 1, each spatial
position of the map becoming one token. Here the CNN is EfficientNet-Lite0 up to its stride-16 stage
(stem and the first five stages, 112 channels, ImageNet weights from the installed package), a 1x1
convolution projects each position to the token width, and MONAI's ViT encoder (class token, learned
position embeddings, pre-norm blocks), trained from scratch, classifies. At 128 px that is 8 x 8 = 64
tokens, the same sequence length as ``vit_small_conv`` at 64 px.

Only the tokeniser differs from :class:`~monai_sam.networks.vit.ViTClassifier`; the encoder and head are
MONAI's, with MONAI's parameter names.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from monai_sam.networks.efficientnet_lite import LITE_MEAN, LITE_STD, rename_lite_keys
from monai_sam.networks.vit import ViTClassifier

__all__ = ["LITE0_STAGE_DEPTHS", "EfficientNetLiteTokenizer", "hybrid_vit", "hybrid_vit_keys"]

#: Blocks per stage of EfficientNet-Lite0 (timm's ``blocks``; the weights file numbers them 0..15).
LITE0_STAGE_DEPTHS: list[int] = [1, 2, 2, 3, 3, 4, 1]
#: Stages kept by the tokeniser: the stem and stages 0-4 end at stride 16 with 112 channels.
TOKENIZER_STAGES = 5
TOKENIZER_CHANNELS = 112
TOKENIZER_STRIDE = 16
#: Where the tokeniser's CNN sits in the hybrid's state dict.
CNN_PREFIX = "patch_embedding.patch_embeddings.cnn."


class EfficientNetLiteTokenizer(nn.Module):
    """``(B, C, H, W)`` in [0, 1] to ``(B, hidden_size, H / 16, W / 16)``: Lite0 to stride 16, then 1x1.

    Args:
        in_channels: 1 (grey; the RGB stem is summed when ImageNet weights are loaded) or 3.
        hidden_size: token width.
    """

    def __init__(self, in_channels: int, hidden_size: int) -> None:
        super().__init__()
        import timm

        lite0 = timm.create_model("tf_efficientnet_lite0", pretrained=False, in_chans=in_channels)
        self.input_mean, self.input_std = LITE_MEAN, LITE_STD
        self.cnn = nn.Sequential(
            OrderedDict(
                conv_stem=lite0.conv_stem,
                bn1=lite0.bn1,
                blocks=nn.Sequential(*list(lite0.blocks)[:TOKENIZER_STAGES]),
            )
        )
        self.projection = nn.Conv2d(TOKENIZER_CHANNELS, hidden_size, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Token grid ``(B, hidden_size, H / 16, W / 16)``."""
        return self.projection(self.cnn((x - self.input_mean) / self.input_std))


def hybrid_vit(
    in_channels: int,
    image_size: int,
    num_classes: int,
    hidden_size: int = 192,
    mlp_dim: int = 768,
    num_layers: int = 6,
    num_heads: int = 3,
    **kwargs,
) -> ViTClassifier:
    """The hybrid ViT: :class:`EfficientNetLiteTokenizer` feeding a MONAI ViT encoder.

    Args:
        in_channels: input channels.
        image_size: input side, a multiple of 16 (the position embeddings fix the token grid).
        num_classes: output logits.
        hidden_size, mlp_dim, num_layers, num_heads: the encoder (defaults: ``vit_small``'s).
        kwargs: other :class:`~monai.networks.nets.ViT` arguments (``dropout_rate``, ``qkv_bias``...).

    Raises:
        ValueError: ``image_size`` not a multiple of 16.
    """
    if image_size % TOKENIZER_STRIDE:
        raise ValueError(
            f"image_size {image_size} must be a multiple of {TOKENIZER_STRIDE} for the hybrid ViT"
        )
    net = ViTClassifier(
        in_channels,
        image_size,
        TOKENIZER_STRIDE,
        num_classes,
        spatial_dims=2,
        hidden_size=hidden_size,
        mlp_dim=mlp_dim,
        num_layers=num_layers,
        num_heads=num_heads,
        **kwargs,
    )
    net.patch_embedding.patch_embeddings = EfficientNetLiteTokenizer(in_channels, hidden_size)
    return net


def hybrid_vit_keys(state: dict[str, torch.Tensor], network: nn.Module) -> dict[str, torch.Tensor]:
    """Map an EfficientNet-Lite0 weights file onto the hybrid's CNN; other files pass unchanged.

    The packaged file (reference layout) holds the whole Lite0: its layers beyond stride 16 (stages 5
    and 6, the head convolution and the ImageNet classifier) have no place in the hybrid and are left
    out. The projection and the encoder start fresh (see ``fresh_prefixes`` of the network spec).
    """
    if "_conv_stem.weight" not in state and "conv_stem.weight" not in state:
        return dict(state)  # a hybrid's own model.pt
    renamed = rename_lite_keys(state, LITE0_STAGE_DEPTHS, CNN_PREFIX)
    ours = network.state_dict()
    return {key: value for key, value in renamed.items() if key in ours}
