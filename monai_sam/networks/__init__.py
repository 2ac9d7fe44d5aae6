"""Classification networks by name, local pretrained weights (ImageNet, grey input), trained checkpoints."""

from monai_sam.networks.checkpoint import load_network_checkpoint, verify_checkpoint
from monai_sam.networks.efficientnet_lite import EfficientNetLite, packaged_weights_path
from monai_sam.networks.factory import (
    NetworkSpec,
    available_networks,
    build_network,
    has_packaged_weights,
    network_spec,
)
from monai_sam.networks.pretrained import (
    PretrainedReport,
    adapt_input_channels,
    load_pretrained_weights,
    read_state_dict,
)
from monai_sam.networks.vit import ViTClassifier, convolutional_tokenizer

__all__ = [
    "EfficientNetLite",
    "NetworkSpec",
    "PretrainedReport",
    "ViTClassifier",
    "adapt_input_channels",
    "available_networks",
    "build_network",
    "convolutional_tokenizer",
    "has_packaged_weights",
    "load_network_checkpoint",
    "load_pretrained_weights",
    "network_spec",
    "packaged_weights_path",
    "read_state_dict",
    "verify_checkpoint",
]
