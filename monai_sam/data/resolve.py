"""The single entry point of the bundles: from a split file, a data directory or nothing to a split dict."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai_sam.data.audit import audit_dataset
from monai_sam.data.datalist import SPLIT_KEYS, build_datalist
from monai_sam.data.image_files import check_image_file
from monai_sam.data.image_reading import ReadOptions, image_format
from monai_sam.data.phantom import PHANTOM_CLASSES, make_phantom_dataset, phantom_parameters
from monai_sam.data.splits import load_split, make_splits

#: Environment variable pointing at a BUSI copy (class folders benign/, malignant/, normal/).
BUSI_ENV = "MONAI_SAM_BUSI_DIR"


def find_busi_dir() -> Path | None:
    """Locate BUSI: ``$MONAI_SAM_BUSI_DIR``, else ``<repo>/../shared/data/busi``; None when absent."""
    env = os.environ.get(BUSI_ENV)
    candidate = (
        Path(env).expanduser() if env else Path(__file__).resolve().parents[2].parent / "shared/data/busi"
    )
    return candidate if (candidate / "benign").is_dir() and (candidate / "malignant").is_dir() else None


def resolve_datalist(
    dataset_dir: str | None,
    datalist: str | None,
    output_dir: str,
    num_classes: int = 3,
    seed: int = 0,
    phantom_kwargs: dict | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    reader_options: ReadOptions | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return a validated train/validation/test split dict for a bundle or study run.

    1. ``datalist`` is a split JSON (``training``/``validation``/``test``): load and validate it.
       Its DICOM and NIfTI files are decoded once with ``reader_options`` (a file that cannot be read
       raises here, naming it, rather than in a DataLoader). A plain datalist JSON or CSV is treated as a
       data source and split as in 3.
    2. Else, with no ``dataset_dir``, generate (or reuse) the phantom in ``output_dir/phantom``.
    3. Audit the data and make a leakage-free stratified split (``seed``); the split, its summary and
       the audit are written to ``output_dir/data_split/``.

    Args:
        dataset_dir: BUSI-layout or class-folder directory, or None/"" for the phantom.
        datalist: a split JSON, a datalist JSON or a CSV, or None/"".
        output_dir: run directory for the phantom and the written split.
        num_classes: 3 (benign/malignant/normal) or 2 (benign versus malignant, normal dropped).
        seed: split (and default phantom) seed.
        phantom_kwargs: arguments of :func:`make_phantom_dataset` (``num_per_class``, ``image_size``,
            ``seed``, ``difficulty``, ``classes``).
        val_fraction: fraction of images for validation.
        test_fraction: fraction of images for testing.
        reader_options: DICOM frame, NIfTI slice and ultrasound-region crop
            (:class:`~monai_sam.data.image_reading.ReadOptions`).

    Returns:
        ``{"classes", "training", "validation", "test", "metadata"}`` with absolute image paths.

    Raises:
        FileNotFoundError: a missing directory, split file or listed image.
        ValueError: no images, an empty class, bad labels or a class count other than ``num_classes``.
    """
    out = Path(output_dir)
    source: Path
    if datalist:
        path = Path(datalist).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"datalist file does not exist: {path}")
        if path.suffix.lower() == ".json" and _is_split_file(path):
            split = load_split(path, num_classes=num_classes)
            _check_clinical_files(path, split, ReadOptions.coerce(reader_options))
            return split
        source = path
    elif dataset_dir:
        source = Path(dataset_dir).expanduser()
        if not source.exists():
            raise FileNotFoundError(f"dataset_dir does not exist: {source}")
        if not source.is_dir():
            raise NotADirectoryError(f"dataset_dir is not a directory: {source}")
    else:
        source = ensure_phantom(out / "phantom", num_classes, seed, phantom_kwargs)
    data = build_datalist(source, num_classes=num_classes, reader_options=reader_options)
    audit = audit_dataset(data, reader_options=reader_options)
    split_dir = out / "data_split"
    splits = make_splits(
        data,
        num_folds=0,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        out_dir=split_dir,
        audit=audit,
    )
    audit.save(split_dir / "audit.json")
    return splits[0]


def ensure_phantom(
    phantom_dir: str | Path, num_classes: int = 3, seed: int = 0, phantom_kwargs: dict | None = None
) -> Path:
    """Generate the phantom in ``phantom_dir``, or reuse it when it was made with the same parameters."""
    kwargs = dict(phantom_kwargs or {})
    unknown = set(kwargs) - {"num_per_class", "image_size", "seed", "difficulty", "classes"}
    if unknown:
        raise ValueError(f"unknown phantom_kwargs {sorted(unknown)}")
    kwargs.setdefault("seed", seed)
    kwargs.setdefault("classes", PHANTOM_CLASSES if num_classes == 3 else PHANTOM_CLASSES[:2])
    wanted = phantom_parameters(
        kwargs.get("num_per_class", 40),
        kwargs.get("image_size", 128),
        kwargs["seed"],
        kwargs.get("difficulty", 0.5),
        kwargs["classes"],
    )
    phantom_dir = Path(phantom_dir)
    existing = phantom_dir / "datalist.json"
    if existing.is_file():
        try:
            if json.loads(existing.read_text())["metadata"]["phantom"] == wanted:
                return phantom_dir
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # unreadable or foreign datalist: regenerate
    for name in PHANTOM_CLASSES:  # stale images of other parameters must not leak into the new set
        shutil.rmtree(phantom_dir / name, ignore_errors=True)
    return make_phantom_dataset(phantom_dir, **kwargs)


def _check_clinical_files(path: Path, split: dict[str, Any], options: ReadOptions) -> None:
    """Decode the DICOM and NIfTI files of a split once; raise naming every one that cannot be read."""
    bad = []
    for key in SPLIT_KEYS:
        for item in split[key]:
            if image_format(item["image"]) in ("dicom", "nifti"):
                problem = check_image_file(item["image"], min_size=1, reader_options=options)
                if problem:
                    bad.append(f"{item['image']}: {problem}")
    if bad:
        shown = "\n  ".join(bad[:10]) + (f"\n  (and {len(bad) - 10} more)" if len(bad) > 10 else "")
        raise ValueError(f"split file {path} lists {len(bad)} image(s) that cannot be read:\n  {shown}")


def _is_split_file(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"datalist file {path} is not valid JSON: {err}") from err
    return isinstance(data, dict) and all(key in data for key in SPLIT_KEYS)
