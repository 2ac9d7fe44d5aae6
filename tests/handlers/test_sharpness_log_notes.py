"""Where sharpness is logged, a negative value is explained once."""

from __future__ import annotations

import logging

import pytest
import torch

from monai_sam.handlers import sharpness_output_transform, training_scalars
from monai_sam.handlers import sharpness_stats as stats

NOTE = "sharpness = loss_perturbed - loss is negative"


@pytest.fixture
def fresh(monkeypatch):
    """A process that has not explained negative sharpness yet."""
    monkeypatch.setattr(stats, "_explained", False)


def _output(sharpness: float) -> list[dict]:
    value = torch.tensor(sharpness)
    return [{"loss": torch.tensor(1.0), "loss_perturbed": 1.0 + value, "sharpness": value}]


@pytest.mark.parametrize("transform", [training_scalars, sharpness_output_transform()])
def test_first_negative_sharpness_is_explained_once(fresh, caplog, transform):
    with caplog.at_level(logging.INFO, logger="monai_sam.handlers.sharpness_stats"):
        transform(_output(0.2))
        assert NOTE not in caplog.text  # positive: nothing to explain
        assert transform(_output(-0.03))["sharpness"] == pytest.approx(-0.03)  # the value is unchanged
        transform(_output(-0.05))
        transform(_output(float("nan")))
    assert caplog.text.count(NOTE) == 1
    assert (
        "-0.03 at this iteration" in caplog.text and "overshoots" in caplog.text and "dropout" in caplog.text
    )
