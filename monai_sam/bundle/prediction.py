"""Class probabilities of a network on a list of images, through the bundle's evaluation transforms.

One loop serves every evaluation outside an Ignite evaluator: the study's training/test metrics and the
external test sets of ``evaluate.json`` and the study. It does what the bundles' evaluators do: eval mode,
no gradients, the given (validation) preprocessing, a softmax over the network output, and autocast
only where MONAI's ``SupervisedEvaluator`` applies it (``amp`` on a CUDA device).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["predict_probabilities"]


def _plain(x: Any) -> torch.Tensor:
    """A plain tensor from a MONAI MetaTensor (or a tensor)."""
    as_tensor = getattr(x, "as_tensor", None)
    return as_tensor() if callable(as_tensor) else torch.as_tensor(x)


def predict_probabilities(
    network: torch.nn.Module,
    items: Sequence[dict[str, Any]],
    transform: Callable,
    batch_size: int = 16,
    num_workers: int = 0,
    amp: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities and labels of ``items`` in their order.

    Args:
        network: the network (its device is the first parameter's); it is put in eval mode.
        items: ``{"image": path, "label": int}`` dictionaries.
        transform: the evaluation preprocessing (the bundle's ``validate#preprocessing``).
        batch_size: images per batch.
        num_workers: DataLoader workers.
        amp: autocast the forward pass on a CUDA device (as the evaluators' ``amp``).

    Returns:
        ``(probs (n, C) float32, labels (n,) int64)``; empty arrays for no items.
    """
    from monai.data import DataLoader, Dataset

    if not items:
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
    device = next(network.parameters()).device
    network.eval()
    loader = DataLoader(
        Dataset(list(items), transform=transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
    )
    probs, labels = [], []
    with torch.no_grad(), torch.autocast("cuda", enabled=bool(amp) and device.type == "cuda"):
        for batch in loader:
            out = network(_plain(batch["image"]).to(device))
            logits = out[0] if isinstance(out, (tuple, list)) else out
            probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
            labels.append(_plain(batch["label"]).reshape(-1).cpu().numpy())
    return np.concatenate(probs), np.concatenate(labels).astype(np.int64)
