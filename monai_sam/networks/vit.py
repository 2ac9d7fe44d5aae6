"""MONAI's ViT as a plain classifier: one logits tensor out, no Tanh on the logits."""

from __future__ import annotations

import torch
from monai.networks.nets import ViT

__all__ = ["ViTClassifier"]


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
        kwargs: other :class:`~monai.networks.nets.ViT` arguments (``hidden_size``, ``mlp_dim``,
            ``num_layers``, ``num_heads``, ``dropout_rate``, ``qkv_bias``...).
    """

    def __init__(
        self,
        in_channels: int,
        img_size: int | tuple[int, ...],
        patch_size: int | tuple[int, ...],
        num_classes: int,
        spatial_dims: int = 2,
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the class logits of shape ``(batch, num_classes)``."""
        x = self.patch_embedding(x)
        cls_token = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls_token, x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return self.classification_head(x[:, 0])
