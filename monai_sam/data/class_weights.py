"""Class weights for the training loss, from the training list (imbalanced data: BUSI is 55 % benign).

``balanced`` weighs class ``c`` by ``N / (K * n_c)`` (scikit-learn's ``class_weight="balanced"``): every
class then contributes the same total weight to the loss, and the weighted mean weight over the
training images is 1, so the loss keeps its scale and the learning rate its meaning.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

CLASS_WEIGHT_MODES = ("balanced",)


def balanced_class_weights(labels: Iterable[int], num_classes: int) -> list[float]:
    """``N / (K * n_c)`` for every class ``c`` of ``labels`` (``N`` labels, ``K = num_classes``).

    Raises:
        ValueError: a label outside ``0..num_classes-1``, or a class with no image (its weight would
            be infinite: the training list cannot teach that class).
    """
    counts = Counter(int(label) for label in labels)
    outside = sorted(label for label in counts if not 0 <= label < num_classes)
    if outside:
        raise ValueError(f"class_weights: labels {outside} are outside 0..{num_classes - 1}")
    empty = [c for c in range(num_classes) if counts[c] == 0]
    if empty:
        raise ValueError(
            f"class_weights='balanced': class(es) {empty} have no training image, so no weight can "
            "balance them; check the datalist or give class_weights as a list"
        )
    total = sum(counts.values())
    return [total / (num_classes * counts[c]) for c in range(num_classes)]


def loss_class_weights(
    class_weights: str | Sequence[float] | None,
    training: Sequence[Mapping[str, Any]],
    num_classes: int,
    device: torch.device | str | None = None,
) -> torch.Tensor | None:
    """The ``weight`` argument of ``torch.nn.CrossEntropyLoss`` from the bundles' ``class_weights`` knob.

    Args:
        class_weights: ``None`` (unweighted), ``"balanced"`` (:func:`balanced_class_weights` of the
            training labels) or one positive weight per class.
        training: the training datalist (items with an integer ``label``).
        num_classes: number of classes of the network's output.
        device: where the loss runs (the weight must be on the logits' device).

    Returns:
        A float32 tensor of ``num_classes`` weights, or ``None`` for an unweighted loss.

    Raises:
        ValueError: an unknown mode, a list of the wrong length, or a weight that is not a positive
            finite number.
    """
    if class_weights is None:
        return None
    usage = (
        f"class_weights must be null, one of {list(CLASS_WEIGHT_MODES)} or a list of "
        f"{num_classes} weights, got {class_weights!r}"
    )
    if isinstance(class_weights, str):
        if class_weights not in CLASS_WEIGHT_MODES:
            raise ValueError(usage)
        weights = balanced_class_weights((item["label"] for item in training), num_classes)
    else:
        try:
            weights = [float(w) for w in class_weights]
        except (TypeError, ValueError) as err:
            raise ValueError(usage) from err
        if len(weights) != num_classes:
            raise ValueError(f"class_weights has {len(weights)} weights but num_classes={num_classes}")
        if not all(math.isfinite(w) and w > 0 for w in weights):
            raise ValueError(f"class_weights must be positive finite numbers, got {weights}")
    import torch  # here, not at module level: `monai-sam audit` imports monai_sam.data and starts fast

    return torch.tensor(weights, dtype=torch.float32, device=device)
