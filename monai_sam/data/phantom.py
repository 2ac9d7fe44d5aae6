"""A synthetic B-mode breast-ultrasound phantom: the built-in data set for demos, bundles and tests.

Each image is simulated in a few vectorised numpy steps:

1. an echogenicity map of tissue layers (skin, hypoechoic fat with Cooper's ligaments, textured
   fibroglandular tissue, striated pectoral muscle) with wavy boundaries and fat lobules;
2. a lesion: benign = oval, wider than tall, smooth and sharp margin, posterior acoustic enhancement;
   malignant = irregular and spiculated, taller than wide, blurred margin with an echogenic halo,
   posterior acoustic shadowing; normal = no lesion;
3. speckle: complex Gaussian scatterers weighted by the echogenicity, convolved with an anisotropic
   point-spread function (FFT), envelope-detected; depth attenuation with partial gain compensation;
   log compression to 8 bits.

``difficulty`` (0..1) blends the class-specific shape, margin and posterior features towards one
ambiguous middle, lowers lesion contrast and size, and adds lesion-like fat lobules, so classifiers
learn the task well above chance but not perfectly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from monai_sam.data.image_hashing import DEFAULT_HASH_THRESHOLD, hamming, perceptual_hash

#: Bump when the generator changes, so cached phantoms are regenerated.
PHANTOM_VERSION = 2
PHANTOM_CLASSES: tuple[str, ...] = ("benign", "malignant", "normal")
_CHUNK = 32  # images simulated together; bounds memory at about 40 MB for 128 px

# Class-specific lesion parameters (benign, malignant) and the ambiguous middle they blend to.
# aspect = width / height; harmonics/spicules = boundary irregularity; margin = edge width (fraction of
# radius); posterior = relative brightness change below the lesion; halo = echogenic rim.
_LESION = {
    "aspect": (1.7, 0.7, 1.05),
    "harmonics": (0.03, 0.14, 0.08),
    "spicules": (0.0, 0.45, 0.15),
    "margin": (0.04, 0.18, 0.1),
    "posterior": (2.5, -0.85, 0.3),
    "halo": (0.0, 0.5, 0.15),
}


def make_phantom_dataset(
    out_dir: str | Path,
    num_per_class: int = 40,
    image_size: int = 128,
    seed: int = 0,
    difficulty: float = 0.5,
    classes: Sequence[str] = PHANTOM_CLASSES,
    progress: bool = False,
) -> Path:
    """Write a phantom data set in the BUSI layout (``benign/benign (1).png`` ...) plus ``datalist.json``.

    Args:
        out_dir: dataset directory (created).
        num_per_class: images per class.
        image_size: side of the square images in pixels (>= 32).
        seed: random seed; equal arguments give identical files.
        difficulty: 0 (easy) to 1 (hard).
        classes: subset of ``("benign", "malignant", "normal")``.
        progress: show a progress bar.

    Returns:
        The dataset directory. ``datalist.json`` holds ``classes``, ``training`` (every image, paths
        relative to the directory) and ``metadata.phantom`` (the arguments, to detect a reusable phantom).
    """
    params = phantom_parameters(num_per_class, image_size, seed, difficulty, classes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = []
    rng = np.random.default_rng(seed)
    hashes: list[int] = []
    for label, name in enumerate(params["classes"]):
        (out / name).mkdir(exist_ok=True)
        class_rng = np.random.default_rng(rng.integers(2**63))
        starts = range(0, num_per_class, _CHUNK)
        for start in tqdm(starts, desc=f"phantom {name}", disable=not progress):
            count = min(_CHUNK, num_per_class - start)
            images = simulate_bmode([name] * count, image_size, difficulty, class_rng)
            for offset, image in enumerate(images):
                image = _distinct(image, name, image_size, difficulty, class_rng, hashes)
                relative = f"{name}/{name} ({start + offset + 1}).png"
                Image.fromarray(image).save(out / relative)
                items.append({"image": relative, "label": label})
    datalist = {"classes": params["classes"], "training": items, "metadata": {"phantom": params}}
    partial = out / "datalist.json.partial"  # written last and renamed: its presence means "complete"
    partial.write_text(json.dumps(datalist, indent=1))
    partial.replace(out / "datalist.json")
    return out


def make_site_phantom(
    out_dir: str | Path,
    num_per_class: int = 12,
    image_size: int = 64,
    seed: int = 1,
    difficulty: float = 0.5,
    gain: float = 1.4,
    gamma: float = 0.7,
    devices: Sequence[str] = ("site-B scanner 1", "site-B scanner 2"),
    images_per_case: int = 2,
) -> Path:
    """Write a synthetic *second site*: phantom lesions displayed with another gain and contrast.

    An external test set for demos and tests without real data: ``benign/`` and ``malignant/`` folders
    (no ``normal``, like BUS-BRA) of ``site_<class>_<i>.png`` images, simulated as in
    :func:`make_phantom_dataset` and then redisplayed as ``255 * gain * (v / 255) ** gamma`` (clipped):
    another scanner's gain and log-compression curve. ``site.csv`` has one row per image: ``ID`` (the
    file stem), ``Case`` (``images_per_case`` consecutive images of a class share a patient),
    ``Pathology`` and ``Device`` (patients are dealt to ``devices`` in turn).

    Args:
        out_dir: the folder to create.
        num_per_class: images per class.
        image_size: side of the square images in pixels (>= 32).
        seed: random seed; equal arguments give identical files.
        difficulty: 0 (easy) to 1 (hard), as for the phantom.
        gain: display gain (1: the phantom's).
        gamma: display gamma (1: the phantom's).
        devices: device names, dealt to the patients in turn.
        images_per_case: images per patient.

    Returns:
        The folder.
    """
    phantom_parameters(num_per_class, image_size, seed, difficulty, PHANTOM_CLASSES[:2])
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    rows = ["ID,Case,Pathology,Device"]
    for name in PHANTOM_CLASSES[:2]:
        (out / name).mkdir(parents=True, exist_ok=True)
        images = simulate_bmode([name] * num_per_class, image_size, difficulty, rng).astype(np.float64)
        shown = np.clip(255.0 * gain * (images / 255.0) ** gamma, 0, 255).round().astype(np.uint8)
        for i, image in enumerate(shown):
            stem, case = f"site_{name}_{i:03d}", i // images_per_case
            Image.fromarray(image).save(out / name / f"{stem}.png")
            rows.append(f"{stem},{name[0]}{case:03d},{name},{devices[case % len(devices)]}")
    (out / "site.csv").write_text("\n".join(rows) + "\n")
    return out


def _distinct(
    image: np.ndarray, kind: str, size: int, difficulty: float, rng: np.random.Generator, hashes: list[int]
) -> np.ndarray:
    """Redraw ``image`` until no earlier image is a near-duplicate by the audit's perceptual hash.

    Phantom scans share one layer layout, so a few would otherwise pair up by chance and the audit would
    group them (or exclude them as label conflicts).
    """
    for _ in range(20):
        digest = perceptual_hash(Image.fromarray(image))
        if all(hamming(digest, other) > DEFAULT_HASH_THRESHOLD for other in hashes):
            break
        image = simulate_bmode([kind], size, difficulty, rng)[0]
    else:  # give up after 20 draws (never seen): keep the last one
        digest = perceptual_hash(Image.fromarray(image))
    hashes.append(digest)
    return image


def phantom_parameters(
    num_per_class: int, image_size: int, seed: int, difficulty: float, classes: Sequence[str]
) -> dict[str, Any]:
    """Validate phantom arguments and return them as the dictionary stored in ``datalist.json``."""
    classes = list(classes)
    unknown = [c for c in classes if c not in PHANTOM_CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"phantom classes must be distinct names from {PHANTOM_CLASSES}, got {classes}")
    if num_per_class < 1:
        raise ValueError(f"num_per_class must be >= 1, got {num_per_class}")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32 pixels, got {image_size}")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty}")
    return {
        "version": PHANTOM_VERSION,
        "num_per_class": int(num_per_class),
        "image_size": int(image_size),
        "seed": int(seed),
        "difficulty": float(difficulty),
        "classes": classes,
    }


def simulate_bmode(
    kinds: Sequence[str], image_size: int, difficulty: float, rng: np.random.Generator
) -> np.ndarray:
    """Simulate B-mode images of the given kinds (``benign``, ``malignant`` or ``normal``).

    Args:
        kinds: one class name per image.
        image_size: side in pixels.
        difficulty: 0 (easy) to 1 (hard).
        rng: random generator (consumed).

    Returns:
        ``uint8`` array of shape ``(len(kinds), image_size, image_size)``.
    """
    n, s = len(kinds), image_size
    y, x = np.meshgrid(np.linspace(0, 1, s), np.linspace(0, 1, s), indexing="ij")
    echo = _tissue_layers(n, s, y, x, difficulty, rng)
    is_lesion = np.array([k != "normal" for k in kinds])
    malignant = np.array([k == "malignant" for k in kinds], dtype=np.float64)
    if is_lesion.any():
        echo[is_lesion] = _add_lesions(echo[is_lesion], malignant[is_lesion], y, x, difficulty, rng)
    return _speckle_and_display(echo, y, rng)


def _smooth_noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise over the last two axes (FFT), normalised to unit std."""
    s = shape[-1]
    fy, fx = np.fft.fftfreq(s)[:, None], np.fft.rfftfreq(s)[None, :]
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))
    field = np.fft.irfft2(np.fft.rfft2(rng.standard_normal(shape)) * kernel, s=shape[-2:])
    return field / field.std(axis=(-2, -1), keepdims=True)


