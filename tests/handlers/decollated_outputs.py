"""What MONAI's evaluators hand their handlers: decollated per-image outputs, for the handler tests."""

from __future__ import annotations

import torch
from monai.data import MetaTensor

CLASSES = ["benign", "malignant", "normal"]


def decollated(probs: torch.Tensor, labels: list[int], names: list[str] | None = None) -> list[dict]:
    """One dict per image: ``pred`` probabilities, integer ``label``, an ``image`` MetaTensor (``names``)."""
    names = names or [f"img{i}.png" for i in range(len(labels))]
    return [
        {
            "pred": p,
            "label": torch.tensor(y),
            "image": MetaTensor(torch.zeros(1, 2, 2), meta={"filename_or_obj": n}),
        }
        for p, y, n in zip(probs, labels, names)
    ]
