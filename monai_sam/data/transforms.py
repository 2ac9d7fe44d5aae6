"""MONAI dictionary transforms for 2-D B-mode ultrasound and the standard chain built from them.

Layout: every image becomes a float32 ``(C, H, W)`` tensor in numpy/PIL orientation (H = depth, the transducer
at the top), with values in [0, 1]. Grayscale, RGB, RGBA, palette and 16-bit files are all accepted and
converted to ``in_channels`` (1: grayscale; 3: grayscale replicated, for ImageNet-style networks). DICOM and
NIfTI files are read by :func:`monai_sam.data.image_reading.open_image` (frame, slice and region-crop
options in ``reader_options``) and then converted by the same code as PNG files.

Augmentations follow what ultrasound-specific packages offer (USAugment: depth attenuation, gain, speckle,
shadows) while keeping the acquisition geometry: left-right flips only (never up-down, the transducer stays at
the top), small rotations and zooms, gain and contrast changes, multiplicative speckle-like noise.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    EnsureTyped,
    HistogramNormalized,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianSmoothd,
    RandomizableTransform,
    Resized,
    ScaleIntensityRangePercentilesd,
    SpatialPadd,
)
from scipy.ndimage import gaussian_filter

from monai_sam.data.image_reading import ReadOptions, open_image

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def load_ultrasound_image(
    path: str, in_channels: int = 1, reader_options: ReadOptions | Mapping[str, Any] | None = None
) -> np.ndarray:
    """Read an image file as a float32 ``(C, H, W)`` array in [0, 1].

    8-bit images are divided by 255; 16-bit images are scaled by their own maximum; float images (DICOM
    and NIfTI data other than 8-bit, already in [0, 1]) are clipped to [0, 1]. Colour images become
    grayscale (``in_channels=1``, PIL's ITU-R 601-2 luma) or RGB (``in_channels=3``, alpha dropped).

    Args:
        path: PNG, JPEG, BMP, TIFF, DICOM or NIfTI file.
        in_channels: 1 or 3.
        reader_options: DICOM frame, NIfTI slice and ultrasound-region crop
            (:class:`~monai_sam.data.image_reading.ReadOptions`).

    Raises:
        ValueError: the file cannot be decoded (the message names it) or ``in_channels`` is not 1 or 3.
    """
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
    img = open_image(path, reader_options).image
    if img.mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(img, dtype=np.float32)
        gray = gray / max(float(gray.max()), 1.0) if img.mode != "F" else np.clip(gray, 0, 1)
        array = gray[None]
    else:
        converted = img.convert("L" if in_channels == 1 else "RGB")
        array = np.asarray(converted, dtype=np.float32) / 255.0
        array = array[None] if in_channels == 1 else array.transpose(2, 0, 1)
    if array.shape[0] != in_channels:
        array = np.repeat(array, in_channels, axis=0)
    return np.ascontiguousarray(array)


class LoadUltrasoundImaged(MapTransform):
    """Load image files into ``(C, H, W)`` float32 MetaTensors in [0, 1], one fixed channel layout.

    Unlike ``LoadImaged`` with ``PILReader`` (which returns (W, H) and keeps the file's mode), this gives
    numpy/PIL orientation and converts every file to ``in_channels`` channels, so mixed L/RGB/RGBA data
    sets collate.

    The MetaTensor's metadata holds only the file path and the spatial shape: no header of a DICOM or
    NIfTI file is carried along (it may hold patient data).

    Args:
        keys: keys holding file paths.
        in_channels: 1 (grayscale) or 3 (grayscale or colour as RGB).
        allow_missing_keys: do not fail when a key is absent.
        reader_options: DICOM frame, NIfTI slice and ultrasound-region crop
            (:class:`~monai_sam.data.image_reading.ReadOptions`, or a mapping of its fields).
    """

    def __init__(
        self,
        keys: KeysCollection,
        in_channels: int = 1,
        allow_missing_keys: bool = False,
        reader_options: ReadOptions | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.in_channels = in_channels
        self.reader_options = ReadOptions.coerce(reader_options)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            array = load_ultrasound_image(path, self.in_channels, self.reader_options)
            meta = {"filename_or_obj": path, "spatial_shape": np.array(array.shape[1:])}
            d[key] = MetaTensor(torch.from_numpy(array), meta=meta)
        return d


class _RandIntensityd(RandomizableTransform, MapTransform):
    """Base of the random intensity transforms: one random draw per call, applied to every key."""

    def __init__(self, keys: KeysCollection, prob: float, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first = next(iter(self.key_iterator(d)), None)
        self.randomize(d[first] if first is not None else None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            image = d[key] if isinstance(d[key], torch.Tensor) else torch.as_tensor(d[key])
            d[key] = self._apply(image)
        return d

    def _apply(self, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class RandGaind(_RandIntensityd):
    """Multiply the image by a random overall gain (the scanner's gain knob), clipped to [0, 1].

    Args:
        keys: image keys.
        prob: probability of applying.
        gain_range: (low, high) range of the multiplicative gain.
        allow_missing_keys: do not fail when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        gain_range: Sequence[float] = (0.8, 1.25),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob, allow_missing_keys)
        self.gain_range = (float(gain_range[0]), float(gain_range[1]))
        self.gain = 1.0

    def randomize(self, data: Any = None) -> None:
        """Draw whether to apply and the gain."""
        super().randomize(None)
        self.gain = float(self.R.uniform(*self.gain_range))

    def _apply(self, image: torch.Tensor) -> torch.Tensor:
        return torch.clamp(image * self.gain, 0.0, 1.0)


class RandSpeckleNoised(_RandIntensityd):
    """Multiplicative, spatially correlated noise ``x * (1 + std * n)``, like ultrasound speckle.

    ``n`` is unit-variance Gaussian noise smoothed with a Gaussian of ``correlation`` pixels (speckle grains
    are a few pixels wide), so bright tissue gets more noise than dark fluid, as in real B-mode images.

    Args:
        keys: image keys.
        prob: probability of applying.
        std_range: (low, high) range of the relative noise level.
        correlation: smoothing sigma in pixels (0: white noise).
        allow_missing_keys: do not fail when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.3,
        std_range: Sequence[float] = (0.05, 0.2),
        correlation: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob, allow_missing_keys)
        self.std_range = (float(std_range[0]), float(std_range[1]))
        self.correlation = float(correlation)
        self.std = 0.0
        self.noise_seed = 0

    def randomize(self, data: Any = None) -> None:
        """Draw whether to apply, the noise level and the noise field's seed."""
        super().randomize(None)
        self.std = float(self.R.uniform(*self.std_range))
        self.noise_seed = int(self.R.randint(0, 2**31 - 1))

    def _apply(self, image: torch.Tensor) -> torch.Tensor:
        rng = np.random.default_rng(self.noise_seed)
        noise = rng.standard_normal(tuple(image.shape[-2:]))
        if self.correlation > 0:
            noise = gaussian_filter(noise, self.correlation)
            noise /= max(float(noise.std()), 1e-8)
        factor = torch.as_tensor(
            np.clip(1.0 + self.std * noise, 0.0, None), dtype=image.dtype, device=image.device
        )
        return torch.clamp(image * factor, 0.0, 1.0)


class RandDepthAttenuationd(_RandIntensityd):
    """Darken the image with depth (rows) as ``exp(-a * depth)``, like uncompensated tissue attenuation.

    Args:
        keys: image keys in ``(C, H, W)`` layout with the transducer at row 0.
        prob: probability of applying.
        max_attenuation: largest ``a``; at the bottom row the image is multiplied by ``exp(-a)``.
        allow_missing_keys: do not fail when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.3,
        max_attenuation: float = 0.7,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob, allow_missing_keys)
        self.max_attenuation = float(max_attenuation)
        self.attenuation = 0.0

    def randomize(self, data: Any = None) -> None:
        """Draw whether to apply and the attenuation."""
        super().randomize(None)
        self.attenuation = float(self.R.uniform(0.0, self.max_attenuation))

    def _apply(self, image: torch.Tensor) -> torch.Tensor:
        depth = torch.linspace(0.0, 1.0, image.shape[-2], dtype=image.dtype, device=image.device)
        return image * torch.exp(-self.attenuation * depth)[:, None]


#: Choices of :func:`ultrasound_transforms` (measured across sites in docs/study.md; the defaults come first).
RESIZE_MODES = ("pad", "squash")
INTENSITY_MODES = ("none", "percentile", "histogram")
AUGMENTATIONS = ("standard", "flip", "scanner")


def ultrasound_transforms(
    image_size: int | Sequence[int],
    train: bool,
    in_channels: int = 1,
    keys: Sequence[str] = ("image",),
    reader_options: ReadOptions | Mapping[str, Any] | None = None,
    resize: str = "pad",
    intensity: str = "none",
    augmentation: str = "standard",
) -> Compose:
    """The standard chain: load, aspect-preserving resize and pad, train-time augmentation, float32.

    The bundles write the default chain out in their configs (``train#preprocessing``,
    ``validate#preprocessing``, inference's ``preprocessing``), so that each probability and range is a config
    value; tests/bundles/test_bundle_config_structure.py keeps the two identical.

    The longer side is resized to ``image_size`` (anti-aliased) and the shorter one zero-padded
    symmetrically, so lesion shape (taller-than-wide is a malignancy sign) is never distorted. The other
    choices are the alternatives measured on another hospital's images (docs/study.md, "Preprocessing
    across sites"); the defaults are what was kept.

    Args:
        image_size: output side (int) or (H, W).
        train: add the random augmentations.
        in_channels: 1 (grayscale) or 3 (grayscale replicated / RGB).
        keys: keys holding image file paths (a ``label`` key passes through unchanged).
        reader_options: DICOM frame, NIfTI slice and ultrasound-region crop
            (:class:`~monai_sam.data.image_reading.ReadOptions`; the bundles' ``reader_options`` knob).
        resize: ``pad`` (aspect-preserving, zero-padded) or ``squash`` (both sides resized to the size).
        intensity: ``none`` (the file's [0, 1] intensities), ``percentile`` (each image's 1st-99th
            percentile stretched to [0, 1]) or ``histogram`` (each image's histogram equalised).
        augmentation: ``standard`` (left-right flip, small rotation and zoom, gain, contrast, depth
            attenuation, speckle), ``flip`` (the flip only) or ``scanner`` (stronger gain, contrast,
            attenuation and speckle ranges plus Gaussian blur, aimed at differences between scanners).

    Returns:
        A ``Compose``; items ``{"image": path[, "label": int]}`` become ``{"image": (C, H, W) float32, ...}``.

    Raises:
        ValueError: a size below 8 pixels or an unknown choice (the message lists the choices).
    """
    size = (int(image_size), int(image_size)) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or min(size) < 8:
        raise ValueError(f"image_size must be an int or (H, W) of at least 8 pixels, got {image_size}")
    for name, value, choices in (
        ("resize", resize, RESIZE_MODES),
        ("intensity", intensity, INTENSITY_MODES),
        ("augmentation", augmentation, AUGMENTATIONS),
    ):
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    keys = list(keys)
    chain: list[Any] = [LoadUltrasoundImaged(keys, in_channels=in_channels, reader_options=reader_options)]
    chain += _resize(keys, size, resize) + _intensity(keys, intensity)
    if train:
        chain += _augmentation(keys, augmentation)
    chain.append(EnsureTyped(keys, data_type="tensor", dtype=torch.float32))
    return Compose(chain)


def _resize(keys: list[str], size: tuple[int, ...], mode: str) -> list[Any]:
    if mode == "squash":
        return [Resized(keys, spatial_size=size, mode="bilinear", anti_aliasing=True)]
    return [
        Resized(keys, spatial_size=max(size), size_mode="longest", mode="bilinear", anti_aliasing=True),
        SpatialPadd(keys, spatial_size=size, mode="constant"),
    ]


def _intensity(keys: list[str], mode: str) -> list[Any]:
    if mode == "percentile":
        return [ScaleIntensityRangePercentilesd(keys, lower=1, upper=99, b_min=0.0, b_max=1.0, clip=True)]
    if mode == "histogram":
        return [HistogramNormalized(keys, num_bins=256, min=0, max=1)]
    return []


def _augmentation(keys: list[str], mode: str) -> list[Any]:
    flip = RandFlipd(keys, prob=0.5, spatial_axis=1)  # left-right only: W is axis 1 of (H, W)
    if mode == "flip":
        return [flip]
    affine = RandAffined(
        keys,
        prob=0.5,
        rotate_range=math.radians(10),
        scale_range=(0.1, 0.1),
        mode="bilinear",
        padding_mode="zeros",
    )
    if mode == "scanner":
        return [
            flip,
            affine,
            RandGaind(keys, prob=0.8, gain_range=(0.6, 1.6)),
            RandAdjustContrastd(keys, prob=0.5, gamma=(0.6, 1.6)),
            RandDepthAttenuationd(keys, prob=0.3, max_attenuation=0.7),
            RandSpeckleNoised(keys, prob=0.5, std_range=(0.05, 0.3)),
            RandGaussianSmoothd(keys, prob=0.3, sigma_x=(0.25, 1.5), sigma_y=(0.25, 1.5)),
        ]
    return [
        flip,
        affine,
        RandGaind(keys, prob=0.5, gain_range=(0.8, 1.25)),
        RandAdjustContrastd(keys, prob=0.3, gamma=(0.8, 1.25)),
        RandDepthAttenuationd(keys, prob=0.2, max_attenuation=0.5),
        RandSpeckleNoised(keys, prob=0.3, std_range=(0.05, 0.2)),
    ]