def _uniform(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    return rng.uniform(low, high, n)[:, None, None]


def _tissue_layers(
    n: int, s: int, y: np.ndarray, x: np.ndarray, difficulty: float, rng: np.random.Generator
) -> np.ndarray:
    """Echogenicity (n, s, s) of skin, fat, fibroglandular tissue and muscle, with fat lobules."""
    phase = _uniform(rng, 0, 2 * np.pi, n)
    tilt = _uniform(rng, -0.15, 0.15, n) * (x - 0.5)
    wave = _uniform(rng, 0.01, 0.06, n) * np.sin(2 * np.pi * (_uniform(rng, 0.5, 2.0, n) * x) + phase)
    skin = _uniform(rng, 0.02, 0.06, n)
    fat_end = _uniform(rng, 0.12, 0.38, n) + wave + tilt
    gland_end = _uniform(rng, 0.58, 0.9, n) - wave + tilt
    texture = _smooth_noise((n, s, s), s / 40, rng)
    ligaments = np.exp(-((_smooth_noise((n, s, s), s / 12, rng) / 0.12) ** 2))
    striations = 0.5 + 0.5 * np.sin(2 * np.pi * (y * _uniform(rng, 8, 18, n) + 0.05 * texture))
    fat = _uniform(rng, 0.1, 0.25, n) + 0.7 * ligaments
    gland = _uniform(rng, 0.5, 1.0, n) * np.exp(0.4 * texture) + 0.4 * ligaments
    muscle = _uniform(rng, 0.2, 0.4, n) + 0.35 * striations
    echo = np.where(y < skin, 1.5, np.where(y < fat_end, fat, np.where(y < gland_end, gland, muscle)))
    # Probe contact and gain vary: lateral shading and broad bright/dark patches differ between scans.
    shading = 1 + _uniform(rng, -0.5, 0.5, n) * (x - 0.5) + 0.25 * _smooth_noise((n, s, s), s / 6, rng)
    echo *= np.clip(shading, 0.3, None)
    lobules = rng.poisson(1.0 + 2.0 * difficulty, n)
    for i in np.flatnonzero(lobules):  # a few hypoechoic oval fat lobules: lesion look-alikes
        for _ in range(lobules[i]):
            cy, cx = rng.uniform(0.2, 0.75), rng.uniform(0.1, 0.9)
            ry, rx = rng.uniform(0.03, 0.07), rng.uniform(0.05, 0.12)
            inside = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1
            echo[i][inside] *= rng.uniform(0.35, 0.6)
    return echo


def _blend(name: str, malignant: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """Class-specific value of a lesion parameter, blended towards the ambiguous middle by ``mix``."""
    benign_value, malignant_value, middle = _LESION[name]
    own = np.where(malignant > 0, malignant_value, benign_value)
    return (1 - mix) * own + mix * middle


def _add_lesions(
    echo: np.ndarray,
    malignant: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    difficulty: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw one lesion per image into ``echo`` (n, s, s): shape, margin, interior and posterior features."""
    n = len(echo)
    mix = np.clip(difficulty * rng.uniform(0.4, 1.7, n), 0, 1)  # per-image ambiguity
    param = {name: _blend(name, malignant, mix)[:, None, None] for name in _LESION}
    param["aspect"] = param["aspect"] * _uniform(rng, 0.85, 1.15, n)
    radius = _uniform(rng, 0.1, 0.17, n) * (1 - 0.3 * difficulty)
    cy, cx = _uniform(rng, 0.32, 0.62, n), _uniform(rng, 0.22, 0.78, n)
    dy, dx = y - cy, x - cx
    theta = np.arctan2(dy, dx)
    boundary = _boundary(theta, param["harmonics"][:, 0, 0], param["spicules"][:, 0, 0], rng)
    aspect = np.sqrt(param["aspect"])
    r = np.sqrt((dx / aspect) ** 2 + (dy * aspect) ** 2) / radius
    inside = 1 / (1 + np.exp(np.clip((r - boundary) / np.maximum(param["margin"], 1e-3), -50, 50)))
    contrast = 1 - 0.25 * difficulty * rng.uniform(0, 1, (n, 1, 1))
    core = 0.04 * np.exp(0.4 * _smooth_noise(echo.shape, echo.shape[-1] / 30, rng) * malignant[:, None, None])
    lesion_echo = (1 - contrast) * echo + contrast * core
    halo = param["halo"] * np.exp(-(((r - boundary) / 0.15) ** 2)) * (r > boundary)
    echo = echo * (1 - inside) + lesion_echo * inside + halo * 0.6
    return echo * (1 + param["posterior"] * _posterior_region(inside, y))


def _boundary(
    theta: np.ndarray, harmonics: np.ndarray, spicules: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Relative boundary radius per pixel: low-order harmonics plus narrow spicules, by angle.

    The radius is tabulated on 720 angles per lesion and looked up per pixel, which is far cheaper than
    evaluating every harmonic and spicule on every pixel.
    """
    n, steps = len(harmonics), 720
    angles = np.linspace(-np.pi, np.pi, steps, endpoint=False)[None, None, :]
    k = np.arange(2, 7)[None, :, None]
    amps = rng.uniform(0.3, 1.0, (n, 5, 1)) / k
    phases = rng.uniform(0, 2 * np.pi, (n, 5, 1))
    table = 1 + harmonics[:, None] * 2 * (amps * np.cos(k * angles + phases)).sum(axis=1)
    spike_angles = rng.uniform(-np.pi, np.pi, (n, 8, 1))
    gap = (angles - spike_angles + np.pi) % (2 * np.pi) - np.pi
    table += spicules[:, None] * np.exp(-((gap / 0.08) ** 2)).sum(axis=1)
    index = np.round((theta + np.pi) / (2 * np.pi) * steps).astype(np.int64) % steps
    return np.take_along_axis(table, index.reshape(n, -1), axis=1).reshape(theta.shape)


def _posterior_region(inside: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Region below each lesion, fading with depth: where enhancement or shadowing appears."""
    mask = inside > 0.5
    columns = inside.max(axis=1, keepdims=True)  # (n, 1, s): lesion width profile
    bottom = np.where(mask, y, 0.0).max(axis=1, keepdims=True)  # deepest lesion row per column
    below = np.clip((y - bottom) / 0.03, 0, 1) * np.exp(-np.clip(y - bottom, 0, None) / 0.6)
    return columns**2 * below * (bottom > 0)


def _speckle_and_display(echo: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Speckle formation, attenuation and log compression of an echogenicity map to uint8."""
    n, s = echo.shape[0], echo.shape[-1]
    scatter = np.clip(echo, 0, None) * (
        rng.standard_normal(echo.shape) + 1j * rng.standard_normal(echo.shape)
    )
    fy, fx = np.fft.fftfreq(s)[:, None], np.fft.fftfreq(s)[None, :]
    axial, lateral = 0.7 * s / 128, 1.5 * s / 128  # point-spread-function sigmas in pixels
    psf = np.exp(-2 * np.pi**2 * ((axial * fy) ** 2 + (lateral * fx) ** 2))
    envelope = np.abs(np.fft.ifft2(np.fft.fft2(scatter) * psf))
    envelope *= np.exp(-_uniform(rng, 0.8, 1.6, n) * y)  # depth attenuation left after time-gain compensation
    ref = np.percentile(envelope, 99.9, axis=(1, 2), keepdims=True)
    db = 20 * np.log10(np.maximum(envelope / ref, 1e-6))
    dynamic_range = _uniform(rng, 42, 52, n)
    return np.round(255 * np.clip(1 + db / dynamic_range, 0, 1)).astype(np.uint8)
