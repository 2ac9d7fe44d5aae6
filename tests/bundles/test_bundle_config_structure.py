"""How the bundle configs are built: the preprocessing written in them, what may differ between the CNN and
ViT bundles, and the torchrun overlay reusing train's ``initialize``."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from bundle_cli import BUNDLES
from monai.bundle import ConfigParser
from monai.transforms import Compose
from PIL import Image

from monai_sam.data import ultrasound_transforms

#: Ids (``#``-joined paths) in which the two bundles' train.json may differ: the network and its recipe.
CNN_VIT_DIFFERENCES = {
    "network_name",
    "lr",
    "warmup_epochs",
    "weight_decay",
    "max_norm",
    "max_epochs",
    "class_weights",
    "lr_scheduler#_target_",
    "lr_scheduler#T_max",
    "lr_scheduler#warmup_steps",
    "lr_scheduler#t_total",
    "train#handlers#0#epoch_level",
    "train#handlers#0#print_lr",
    "train#handlers#1#epoch_level",
    "train#handlers#1#print_rho",
}


def _config(bundle: str, name: str) -> dict:
    return json.loads((BUNDLES[bundle] / "configs" / f"{name}.json").read_text())


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a#b#0": leaf, ...}``: every leaf of a config under its id."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else None
    if items is None:
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(_flatten(value, f"{prefix}#{key}" if prefix else str(key)))
    return flat


def test_cnn_and_vit_train_configs_differ_only_in_the_recipe():
    cnn, vit = _flatten(_config("cnn", "train")), _flatten(_config("vit", "train"))
    differing = {key for key in cnn.keys() | vit.keys() if cnn.get(key, KeyError) != vit.get(key, KeyError)}
    assert differing == CNN_VIT_DIFFERENCES


def _parsed(bundle: str, name: str, item: str, **overrides) -> Any:
    parser = ConfigParser(_config(bundle, name))
    parser.update({"image_size": 32, **overrides})
    return parser.get_parsed_content(item)


def _apply(chain: Compose, path: str, seed: int) -> torch.Tensor:
    chain.set_random_state(seed=seed)
    return chain({"image": path})["image"]


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
@pytest.mark.parametrize(
    ("name", "item", "train"),
    [
        ("train", "train#preprocessing", True),
        ("train", "validate#preprocessing", False),
        ("inference", "preprocessing", False),
    ],
)
def test_preprocessing_in_the_configs_is_ultrasound_transforms(bundle, name, item, train, tmp_path):
    """The chain written in the configs gives what ``ultrasound_transforms`` gives, random draws included."""
    chain = _parsed(bundle, name, item)
    reference = ultrasound_transforms(
        32, train=train, in_channels=1, reader_options=_config(bundle, name)["reader_options"]
    )
    assert [type(t) for t in chain.transforms] == [type(t) for t in reference.transforms]
    assert [getattr(t, "prob", None) for t in chain.transforms] == [
        getattr(t, "prob", None) for t in reference.transforms
    ]
    image = str(tmp_path / "wide.png")  # wider than tall: the padding shows
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 40), dtype=np.uint8)).save(image)
    for seed in (0, 1, 2):
        torch.testing.assert_close(_apply(chain, image, seed), _apply(reference, image, seed))


def test_an_augmentation_probability_is_a_config_value(phantom_dir):
    flip = _parsed("cnn", "train", "train#preprocessing", **{"train#preprocessing#transforms#3#prob": 0.0})
    assert type(flip.transforms[3]).__name__ == "RandFlipd" and flip.transforms[3].prob == 0.0


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_multi_gpu_train_reuses_train_initialize(bundle):
    train, multi_gpu = _config(bundle, "train"), _config(bundle, "multi_gpu_train")
    assert "initialize" not in multi_gpu  # train's initialize resolves @device: the overlay's joins torchrun
    assert "$@device" in train["initialize"] and multi_gpu["device"] == "$monai_sam.bundle.init_distributed()"
