"""The data inputs of the bundles: the train/validation/test split and folders of images to classify."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai_sam.data.image_files import check_image_file, is_ignored_file, is_image_file, is_mask_file
from monai_sam.data.image_reading import ReadOptions
from monai_sam.data.resolve import resolve_datalist

logger = logging.getLogger(__name__)

__all__ = ["bundle_datalist", "default_class_names", "image_folder_datalist", "select_split"]

#: Class names of the 3- and 2-class BUSI tasks, in label order (as the data layer assigns them).
_DEFAULT_CLASSES = {3: ["benign", "malignant", "normal"], 2: ["benign", "malignant"]}


def bundle_datalist(
    dataset_dir: str | None,
    datalist: str | None,
    output_dir: str,
    num_classes: int = 3,
    seed: int = 0,
    phantom: dict | None = None,
    reader_options: ReadOptions | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The split of a bundle run, from its ``dataset_dir``/``datalist`` knobs.

    ``datalist`` (a split JSON from ``monai-sam split``) wins; otherwise ``dataset_dir`` is audited and
    split (written to ``output_dir/data_split``); when both are empty the synthetic phantom is generated
    in ``output_dir/phantom``. See :func:`monai_sam.data.resolve.resolve_datalist`.

    Args:
        dataset_dir: BUSI-style class-folder directory, or ``""``/None for the phantom.
        datalist: split JSON, or ``""``/None.
        output_dir: the run directory.
        num_classes: 3 or 2 (benign versus malignant).
        seed: split and phantom seed.
        phantom: phantom options (``num_per_class``, ``image_size``, ``difficulty``).
        reader_options: the ``reader_options`` knob: DICOM ``frame``, NIfTI ``nifti_slice`` and
            ``crop_region`` (:class:`~monai_sam.data.image_reading.ReadOptions`).

    Raises:
        FileNotFoundError, NotADirectoryError, ValueError: from the data layer, naming the knob's value;
            also when a split has no training or validation images.
    """
    if num_classes not in (2, 3):
        raise ValueError(
            f"num_classes must be 3 (benign/malignant/normal) or 2 (benign/malignant), got {num_classes}"
        )
    if dataset_dir and not datalist and not os.path.isdir(os.path.expanduser(dataset_dir)):
        raise FileNotFoundError(
            f"dataset_dir {dataset_dir!r} is not a directory (give a BUSI-style folder of class sub-folders, "
            "or '' to generate the synthetic phantom)"
        )
    split = resolve_datalist(
        dataset_dir or None,
        datalist or None,
        output_dir,
        num_classes,
        seed,
        dict(phantom or {}),
        reader_options=ReadOptions.coerce(reader_options),
    )
    for key in ("training", "validation"):
        if not split.get(key):
            raise ValueError(f"the {key} split of {datalist or dataset_dir or 'the phantom'} is empty")
    if len(split["classes"]) != num_classes:
        raise ValueError(f"the data has classes {split['classes']} but num_classes is {num_classes}")
    return split


def image_folder_datalist(
    input_dir: str | os.PathLike, reader_options: ReadOptions | Mapping[str, Any] | None = None
) -> list[dict[str, str]]:
    """``[{"image": path}, ...]`` for every image under ``input_dir`` (recursive, sorted, masks skipped).

    PNG, JPEG, BMP, TIFF, DICOM (``.dcm`` or extension-less with the DICOM preamble) and NIfTI files are
    listed. Every file is checked first (DICOM and NIfTI decoded with ``reader_options``); an unusable
    one is skipped with a logged warning naming it and the reason, never an error in the DataLoader.

    Args:
        input_dir: the folder of images.
        reader_options: DICOM ``frame``, NIfTI ``nifti_slice`` and ``crop_region``.

    Raises:
        FileNotFoundError: ``input_dir`` is not a directory.
        ValueError: it holds no usable image file; a 3-D NIfTI volume without ``nifti_slice``.
    """
    root = Path(input_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset_dir {os.fspath(input_dir)!r} is not a directory")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and is_image_file(p) and not is_mask_file(p) and not is_ignored_file(p)
    )
    options = ReadOptions.coerce(reader_options)
    usable = []
    for path in files:
        problem = check_image_file(path, min_size=1, reader_options=options)
        if problem:
            logger.warning("skipped %s: %s", path, problem)
        else:
            usable.append(path)
    if not usable:
        raise ValueError(
            f"dataset_dir {os.fspath(input_dir)!r} holds no image that can be read "
            "(.png, .jpg, .bmp, .tif, .dcm, .nii)"
        )
    return [{"image": str(p.resolve())} for p in usable]


def default_class_names(num_classes: int) -> list[str]:
    """BUSI class names in label order for ``num_classes`` 3 or 2."""
    if num_classes not in _DEFAULT_CLASSES:
        raise ValueError(f"no default class names for num_classes={num_classes}; set class_names explicitly")
    return list(_DEFAULT_CLASSES[num_classes])


def select_split(split: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The items of one split (``training``, ``validation`` or ``test``; ``train``/``val`` accepted).

    Raises:
        ValueError: unknown split name, or an empty split.
    """
    aliases = {"train": "training", "val": "validation", "valid": "validation", "testing": "test"}
    key = aliases.get(str(name).lower(), str(name).lower())
    if key not in ("training", "validation", "test"):
        raise ValueError(f"eval_split must be 'training', 'validation' or 'test', got {name!r}")
    if not split.get(key):
        raise ValueError(f"the {key!r} split is empty: nothing to evaluate")
    return split[key]
