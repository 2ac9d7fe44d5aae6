"""Loading local pretrained weights into a network, with ImageNet RGB stems adapted to grey input.

ImageNet weights expect 3 channels, while ultrasound images are grey. For a grey image ``g`` replicated
to RGB, the first convolution computes ``sum_c W[:, c] * g = (sum_c W[:, c]) * g``, so summing the RGB
kernel over its input-channel axis gives a 1-channel layer with *identical* outputs on the grey image.
(This holds on the raw replicated image; ImageNet's per-channel mean/std normalisation is not applied by
our transforms, which scale intensities to [0, 1].) Averaging instead of summing would shrink the
activations three-fold and silently mis-scale every later BatchNorm; keeping a random stem, as
name-and-shape-matching loaders do, throws the pretrained features away.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["PretrainedReport", "adapt_input_channels", "load_pretrained_weights", "read_state_dict"]

logger = logging.getLogger(__name__)

#: Keys under which checkpoints commonly nest the network weights, tried in this order.
CHECKPOINT_KEYS: tuple[str, ...] = ("model", "state_dict", "network", "net", "model_state_dict")
#: Prefixes added by DistributedDataParallel and torch.compile, stripped from the file's keys.
WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")


@dataclass
class PretrainedReport:
    """What :func:`load_pretrained_weights` did.

    Attributes:
        loaded: names of the tensors copied from the file.
        adapted: names of input-layer tensors whose channels were converted (e.g. RGB summed to grey).
        reinitialised: names of head tensors left at their fresh initialisation (shape mismatch with
            ``reinit_head=True``).
        missing: network tensors that the file does not contain.
        unexpected: file tensors that the network does not have.
    """

    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a local file, unwrapping checkpoint dicts and DDP/compile prefixes.

    Args:
        path: a ``.pt``/``.pth`` file holding a state dict, or a checkpoint dict with the weights under
            one of :data:`CHECKPOINT_KEYS` (MONAI ``CheckpointSaver`` files, Lightning-style files).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file holds no tensor dictionary.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained_path {path!r} does not exist (weights are never downloaded)")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        for key in CHECKPOINT_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"pretrained_path {path!r} holds no state dict (expected a dict of tensors, or a checkpoint "
            f"with one under {list(CHECKPOINT_KEYS)})"
        )
    state = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        state[key] = value
    return state


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Convert a first-layer kernel ``(out, c_src, *k)`` to ``in_channels`` input channels.

    RGB to grey (``c_src == 3``, ``in_channels == 1``) sums over the channel axis (exact for a grey
    image replicated to RGB, see the module docstring). Grey to ``n`` channels repeats the kernel
    divided by ``n`` (exact for an ``n``-fold replicated grey image).

    Raises:
        ValueError: any other channel combination.
    """
    c_src = weight.shape[1]
    if c_src == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    if c_src == 1:
        return weight.repeat(1, in_channels, *([1] * (weight.dim() - 2))) / in_channels
    raise ValueError(f"cannot adapt a {c_src}-channel input layer to {in_channels} channels")


def load_pretrained_weights(
    network: nn.Module,
    path: str | os.PathLike,
    *,
    input_key: str | None = None,
    head_prefixes: tuple[str, ...] = (),
    reinit_head: bool = False,
    strict: bool = True,
    rename: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    fresh_prefixes: tuple[str, ...] = (),
) -> PretrainedReport:
    """Copy the weights in a local file into ``network``.

    Args:
        network: the network to fill (modified in place).
        path: local weights file (see :func:`read_state_dict`).
        input_key: name of the first-layer weight whose input channels may differ from the file's
            (e.g. ``"conv1.weight"``); converted by :func:`adapt_input_channels`.
        head_prefixes: name prefixes of the classification head (e.g. ``("fc.",)``).
        reinit_head: if True, head tensors whose shape differs from the file's (another number of
            classes, e.g. ImageNet's 1000) keep their fresh initialisation instead of raising.
        strict: if True, tensors missing from the file or unknown to the network raise; otherwise they
            are logged as warnings. Head tensors skipped through ``reinit_head`` never count as missing.
        rename: maps the file's tensor names to the network's (a file in another library's layout).
        fresh_prefixes: name prefixes of network parts that the file need not hold (e.g. a transformer
            put on a pretrained CNN): absent, they keep their initialisation and do not count as missing.

    Returns:
        a :class:`PretrainedReport`.

    Raises:
        ValueError: a tensor's shape differs (naming it and both shapes), no tensor matches at all, or
            ``strict`` and keys are missing/unexpected.
    """
    source = read_state_dict(path)
    if rename is not None:
        source = rename(source)
    target = network.state_dict()
    report = PretrainedReport()
    new_state: dict[str, torch.Tensor] = {}
    for name, param in target.items():
        if name not in source:
            if not name.startswith(fresh_prefixes):
                report.missing.append(name)
            continue
        value = source[name]
        if value.shape != param.shape and name == input_key and _only_channels_differ(value, param):
            value = adapt_input_channels(value, param.shape[1])
            report.adapted.append(name)
        if value.shape != param.shape:
            if reinit_head and name.startswith(tuple(head_prefixes)):
                report.reinitialised.append(name)
                continue
            hint = (
                " (a classification head: pass reinit_head=True to start it fresh)"
                if name.startswith(tuple(head_prefixes)) and head_prefixes
                else ""
            )
            raise ValueError(
                f"weights {os.fspath(path)!r} do not fit the network: tensor {name!r} has shape "
                f"{tuple(value.shape)} in the file but {tuple(param.shape)} in the network{hint}"
            )
        new_state[name] = value.to(dtype=param.dtype)
        report.loaded.append(name)
    report.unexpected = [k for k in source if k not in target]
    if not report.loaded:
        raise ValueError(
            f"no tensor of {os.fspath(path)!r} matches the network by name: is it for another architecture? "
            f"file keys start with {list(source)[:3]}, network keys with {list(target)[:3]}"
        )
    _check_keys(report, path, strict)
    network.load_state_dict(new_state, strict=False)
    logger.info(
        "loaded %d tensors from %s (adapted input: %s, reinitialised head: %s)",
        len(report.loaded),
        os.fspath(path),
        report.adapted or "none",
        report.reinitialised or "none",
    )
    return report


def _only_channels_differ(source: torch.Tensor, target: torch.Tensor) -> bool:
    """True for two conv kernels that differ only in their input-channel axis (dim 1)."""
    if source.dim() != target.dim() or source.dim() < 3:
        return False
    return source.shape[0] == target.shape[0] and source.shape[2:] == target.shape[2:]


def _check_keys(report: PretrainedReport, path: str | os.PathLike, strict: bool) -> None:
    """Raise (``strict``) or warn about missing and unexpected tensors."""
    if not report.missing and not report.unexpected:
        return
    message = (
        f"weights {os.fspath(path)!r}: {len(report.missing)} network tensors missing from the file "
        f"{report.missing[:8]}, {len(report.unexpected)} file tensors unknown to the network "
        f"{report.unexpected[:8]}"
    )
    if strict:
        raise ValueError(message + " (pass strict=False to load the matching tensors only)")
    logger.warning(message)
