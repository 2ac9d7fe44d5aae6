"""MONAI datalists (``{"image": path, "label": int}``) from folders, CSV files and datalist JSON.

Every source is validated up front (file exists, known extension, readable header, big enough) so that
bad files are named here and never crash a DataLoader worker later.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_sam.data.image_files import (
    DEFAULT_MIN_SIZE,
    check_image_file,
    image_stem,
    is_ignored_file,
    is_image_file,
    is_mask_file,
)
from monai_sam.data.image_reading import ReadOptions

logger = logging.getLogger(__name__)

#: Class names of BUSI in label order; also the order used whenever a data set has exactly these names.
BUSI_CLASSES: tuple[str, ...] = ("benign", "malignant", "normal")

#: Keys of a MONAI datalist JSON that hold items.
SPLIT_KEYS: tuple[str, ...] = ("training", "validation", "test")

_CSV_IMAGE_COLUMNS = ("image", "path", "filename", "file", "image_path")
_CSV_LABEL_COLUMNS = ("label", "class", "target", "diagnosis")


class DataWarning(UserWarning):
    """A data problem that was handled by skipping files (they are listed in ``Datalist.skipped``)."""


@dataclass
class Datalist:
    """Image items with integer labels and the class names in label order.

    Args:
        classes: class names; ``classes[label]`` is the name of ``label``.
        items: ``{"image": absolute path, "label": int}`` dictionaries, sorted by path.
        source: where the items came from (directory, CSV or JSON path).
        skipped: ``{"image": path, "reason": str}`` for every file that was left out.
    """

    classes: list[str]
    items: list[dict[str, Any]]
    source: str = ""
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: str) -> Any:
        """Dictionary-style access (``datalist["classes"]``, ``datalist["items"]``)."""
        return self.to_dict()[key]

    def label_counts(self) -> dict[str, int]:
        """Number of items per class name, in label order."""
        counts = Counter(item["label"] for item in self.items)
        return {name: counts.get(i, 0) for i, name in enumerate(self.classes)}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (``classes``, ``items``, ``source``, ``skipped``)."""
        return {
            "classes": list(self.classes),
            "items": self.items,
            "source": self.source,
            "skipped": self.skipped,
        }


