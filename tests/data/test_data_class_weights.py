"""Class weights of the training loss: the balanced closed form, the loss it gives, clear errors."""

from __future__ import annotations

import pytest
import torch

from monai_sam.data import balanced_class_weights, loss_class_weights


def test_balanced_weights_worked_example():
    # 6 benign, 3 malignant, 1 normal: N / (K n_c) = 10/18, 10/9, 10/3.
    labels = [0] * 6 + [1] * 3 + [2]
    assert balanced_class_weights(labels, 3) == pytest.approx([10 / 18, 10 / 9, 10 / 3])


def test_balanced_loss_is_the_mean_of_the_per_class_mean_losses():
    # The reason for the formula: with these weights, CrossEntropyLoss (weighted mean) gives every class the
    # same say, whatever its size. The reference is computed from unweighted per-image losses.
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0] * 9 + [1] * 4 + [2] * 2)
    logits = torch.randn(len(labels), 3, generator=gen)
    items = [{"image": f"{i}.png", "label": int(y)} for i, y in enumerate(labels)]
    weight = loss_class_weights("balanced", items, 3)
    weighted = torch.nn.CrossEntropyLoss(weight=weight)(logits, labels)
    per_image = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    class_means = torch.stack([per_image[labels == c].mean() for c in range(3)])
    torch.testing.assert_close(weighted, class_means.mean())
    # ... and the mean weight over the training images is 1: the loss keeps its scale.
    torch.testing.assert_close(weight[labels].mean(), torch.tensor(1.0))


def test_none_and_explicit_weights():
    items = [{"label": 0}, {"label": 1}]
    assert loss_class_weights(None, items, 2) is None
    weight = loss_class_weights([1, 2.5], items, 2, device="cpu")
    assert weight.dtype == torch.float32 and weight.tolist() == [1.0, 2.5]


@pytest.mark.parametrize(
    ("class_weights", "labels", "message"),
    [
        ("balanced", [0, 0, 1], r"class\(es\) \[2\] have no training image"),
        ("balanced", [0, 1, 3], r"labels \[3\] are outside 0..2"),
        ("inverse", [0, 1, 2], "class_weights must be null, one of \\['balanced'\\]"),
        ([1.0, 2.0], [0, 1, 2], "class_weights has 2 weights but num_classes=3"),
        ([1.0, 0.0, 2.0], [0, 1, 2], "must be positive finite numbers"),
        ([1.0, float("nan"), 2.0], [0, 1, 2], "must be positive finite numbers"),
        (True, [0, 1, 2], "class_weights must be null"),
    ],
)
def test_bad_class_weights_are_named(class_weights, labels, message):
    with pytest.raises(ValueError, match=message):
        loss_class_weights(class_weights, [{"label": y} for y in labels], 3)
