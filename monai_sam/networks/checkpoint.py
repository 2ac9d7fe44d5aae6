"""Loading a trained bundle checkpoint into its network, with errors that name the mismatch."""

from __future__ import annotations

import os

from torch import nn

from monai_sam.networks.pretrained import load_pretrained_weights

__all__ = ["load_network_checkpoint"]


def load_network_checkpoint(network: nn.Module, ckpt_path: str | os.PathLike) -> nn.Module:
    """Load the weights of a bundle checkpoint (``model.pt``) into ``network``, strictly.

    Accepts a plain state dict or a checkpoint dict with a ``model``/``state_dict`` entry, with or without
    the ``module.`` prefix of DistributedDataParallel.

    Args:
        network: the network built with the evaluation/inference settings.
        ckpt_path: the checkpoint file.

    Returns:
        ``network`` (for chaining in configs: ``"$load_network_checkpoint(@network_def, @ckpt_path)"``).

    Raises:
        FileNotFoundError: no such file (the message says how to make one).
        ValueError: a tensor of another shape or a different set of tensors; the message names the tensor
            and both shapes and reminds that ``network``, ``num_classes``, ``image_size`` and
            ``in_channels`` must equal the training run's.
    """
    path = os.fspath(ckpt_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"ckpt_path {path!r} does not exist: train first (configs/train.yaml writes output_dir/model.pt) "
            "or pass --ckpt_path"
        )
    try:
        load_pretrained_weights(network, path, strict=True)
    except ValueError as err:
        raise ValueError(
            f"checkpoint does not match the configured network: {err}. Use the training run's network, "
            "num_classes, image_size and in_channels."
        ) from err
    return network
