"""MONAI's ViT as a plain classifier: one logits tensor out, no Tanh on the logits.

``conv_stem=True`` replaces the single patchifying convolution by a small convolutional stem
(Xiao et al., "Early convolutions help transformers see better", NeurIPS 2021): ``log2(patch)`` 3x3
stride-2 convolutions with BatchNorm and ReLU, then a 1x1 projection to the hidden size. It yields the
same tokens (one per ``patch x patch`` cell) to the same transformer encoder, so the network stays a
ViT; the stem only gives the tokeniser the locality prior that small data sets cannot teach it.
"""

from __future__ import annotations

import torch
from monai.networks.nets import ViT
from torch import nn

__all__ = ["ViTClassifier", "convolutional_tokenizer"]


def convolutional_tokenizer(in_channels: int, hidden_size: int, patch_size: int) -> nn.Sequential:
    """The convolutional tokeniser: ``(B, C, H, W)`` to ``(B, hidden_size, H / patch, W / patch)``.

    Args:
        in_channels: input channels.
        hidden_size: token width of the ViT.
        patch_size: a power of two >= 2 (one stride-2 stage per factor of two).

    Raises:
        ValueError: ``patch_size`` is not a power of two >= 2.
    """
    if patch_size < 2 or patch_size & (patch_size - 1):
        raise ValueError(
            f"convolutional_tokenizer needs a patch_size that is a power of two >= 2, got {patch_size}"
        )
    stages = patch_size.bit_length() - 1
    # Widths double per stage and end at hidden_size / 2 before the 1x1 projection (as in ViT_C).
    widths = [max(hidden_size // 2 ** (stages - i), 16) for i in range(stages)]
    layers: list[nn.Module] = []
    previous = in_channels
    for width in widths:
        layers += [
            nn.Conv2d(previous, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        previous = width
    layers.append(nn.Conv2d(previous, hidden_size, 1))
    return nn.Sequential(*layers)


class ViTClassifier(ViT):
    """MONAI :class:`~monai.networks.nets.ViT` in classification mode that returns only the logits.

    MONAI's ViT returns ``(logits, hidden_states)`` and applies ``Tanh`` to the logits by default; both
    break a cross-entropy loss, ``verify_net_in_out`` and the metric handlers. This subclass fixes
    ``classification=True`` and ``post_activation=None`` and keeps the parameter names of MONAI's ViT,
    so MONAI ViT state dicts load unchanged. It is TorchScript-scriptable.

    Args:
        in_channels: number of input channels.
        img_size: input size (int or one per spatial dim); the ViT only accepts this size.
        patch_size: patch size (int or per dim); must divide ``img_size``.
        num_classes: number of output logits.
        spatial_dims: 2 for images.
        conv_stem: tokenise with :func:`convolutional_tokenizer` instead of one patch-sized convolution (2-D,
            square power-of-two patches).
        kwargs: other :class:`~monai.networks.nets.ViT` arguments (``hidden_size``, ``mlp_dim``,
            ``num_layers``, ``num_heads``, ``dropout_rate``, ``qkv_bias``...).

    Raises:
        ValueError: ``conv_stem`` with a patch that is not a square power of two, or not 2-D.
    """

    def __init__(
        self,
        in_channels: int,
        img_size: int | tuple[int, ...],
        patch_size: int | tuple[int, ...],
        num_classes: int,
        spatial_dims: int = 2,
        conv_stem: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            img_size=img_size,
            patch_size=patch_size,
            num_classes=num_classes,
            spatial_dims=spatial_dims,
            classification=True,
            post_activation=None,
            **kwargs,
        )
        if conv_stem:
            patch = {patch_size} if isinstance(patch_size, int) else set(patch_size)
            if spatial_dims != 2 or len(patch) != 1:
                raise ValueError(
                    f"conv_stem needs a 2-D ViT with a square patch, got patch_size={patch_size}"
                )
            # PatchEmbeddingBlock flattens whatever this module returns into tokens and adds positions.
            self.patch_embedding.patch_embeddings = convolutional_tokenizer(
                in_channels, self.cls_token.shape[-1], patch.pop()
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the class logits of shape ``(batch, num_classes)``."""
        x = self.patch_embedding(x)
        cls_token = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls_token, x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return self.classification_head(x[:, 0])
