"""The synthetic B-mode phantom: layout, determinism, speed, and classes separable but not trivially."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from monai_sam.data import (
    DEFAULT_HASH_THRESHOLD,
    audit_dataset,
    build_datalist,
    make_phantom_dataset,
    make_site_phantom,
    perceptual_hash,
    simulate_bmode,
)
from monai_sam.data.image_hashing import hamming

KINDS = ("benign", "malignant", "normal")


def test_layout_datalist_and_determinism(tmp_path):
    out = make_phantom_dataset(tmp_path / "a", num_per_class=3, image_size=48, seed=5)
    assert sorted(p.name for p in out.iterdir()) == ["benign", "datalist.json", "malignant", "normal"]
    assert sorted(p.name for p in (out / "malignant").iterdir()) == [
        f"malignant ({i}).png" for i in (1, 2, 3)
    ]
    img = Image.open(out / "benign" / "benign (1).png")
    assert img.size == (48, 48) and img.mode == "L"
    meta = json.loads((out / "datalist.json").read_text())
    assert meta["classes"] == list(KINDS)
    assert meta["metadata"]["phantom"]["seed"] == 5
    assert len(meta["training"]) == 9
    assert len(build_datalist(out / "datalist.json")) == 9
    again = make_phantom_dataset(tmp_path / "b", num_per_class=3, image_size=48, seed=5)
    other = make_phantom_dataset(tmp_path / "c", num_per_class=3, image_size=48, seed=6)
    name = "normal/normal (2).png"
    assert (out / name).read_bytes() == (again / name).read_bytes()
    assert (out / name).read_bytes() != (other / name).read_bytes()


def test_phantom_audits_clean(tmp_path):
    out = make_phantom_dataset(tmp_path, num_per_class=40, image_size=64, seed=1, difficulty=0.8)
    report = audit_dataset(out)
    assert report.exact_duplicates == [] and report.near_duplicates == [] and report.label_conflicts == []
    assert report.counts == {"benign": 40, "malignant": 40, "normal": 40}


def test_near_duplicate_draws_are_redrawn():
    from monai_sam.data.phantom import _distinct

    image = simulate_bmode(["normal"], 64, 0.5, np.random.default_rng(0))[0]
    taken = [perceptual_hash(Image.fromarray(image))]
    redrawn = _distinct(image, "normal", 64, 0.5, np.random.default_rng(1), taken)
    assert not np.array_equal(redrawn, image)
    assert len(taken) == 2 and hamming(taken[0], taken[1]) > DEFAULT_HASH_THRESHOLD


def test_class_subset(tmp_path):
    out = make_phantom_dataset(tmp_path, num_per_class=2, image_size=32, classes=("benign", "malignant"))
    assert build_datalist(out, num_classes=2).classes == ["benign", "malignant"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"classes": ("benign", "cyst")}, "classes"),
        ({"num_per_class": 0}, "num_per_class"),
        ({"image_size": 16}, "image_size"),
        ({"difficulty": 1.5}, "difficulty"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_phantom_dataset(tmp_path, **kwargs)


def test_images_look_like_bmode():
    images = simulate_bmode(list(KINDS) * 4, 96, 0.0, np.random.default_rng(2)).astype(float)
    assert images.dtype == np.float64 and images.min() >= 0 and images.max() <= 255
    top, bottom = images[:, 10:40].mean(), images[:, -12:].mean()
    assert bottom < top  # depth attenuation
    tile = images[0, 40:70, 10:40]  # speckle: strong pixel-to-pixel variation
    assert np.abs(np.diff(tile, axis=1)).mean() > 10


def _features(image: np.ndarray) -> list[float]:
    """Features of the darkest blob in the tissue band: size, height/width, posterior change, roughness."""
    smooth = ndimage.gaussian_filter(image.astype(float) / 255, 2.0)
    s = smooth.shape[0]
    top = s // 4
    band = smooth[top : 3 * s // 4]
    dark = band < 0.5 * np.median(band)
    labels, n = ndimage.label(dark)
    if n == 0:
        return [0.0, 0.0, 0.0, 0.0, float(band.min())]
    blob = labels == np.argmax(ndimage.sum(dark, labels, range(1, n + 1))) + 1
    ys, xs = np.nonzero(blob)
    perimeter = (blob ^ ndimage.binary_erosion(blob)).sum()
    below = smooth[top + ys.max() + 1 : top + ys.max() + 1 + s // 5]
    inside = below[:, xs.min() : xs.max() + 1]
    outside = np.concatenate([below[:, : xs.min()], below[:, xs.max() + 1 :]], axis=1)
    posterior = inside.mean() - outside.mean() if inside.size and outside.size else 0.0
    height, width = np.ptp(ys) + 1, np.ptp(xs) + 1
    return [blob.sum() / dark.size, np.log(height / width), posterior, perimeter**2 / blob.sum(), band.min()]


def _accuracy(difficulty: float, seed: int = 0, n: int = 60) -> float:
    """Logistic regression on the hand features: train on n per class, test on another n per class."""
    rng = np.random.default_rng(seed)

    def sample():
        x = [_features(im) for k in KINDS for im in simulate_bmode([k] * n, 64, difficulty, rng)]
        return np.array(x), np.repeat(np.arange(3), n)

    (x_train, y_train), (x_test, y_test) = sample(), sample()
    mean, std = x_train.mean(0), x_train.std(0) + 1e-9
    design = np.c_[(x_train - mean) / std, np.ones(len(x_train))]
    weights = np.zeros((design.shape[1], 3))
    for _ in range(1500):  # softmax regression by gradient descent
        p = np.exp(design @ weights - (design @ weights).max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(len(y_train)), y_train] -= 1
        weights -= 0.5 * design.T @ p / len(y_train) + 1e-3 * weights
    scores = np.c_[(x_test - mean) / std, np.ones(len(x_test))] @ weights
    return float((scores.argmax(1) == y_test).mean())


def test_classes_separable_and_difficulty_is_monotone():
    easy, default, hard = _accuracy(0.0), _accuracy(0.5), _accuracy(1.0)
    assert easy > 0.9
    assert default > 0.65  # chance is 1/3
    assert hard < default < easy or hard < easy - 0.2
    assert hard < 0.75


def test_benign_wider_malignant_taller_with_posterior_signs():
    features = {
        k: np.array([_features(im) for im in simulate_bmode([k] * 30, 96, 0.0, np.random.default_rng(3))])
        for k in KINDS[:2]
    }
    assert np.median(features["benign"][:, 1]) < 0 < np.median(features["malignant"][:, 1])  # log(h/w)
    assert (
        np.median(features["benign"][:, 2]) > 0 > np.median(features["malignant"][:, 2])
    )  # enhancement/shadow


def test_site_phantom_is_the_phantom_redisplayed(tmp_path):
    plain = make_site_phantom(tmp_path / "plain", num_per_class=3, image_size=32, gain=1.0, gamma=1.0)
    brighter = make_site_phantom(tmp_path / "site", num_per_class=3, image_size=32, gain=1.4, gamma=0.7)
    rng = np.random.default_rng(1)
    reference = simulate_bmode(["benign"] * 3, 32, 0.5, rng)
    read = lambda folder, i: np.asarray(Image.open(folder / "benign" / f"site_benign_00{i}.png"))  # noqa: E731
    assert all(np.array_equal(read(plain, i), reference[i]) for i in range(3))
    expected = np.clip(255 * 1.4 * (reference[1] / 255.0) ** 0.7, 0, 255).round()
    assert np.array_equal(read(brighter, 1), expected.astype(np.uint8))
    rows = (brighter / "site.csv").read_text().splitlines()
    assert rows[0] == "ID,Case,Pathology,Device" and len(rows) == 7
    assert rows[1:3] == [
        "site_benign_000,b000,benign,site-B scanner 1",
        "site_benign_001,b000,benign,site-B scanner 1",
    ]
