"""The ultrasound transform chain: one channel layout for every mode, H-first orientation, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset
from PIL import Image

from monai_sam.data import (
    LoadUltrasoundImaged,
    RandDepthAttenuationd,
    RandGaind,
    RandSpeckleNoised,
    load_ultrasound_image,
    ultrasound_transforms,
)


def _marked_image(path, mode):
    """A 30x50 (H x W) black image with a white pixel at row 2, column 40."""
    array = np.zeros((30, 50), dtype=np.uint8)
    array[2, 40] = 255
    img = Image.fromarray(array, "L")
    (img if mode == "L" else img.convert(mode)).save(path)
    return path


@pytest.mark.parametrize(
    ("name", "mode"),
    [("a.png", "L"), ("b.png", "RGB"), ("c.png", "RGBA"), ("d.bmp", "RGB"), ("e.tif", "L"), ("f.png", "P")],
)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_loader_layout_orientation_and_range(tmp_path, name, mode, in_channels):
    path = _marked_image(tmp_path / name, mode)
    out = LoadUltrasoundImaged("image", in_channels=in_channels)({"image": str(path), "label": 1})
    image = out["image"]
    assert image.shape == (in_channels, 30, 50)  # (C, H, W): not PILReader's (W, H)
    assert image.dtype == torch.float32
    assert float(image.min()) == 0.0 and float(image.max()) == pytest.approx(1.0)
    assert float(image[0, 2, 40]) == pytest.approx(1.0)
    assert out["label"] == 1
    assert image.meta["filename_or_obj"] == str(path)


def test_jpeg_and_16_bit(tmp_path):
    Image.fromarray(np.full((20, 40), 200, np.uint8)).save(tmp_path / "x.jpg")
    assert load_ultrasound_image(str(tmp_path / "x.jpg")).mean() == pytest.approx(200 / 255, abs=0.02)
    deep = np.zeros((20, 40), np.uint16)
    deep[5, 5] = 40000
    deep[6, 6] = 20000
    Image.fromarray(deep).save(tmp_path / "deep.png")
    loaded = load_ultrasound_image(str(tmp_path / "deep.png"))
    assert loaded.shape == (1, 20, 40)
    assert loaded[0, 5, 5] == pytest.approx(1.0) and loaded[0, 6, 6] == pytest.approx(0.5)


def test_unreadable_file_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"bad\.png"):
        load_ultrasound_image(str(bad))
    with pytest.raises(ValueError, match="in_channels"):
        LoadUltrasoundImaged("image", in_channels=2)


def test_resize_keeps_aspect_and_pads(tmp_path):
    array = np.full((40, 80), 255, np.uint8)  # wide white image
    Image.fromarray(array).save(tmp_path / "wide.png")
    image = ultrasound_transforms(64, train=False)({"image": str(tmp_path / "wide.png")})["image"]
    assert image.shape == (1, 64, 64)
    rows = image[0].mean(dim=1)
    assert torch.allclose(rows[16:48], torch.ones(32), atol=1e-3)  # content 32 rows tall: aspect 2:1 kept
    assert float(rows[:15].max()) < 0.05 and float(rows[49:].max()) < 0.05  # zero padding above and below
    assert type(image) is not np.ndarray


def test_mixed_modes_collate_in_a_dataloader(tmp_path):
    paths = [_marked_image(tmp_path / f"{i}.png", mode) for i, mode in enumerate(["L", "RGB", "RGBA"])]
    items = [{"image": str(p), "label": i} for i, p in enumerate(paths)]
    for train in (False, True):
        loader = DataLoader(Dataset(items, ultrasound_transforms(32, train=train)), batch_size=3)
        batch = next(iter(loader))
        assert batch["image"].shape == (3, 1, 32, 32)
        assert batch["image"].dtype == torch.float32
        assert batch["label"].tolist() == [0, 1, 2]


def test_train_chain_is_deterministic_per_seed_and_flips_left_right_only(tmp_path):
    path = _marked_image(tmp_path / "m.png", "L")
    item = {"image": str(path)}
    chain = ultrasound_transforms(32, train=True)
    chain.set_random_state(3)
    first = [chain(item)["image"] for _ in range(3)]
    chain.set_random_state(3)
    second = [chain(item)["image"] for _ in range(3)]
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    flips = [t for t in chain.transforms if type(t).__name__ == "RandFlipd"]
    assert len(flips) == 1 and flips[0].flipper.spatial_axis == 1  # W axis of (C, H, W): left-right


def test_eval_chain_has_no_randomness(tmp_path):
    path = _marked_image(tmp_path / "m.png", "L")
    chain = ultrasound_transforms(32, train=False)
    assert torch.equal(chain({"image": str(path)})["image"], chain({"image": str(path)})["image"])


def _flat(value=0.5, shape=(1, 16, 16)):
    return {"image": torch.full(shape, value)}


def test_rand_gain_scales_and_clips():
    gain = RandGaind("image", prob=1.0, gain_range=(1.5, 1.5))
    assert torch.allclose(gain(_flat(0.5))["image"], torch.full((1, 16, 16), 0.75))
    assert float(gain(_flat(0.9))["image"].max()) == 1.0
    assert torch.equal(RandGaind("image", prob=0.0)(_flat())["image"], _flat()["image"])


def test_speckle_noise_is_multiplicative():
    noise = RandSpeckleNoised("image", prob=1.0, std_range=(0.2, 0.2))
    noise.set_random_state(0)
    out = noise({"image": torch.cat([torch.zeros(1, 32, 32), torch.full((1, 32, 32), 0.5)])})["image"]
    assert float(out[0].abs().max()) == 0.0  # dark (anechoic) regions stay dark
    assert 0.05 < float(out[1].std()) < 0.15
    assert float(out[1].mean()) == pytest.approx(0.5, abs=0.05)


def test_depth_attenuation_darkens_with_depth():
    att = RandDepthAttenuationd("image", prob=1.0, max_attenuation=1.0)
    att.set_random_state(1)
    out = att(_flat(0.5, (1, 20, 10)))["image"][0]
    assert float(out[0].mean()) == pytest.approx(0.5)
    assert float(out[-1].mean()) < float(out[0].mean())
    assert torch.all(out[1:, 0] <= out[:-1, 0])


def test_bad_image_size():
    with pytest.raises(ValueError, match="image_size"):
        ultrasound_transforms(4, train=False)


def test_squash_fills_the_square_and_pad_keeps_the_aspect(tmp_path):
    Image.fromarray(np.full((80, 40), 200, np.uint8)).save(tmp_path / "tall.png")  # portrait, like BUS-BRA
    item = {"image": str(tmp_path / "tall.png")}
    squashed = ultrasound_transforms(32, train=False, resize="squash")(item)["image"]
    padded = ultrasound_transforms(32, train=False)(item)["image"]
    assert squashed.shape == padded.shape == (1, 32, 32)
    assert float(squashed.min()) > 0.7  # every column holds image
    columns = padded[0].mean(dim=0)
    assert (
        float(columns[:7].max()) < 0.05 and float(columns[9:23].min()) > 0.7
    )  # 16 columns of image, centred


def test_intensity_modes_stretch_each_image(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(60, 120, (32, 32), dtype=np.uint8)).save(
        tmp_path / "dull.png"
    )  # low contrast
    item = {"image": str(tmp_path / "dull.png")}
    plain = ultrasound_transforms(32, train=False)(item)["image"]
    stretched = ultrasound_transforms(32, train=False, intensity="percentile")(item)["image"]
    equalised = ultrasound_transforms(32, train=False, intensity="histogram")(item)["image"]
    assert float(plain.max()) < 0.5
    assert float(stretched.min()) == 0.0 and float(stretched.max()) == 1.0
    np.testing.assert_allclose(np.quantile(stretched.numpy(), [0.01, 0.99]), [0.0, 1.0], atol=0.02)
    assert abs(float(equalised.mean()) - 0.5) < 0.05 and float(equalised.max()) == pytest.approx(1.0)


def test_augmentation_choices(tmp_path):
    names = {
        mode: [type(t).__name__ for t in ultrasound_transforms(32, train=True, augmentation=mode).transforms]
        for mode in ("standard", "flip", "scanner")
    }
    assert names["flip"] == ["LoadUltrasoundImaged", "Resized", "SpatialPadd", "RandFlipd", "EnsureTyped"]
    assert "RandGaussianSmoothd" in names["scanner"] and "RandGaussianSmoothd" not in names["standard"]
    assert names["standard"][3:5] == ["RandFlipd", "RandAffined"]
    assert ultrasound_transforms(32, train=False, augmentation="scanner").transforms[
        -1
    ].__class__.__name__ == ("EnsureTyped")  # evaluation never augments


@pytest.mark.parametrize(
    ("key", "value"), [("resize", "crop"), ("intensity", "zscore"), ("augmentation", "x")]
)
def test_unknown_choices_are_named(key, value):
    with pytest.raises(ValueError, match=rf"{key} must be one of"):
        ultrasound_transforms(32, train=False, **{key: value})
