"""metadata.json agrees with the train config: the network input's spatial_shape is the default image_size."""

from __future__ import annotations

import json

import pytest
from bundle_cli import BUNDLES
from monai.bundle import ConfigParser


def default_image_size(bundle: str) -> int:
    """``image_size`` of the bundle's train config, JSON or YAML (whichever the bundle ships)."""
    configs = BUNDLES[bundle] / "configs"
    found = [configs / name for name in ("train.json", "train.yaml") if (configs / name).is_file()]
    assert found, f"no train config in {configs}"
    parser = ConfigParser()
    parser.read_config(found[0])
    return int(parser.get_parsed_content("image_size"))


@pytest.mark.parametrize("bundle", sorted(BUNDLES))
def test_spatial_shape_is_the_default_image_size(bundle):
    meta = json.loads((BUNDLES[bundle] / "configs" / "metadata.json").read_text())
    size = default_image_size(bundle)
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == [size, size]
