"""Loading a trained bundle checkpoint into its network, with errors that name the mismatch."""

from __future__ import annotations

import copy
import os

from torch import nn

from monai_sam.networks.pretrained import load_pretrained_weights

__all__ = ["load_network_checkpoint", "verify_checkpoint"]


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
            f"ckpt_path {path!r} does not exist: train first (configs/train.json writes ckpt_dir/model.pt), "
            "pass --ckpt_path, or run from the bundle's folder (or give --bundle_root)"
        )
    try:
        load_pretrained_weights(network, path, strict=True)
    except ValueError as err:
        raise ValueError(
            f"checkpoint does not match the configured network: {err}. Use the training run's network, "
            "num_classes, image_size and in_channels."
        ) from err
    return network


def verify_checkpoint(network: nn.Module, ckpt_path: str | os.PathLike) -> None:
    """Check that ``ckpt_path`` exists and fits ``network`` before MONAI's ``CheckpointLoader`` loads it.

    ``CheckpointLoader`` fails inside torch (a missing file, a state-dict mismatch) with a long traceback;
    this check names the file or the mismatched tensor and the knobs to fix. ``network`` itself is left
    untouched: the weights go into a copy.

    Args:
        network: the network built with the evaluation/inference settings (not wrapped in DDP).
        ckpt_path: the checkpoint file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the checkpoint does not match ``network`` (see :func:`load_network_checkpoint`).
    """
    load_network_checkpoint(copy.deepcopy(network), ckpt_path)