def build_datalist(
    source: str | Path,
    num_classes: int | None = 3,
    class_names: Sequence[str] | None = None,
    min_size: int = DEFAULT_MIN_SIZE,
    strict: bool = False,
    with_masks: bool = False,
    reader_options: ReadOptions | Mapping[str, Any] | None = None,
) -> Datalist:
    """Build a :class:`Datalist` from a directory, a CSV file or a MONAI datalist JSON.

    Directories are either the BUSI layout (``benign/``, ``malignant/``, ``normal/``; ``*_mask*`` files are
    ignored) or any class-per-folder tree (classes in sorted folder order unless ``class_names`` is given);
    PNG, JPEG, BMP, TIFF, DICOM (``.dcm`` or extension-less with the DICOM preamble) and NIfTI (``.nii``,
    ``.nii.gz``) files are read, mixed freely.
    A CSV has an image column (``image``/``path``/``filename``) and a label column (``label``/``class``)
    holding class names or integers; relative paths are relative to the CSV. A JSON is a MONAI datalist
    (``training``/``validation``/``test`` lists, optional ``classes``) or a plain list of items.

    Args:
        source: the directory, ``.csv`` or ``.json`` file.
        num_classes: expected number of classes. ``2`` on a benign/malignant/normal set drops ``normal``
            (benign versus malignant). None accepts what is found.
        class_names: class names in label order; overrides discovery and maps CSV/JSON name labels.
        min_size: images whose shorter side is below this many pixels are skipped.
        strict: raise on any unusable file instead of skipping it with a :class:`DataWarning`.
        with_masks: add ``"masks"`` to every item: the sorted paths of its BUSI-style mask files
            (``<name>_mask.png``, ``<name>_mask_1.png``...), an empty list when it has none.
        reader_options: DICOM frame, NIfTI slice and ultrasound-region crop
            (:class:`~monai_sam.data.image_reading.ReadOptions`); DICOM and NIfTI files are decoded with
            them here, so unusable ones are skipped (or, with ``strict``, raise) before any training.

    Raises:
        FileNotFoundError: the source or a listed file does not exist.
        ValueError: no images, an empty class, unknown labels, or a class count that does not match;
            a 3-D NIfTI volume without ``reader_options["nifti_slice"]`` (``SliceRequiredError``).
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data source does not exist: {path}")
    if path.is_dir():
        classes, pairs, skipped = _scan_class_folders(path, class_names)
    elif path.suffix.lower() == ".csv":
        classes, pairs, skipped = _read_csv(path, class_names)
    elif path.suffix.lower() == ".json":
        classes, pairs, skipped = _read_json(path, class_names)
    else:
        raise ValueError(f"unsupported data source {path}: expected a directory, a .csv or a .json file")
    options = ReadOptions.coerce(reader_options)
    try:
        selected, kept = _select_classes(path, classes, pairs, num_classes)
    except ValueError as err:  # the count is wrong; say too which files could not be used
        bad = skipped + validate_files(pairs, min_size, options)[1]
        if not bad:
            raise
        raise ValueError(f"{err}. These files could not be used either: {_listed(bad)}") from None
    classes, pairs = selected, kept
    items, bad = validate_files(pairs, min_size, options)
    skipped += bad
    if skipped:
        report_skipped(path, skipped, strict)
    if not items:
        raise ValueError(
            f"no usable images found in {path}" + (f"; skipped: {_listed(skipped)}" if skipped else "")
        )
    _check_no_empty_class(path, classes, items, skipped, dict(pairs))
    items.sort(key=lambda item: item["image"])
    if with_masks:
        for item in items:
            item["masks"] = find_masks(item["image"])
    return Datalist(classes=list(classes), items=items, source=str(path.resolve()), skipped=skipped)


def find_masks(image: str | Path) -> list[str]:
    """Mask files that belong to ``image`` (``<stem>_mask*.<ext>`` in the same folder), sorted."""
    image = Path(image)
    pattern = glob.escape(image_stem(image)) + "_mask*"
    return sorted(str(p) for p in image.parent.glob(pattern) if is_mask_file(p) and is_image_file(p))


def _scan_class_folders(
    root: Path, class_names: Sequence[str] | None
) -> tuple[list[str], list[tuple[str, int]], list[dict[str, str]]]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        if any(is_image_file(p) for p in root.iterdir()):
            raise ValueError(
                f"{root} holds images but no class folders: put each class in its own sub-folder"
            )
        raise ValueError(f"no images found in {root}: expected one sub-folder of images per class")
    names = [p.name for p in folders]
    if class_names is not None:
        missing = [c for c in class_names if c not in names]
        if missing:
            raise FileNotFoundError(f"class folder(s) {missing} not found in {root} (found {names})")
        classes = list(class_names)
    elif set(BUSI_CLASSES) <= set(names) or set(BUSI_CLASSES[:2]) == set(names):
        classes = [c for c in BUSI_CLASSES if c in names]
    else:
        classes = names
    pairs, skipped = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).rglob("*")):
            if not file.is_file() or is_ignored_file(file) or is_mask_file(file):
                continue
            if not is_image_file(file):
                skipped.append(
                    {"image": str(file), "reason": f"unknown extension {file.suffix or '(none)'!r}"}
                )
                continue
            pairs.append((str(file.resolve()), label))
    return classes, pairs, skipped


def _read_csv(
    path: Path, class_names: Sequence[str] | None
) -> tuple[list[str], list[tuple[str, int]], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"CSV file {path} is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    image_col = next((header.index(c) for c in _CSV_IMAGE_COLUMNS if c in header), None)
    label_col = next((header.index(c) for c in _CSV_LABEL_COLUMNS if c in header), None)
    if image_col is None or label_col is None:
        if len(header) != 2 or not any(is_image_file(cell) for cell in header):
            raise ValueError(
                f"CSV file {path}: need an image column ({'/'.join(_CSV_IMAGE_COLUMNS)}) and a label column "
                f"({'/'.join(_CSV_LABEL_COLUMNS)}), or header-less columns path,label; got header {rows[0]}"
            )
        image_col, label_col, body, first_line = 0, 1, rows, 1
    else:
        body, first_line = rows[1:], 2
    records = []
    for line, row in enumerate(body, start=first_line):
        if len(row) <= max(image_col, label_col):
            raise ValueError(f"CSV file {path}, line {line}: expected a path and a label, got {row}")
        records.append((row[image_col].strip(), row[label_col].strip(), f"line {line}"))
    classes, pairs = _labels_to_ints(path, records, class_names)
    return classes, pairs, []


def _read_json(
    path: Path, class_names: Sequence[str] | None
) -> tuple[list[str], list[tuple[str, int]], list[dict[str, str]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"JSON file {path} is not valid JSON: {err}") from err
    if isinstance(data, dict):
        entries = [e for key in (*SPLIT_KEYS, "items") for e in data.get(key, [])]
        if class_names is None and data.get("classes"):
            class_names = list(data["classes"])
    elif isinstance(data, list):
        entries = data
    else:
        raise ValueError(f"JSON file {path}: expected a datalist object or a list of items")
    records = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise ValueError(
                f"JSON file {path}, item {i}: expected {{'image': path, 'label': label}}, got {entry}"
            )
        records.append((str(entry["image"]), str(entry["label"]), f"item {i}"))
    seen: set[str] = set()
    unique = [r for r in records if not (r[0] in seen or seen.add(r[0]))]
    classes, pairs = _labels_to_ints(path, unique, class_names)
    return classes, pairs, []


def _labels_to_ints(
    path: Path, records: Iterable[tuple[str, str, str]], class_names: Sequence[str] | None
) -> tuple[list[str], list[tuple[str, int]]]:
    """Map label strings (names or integers) to ints; unknown labels raise, naming the rows."""
    records = list(records)
    raw = [label for _, label, _ in records]
    numeric = all(_is_int(label) for label in raw)
    if class_names is not None:
        classes = list(class_names)
    elif numeric:
        classes = [str(i) for i in range(max(int(label) for label in raw) + 1)] if raw else []
    else:
        found = set(raw)
        classes = [c for c in BUSI_CLASSES if c in found] if found <= set(BUSI_CLASSES) else sorted(found)
    lookup = {name: i for i, name in enumerate(classes)}
    pairs, unknown = [], []
    for image, label, where in records:
        if label in lookup:  # names first: numeric class names (BI-RADS "3", "4") stay names
            index = lookup[label]
        elif _is_int(label) and 0 <= int(label) < len(classes):
            index = int(label)
        else:
            unknown.append(f"{where}: {label!r}")
            continue
        image_path = Path(image).expanduser()
        if not image_path.is_absolute():
            image_path = path.parent / image_path
        pairs.append((str(image_path.resolve()), index))
    if unknown:
        shown = "; ".join(unknown[:5]) + (f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else "")
        raise ValueError(f"{path}: unknown label(s) {shown}; known classes are {classes}")
    return classes, pairs


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _select_classes(
    path: Path, classes: list[str], pairs: list[tuple[str, int]], num_classes: int | None
) -> tuple[list[str], list[tuple[str, int]]]:
    """Apply ``num_classes``: keep all, or drop ``normal`` for benign versus malignant."""
    if num_classes is None or num_classes == len(classes):
        return classes, pairs
    if num_classes == len(classes) - 1 and "normal" in classes:
        dropped = classes.index("normal")
        kept = [c for c in classes if c != "normal"]
        remap = {old: new for new, old in enumerate(i for i in range(len(classes)) if i != dropped)}
        return kept, [(image, remap[label]) for image, label in pairs if label != dropped]
    raise ValueError(
        f"{path} has {len(classes)} classes {classes} but num_classes={num_classes}; "
        "num_classes=2 drops 'normal' only when the classes are benign, malignant and normal"
    )


def validate_files(
    pairs: list[tuple[str, int]], min_size: int, reader_options: ReadOptions
) -> tuple[list[dict[str, Any]], list[dict]]:
    """Check every listed image file: (readable items, skipped files with the reason).

    Args:
        pairs: (image path, label index) of every listed file.
        min_size: the smallest accepted image side in pixels.
        reader_options: how the files are read.

    Raises:
        FileNotFoundError: listed files do not exist (naming up to five of them).
    """
    items, skipped, missing = [], [], []
    for image, label in pairs:
        problem = check_image_file(image, min_size, reader_options)
        if problem == "file does not exist":
            missing.append(image)
        elif problem:
            skipped.append({"image": image, "reason": problem})
        else:
            items.append({"image": image, "label": label})
    if missing:
        shown = ", ".join(missing[:5]) + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else "")
        raise FileNotFoundError(f"{len(missing)} listed image file(s) do not exist: {shown}")
    return items, skipped


def report_skipped(source: Path, skipped: list[dict[str, str]], strict: bool) -> None:
    """Say which files were skipped and why: a warning, or a ValueError when ``strict``.

    Args:
        source: the folder or list the files came from.
        skipped: ``{"image": path, "reason": why}`` per skipped file.
        strict: raise instead of warning.
    """
    lines = [f"  {s['image']}: {s['reason']}" for s in skipped]
    message = f"{len(skipped)} file(s) in {source} skipped:\n" + "\n".join(lines)
    if strict:
        raise ValueError(message)
    logger.warning(message)
    warnings.warn(message, DataWarning, stacklevel=3)


def _listed(skipped: list[dict[str, str]], limit: int = 5) -> str:
    """``path (reason); ...`` of the first ``limit`` skipped files, with a count of the rest."""
    shown = "; ".join(f"{s['image']} ({s['reason']})" for s in skipped[:limit])
    return shown + (f" (and {len(skipped) - limit} more)" if len(skipped) > limit else "")


def _check_no_empty_class(
    source: Path,
    classes: list[str],
    items: list[dict[str, Any]],
    skipped: list[dict[str, str]],
    label_of: dict[str, int],
) -> None:
    """Raise when a class has no usable image, naming the skipped files that emptied it."""
    counts = Counter(item["label"] for item in items)
    empty = [(i, name) for i, name in enumerate(classes) if counts.get(i, 0) == 0]
    if not empty:
        return
    parts = []
    for index, name in empty:
        folder = source / name
        emptied = [
            s
            for s in skipped
            if label_of.get(s["image"]) == index or (source.is_dir() and folder in Path(s["image"]).parents)
        ]
        parts.append(f"'{name}'" + (f": every file of it was skipped: {_listed(emptied)}" if emptied else ""))
    raise ValueError(
        f"class(es) {[n for _, n in empty]} have no usable images in {source}: " + "; ".join(parts)
    )
