"""External test sets: another hospital's images, with their classes mapped to the model's.

A set is declared the same way in a bundle's ``external`` knob and in a study's ``data.external``::

    {name: busbra, source: ../shared/data/busbra, csv: bus_data.csv, id_column: ID,
     label_column: Pathology, case_column: Case, group_column: Device,
     label_map: {benign: benign, malignant: malignant}, positive: malignant, score: conditional}

* ``source``: a class folder (one sub-folder of images per class, like BUSI) or a CSV file; environment
  variables in it are expanded (``$MONAI_SAM_BUSBRA_DIR``), so one config serves several machines.
  - With a class folder, ``csv`` (optional, relative to ``source``) has one row per image, keyed by the
    image's file name without extension (``id_column``); it adds the patient (``case_column``) and
    group (``group_column``, e.g. the scanner) of every image. A ``label_column`` there is checked
    against the folder of every image.
  - A CSV source has one row per image: ``id_column`` names the image, by file stem or by path relative
    to the CSV's folder (found recursively below that folder), and ``label_column`` its class.
* ``label_map``: external class name -> model class name (``null`` leaves that class's images out);
  default: every external class maps to the model class of the same name.
* ``positive``: the model class scored as positive (default ``malignant``); the other mapped model
  classes are the negatives.
* ``score``: how the binary score is made from the model's probabilities, ``conditional`` (default:
  renormalised over the mapped model classes) or ``raw`` (see :mod:`monai_sam.metrics.external`).

Every image must have a CSV row, every CSV row an image, and every class a mapping; a set that keeps
one class only cannot have an AUC. Each of these is an error that names the set, the key and the
offending ids or classes, raised before any image is evaluated.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monai_sam.data.datalist import DataWarning, build_datalist, report_skipped, validate_files
from monai_sam.data.image_files import (
    DEFAULT_MIN_SIZE,
    image_stem,
    is_ignored_file,
    is_image_file,
    is_mask_file,
)
from monai_sam.data.image_reading import ReadOptions

__all__ = [
    "ExternalSet",
    "ExternalSetSpec",
    "load_external_set",
    "load_external_sets",
    "parse_external_specs",
]

logger = logging.getLogger(__name__)

#: Score rules of :func:`monai_sam.metrics.binary_score` (kept here too so the data layer needs no metrics).
_SCORE_RULES = ("conditional", "raw")
_KEYS = {
    "name",
    "source",
    "csv",
    "id_column",
    "label_column",
    "case_column",
    "group_column",
    "label_map",
    "positive",
    "score",
}
_COLUMN_KEYS = ("csv", "id_column", "label_column", "case_column", "group_column")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # it names output files


@dataclass(frozen=True)
class ExternalSetSpec:
    """The declaration of one external test set (see the module docstring).

    Attributes:
        name: names the set's output files (letters, digits, ``_ . -``).
        source: a class folder or a CSV file.
        csv: with a class folder, an optional per-image CSV relative to ``source``.
        id_column: the CSV column naming each image (file stem, or path relative to the CSV's folder).
        label_column: the CSV column of the class (required for a CSV source; checked for a folder).
        case_column: the CSV column of the patient (for the patient-level bootstrap).
        group_column: the CSV column of a group to report separately (e.g. ``Device``).
        label_map: external class -> model class, or None to leave the class out.
        positive: the positive model class.
        score: ``conditional`` or ``raw``.
    """

    name: str
    source: str
    csv: str | None = None
    id_column: str | None = None
    label_column: str | None = None
    case_column: str | None = None
    group_column: str | None = None
    label_map: dict[str, str | None] = field(default_factory=dict)
    positive: str = "malignant"
    score: str = "conditional"

    @classmethod
    def parse(cls, item: ExternalSetSpec | Mapping[str, Any], where: str = "external") -> ExternalSetSpec:
        """Validate one declaration; every error names ``where`` (e.g. ``data.external[0]``) and the key.

        Args:
            item: a mapping (from YAML) or a spec.
            where: where the declaration came from, for the error messages.
        """
        if isinstance(item, ExternalSetSpec):
            return item
        if not isinstance(item, Mapping):
            raise ValueError(f"{where}: an external set is a mapping with name and source, got {item!r}")
        unknown = set(item) - _KEYS
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}")
        for key in ("name", "source"):
            if not item.get(key):
                raise ValueError(f"{where}: '{key}' is required")
        name = str(item["name"])
        if not _NAME.match(name):
            raise ValueError(
                f"{where}.name: {name!r} must be letters, digits, '_', '.' or '-' (it names files)"
            )
        label_map = item.get("label_map") or {}
        if not isinstance(label_map, Mapping):
            raise ValueError(
                f"{where}.label_map: expected a mapping external class -> model class, got {label_map!r}"
            )
        score = str(item.get("score", "conditional"))
        if score not in _SCORE_RULES:
            raise ValueError(f"{where}.score: {score!r} is not one of {list(_SCORE_RULES)}")
        spec = cls(
            name=name,
            source=str(item["source"]),
            label_map={str(k): (None if v is None else str(v)) for k, v in label_map.items()},
            positive=str(item.get("positive", "malignant")),
            score=score,
            **{k: (None if item.get(k) is None else str(item[k])) for k in _COLUMN_KEYS},
        )
        spec._check_csv_keys(where)
        return spec

    @property
    def csv_source(self) -> bool:
        """Whether ``source`` is a CSV file (else a class folder)."""
        return self.source.lower().endswith(".csv")

    def _check_csv_keys(self, where: str) -> None:
        """The CSV columns need a CSV; a CSV needs its id column (and, as the source, its label column)."""
        if self.csv_source and self.csv:
            raise ValueError(f"{where}.csv: 'csv' adds columns to a class folder; source is already a CSV")
        has_csv = self.csv_source or bool(self.csv)
        given = [k for k in ("id_column", "label_column", "case_column", "group_column") if getattr(self, k)]
        if given and not has_csv:
            raise ValueError(f"{where}: {given} need a CSV: set 'csv' (relative to the class folder)")
        if has_csv and not self.id_column:
            raise ValueError(f"{where}.id_column: required with a CSV (the column naming each image)")
        if self.csv_source and not self.label_column:
            raise ValueError(f"{where}.label_column: required when source is a CSV (the column of the class)")

    def to_dict(self) -> dict[str, Any]:
        """The declaration as a plain mapping (unset optional keys left out) that :meth:`parse` accepts."""
        out: dict[str, Any] = {"name": self.name, "source": self.source}
        out.update({k: getattr(self, k) for k in _COLUMN_KEYS if getattr(self, k) is not None})
        if self.label_map:
            out["label_map"] = dict(self.label_map)
        out.update(positive=self.positive, score=self.score)
        return out


@dataclass
class ExternalSet:
    """A loaded external test set: its images with model-class labels, patients and groups.

    Attributes:
        spec: the declaration.
        class_names: the model's class names in label order.
        root: the folder image ids are relative to (the class folder, or the CSV's folder).
        items: ``{"image": absolute path, "label": model class index, "external_label": external class,
            "case": patient id or None, "group": group or None, "relpath": path relative to root}``,
            sorted by path.
        excluded: images left out per external class mapped to ``null``.
        skipped: unusable files (``{"image", "reason"}``), left out with a warning.
    """

    spec: ExternalSetSpec
    class_names: list[str]
    root: Path
    items: list[dict[str, Any]]
    excluded: dict[str, int] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The set's name."""
        return self.spec.name

    @property
    def positive_index(self) -> int:
        """The model column of the positive class."""
        return self.class_names.index(self.spec.positive)

    @property
    def mapped_indices(self) -> list[int]:
        """The model columns the external classes map to (positive and negatives), in label order."""
        return sorted({item["label"] for item in self.items})

    def binary_labels(self) -> np.ndarray:
        """1 for images of the positive class, 0 for the others, shape ``(n,)``."""
        return np.array([item["label"] == self.positive_index for item in self.items], dtype=np.int64)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary: the declaration, image counts per class, what was left out."""
        external = Counter(item["external_label"] for item in self.items)
        model = Counter(self.class_names[item["label"]] for item in self.items)
        negatives = [self.class_names[i] for i in self.mapped_indices if i != self.positive_index]
        cases = {item["case"] for item in self.items if item["case"] is not None}
        return {
            "spec": self.spec.to_dict(),
            "root": str(self.root),
            "n": len(self.items),
            "external_classes": dict(sorted(external.items())),
            "model_classes": {c: model[c] for c in self.class_names if model[c]},
            "positive_class": self.spec.positive,
            "negative_classes": negatives,
            "cases": len(cases) if cases else None,
            "excluded": dict(self.excluded),
            "skipped": len(self.skipped),
        }


def parse_external_specs(items: Sequence | None, where: str = "external") -> list[ExternalSetSpec]:
    """Validate a list of declarations (``None`` or empty: no external set); names must be unique.

    Args:
        items: mappings or specs.
        where: the key they came from, for the error messages (``external``, ``data.external``).
    """
    if items is None:
        return []
    if isinstance(items, (str, Mapping)) or not isinstance(items, Sequence):
        raise ValueError(f"{where}: expected a list of external sets, got {items!r}")
    specs = [ExternalSetSpec.parse(item, f"{where}[{i}]") for i, item in enumerate(items)]
    names = [s.name for s in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"{where}: external set names must be unique, {duplicated} repeat")
    return specs


def load_external_sets(
    items: Sequence | None,
    class_names: Sequence[str],
    reader_options: ReadOptions | Mapping[str, Any] | None = None,
    where: str = "external",
) -> list[ExternalSet]:
    """Parse and load every declared external set (see :func:`load_external_set`).

    Args:
        items: the declarations (``None`` or empty: none).
        class_names: the model's class names in label order.
        reader_options: DICOM/NIfTI reading options.
        where: the key they came from, for the error messages.
    """
    return [
        load_external_set(spec, class_names, reader_options) for spec in parse_external_specs(items, where)
    ]


def load_external_set(
    spec: ExternalSetSpec | Mapping[str, Any],
    class_names: Sequence[str],
    reader_options: ReadOptions | Mapping[str, Any] | None = None,
    min_size: int = DEFAULT_MIN_SIZE,
) -> ExternalSet:
    """Find, check and label the images of one external set.

    Args:
        spec: the declaration.
        class_names: the model's class names in label order (``class_names`` of the bundle).
        reader_options: DICOM/NIfTI reading options.
        min_size: images whose shorter side is below this are skipped (with a warning).

    Raises:
        FileNotFoundError: the source or its CSV does not exist.
        ValueError: a CSV id without an image or an image without a CSV row, an unknown column, an
            external class the label map does not cover, a label map target that is not a model class,
            a positive class that is not mapped, or one class only (every message names the set).
    """
    spec = ExternalSetSpec.parse(spec)
    where = f"external set {spec.name!r}"
    class_names = [str(c) for c in class_names]
    source = Path(os.path.expandvars(spec.source)).expanduser()  # $VARS: one config, many machines
    if not source.exists():
        unset = [v for v in re.findall(r"\$\{?(\w+)", str(source)) if v not in os.environ]
        hint = f" (set the environment variable {', '.join(unset)})" if unset else ""
        raise FileNotFoundError(f"{where}: source does not exist: {source}{hint}")
    options = ReadOptions.coerce(reader_options)
    if spec.csv_source:
        root = source.parent
        records, skipped = _csv_source_records(spec, source, options, min_size, where)
    else:
        if not source.is_dir():
            raise ValueError(f"{where}: source {source} is neither a class folder nor a .csv file")
        root = source
        records, skipped = _folder_records(spec, source, options, min_size, where)
    label_map = _effective_label_map(spec, sorted({r["external_label"] for r in records}), class_names, where)
    items, excluded = [], Counter()
    for record in records:
        target = label_map[record["external_label"]]
        if target is None:
            excluded[record["external_label"]] += 1
            continue
        items.append(
            {**record, "label": class_names.index(target), "relpath": _relative(record["image"], root)}
        )
    items.sort(key=lambda item: item["image"])
    _check_two_classes(items, class_names, spec, where)
    return ExternalSet(spec, class_names, root, items, dict(excluded), skipped)


def _folder_records(
    spec: ExternalSetSpec, folder: Path, options: ReadOptions, min_size: int, where: str
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Images of a class folder, with case and group from the optional per-image CSV."""
    try:
        datalist = build_datalist(folder, num_classes=None, min_size=min_size, reader_options=options)
    except (ValueError, FileNotFoundError) as err:
        raise type(err)(f"{where}: {err}") from err
    records = [
        {
            "image": item["image"],
            "external_label": datalist.classes[item["label"]],
            "case": None,
            "group": None,
        }
        for item in datalist.items
    ]
    if not spec.csv:
        return records, datalist.skipped
    rows = _read_rows(folder / spec.csv, spec, where)
    by_stem: dict[str, dict[str, Any]] = {}
    for record in records:
        stem = image_stem(record["image"])
        if stem in by_stem:
            raise ValueError(
                f"{where}: two images are named {stem!r} ({by_stem[stem]['image']}, {record['image']}); "
                f"the rows of {spec.csv} are matched by file name without extension"
            )
        by_stem[stem] = record
    unusable = {image_stem(s["image"]) for s in datalist.skipped}
    _check_ids_match(
        {k: v for k, v in rows.items() if k not in unusable}, by_stem, folder / spec.csv, spec, where
    )
    mismatched = []
    for stem, record in by_stem.items():
        row = rows[stem]
        if spec.label_column and row[spec.label_column] != record["external_label"]:
            mismatched.append(f"{stem} (folder {record['external_label']!r}, CSV {row[spec.label_column]!r})")
        record["case"] = row[spec.case_column] if spec.case_column else None
        record["group"] = row[spec.group_column] if spec.group_column else None
    if mismatched:
        raise ValueError(
            f"{where}: {len(mismatched)} image(s) are in another class folder than their "
            f"{spec.label_column!r} in {spec.csv}: {_first(mismatched)}"
        )
    return records, datalist.skipped


def _csv_source_records(
    spec: ExternalSetSpec, path: Path, options: ReadOptions, min_size: int, where: str
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Images named by a CSV, found below the CSV's folder by relative path or file stem."""
    rows = _read_rows(path, spec, where)
    index = _image_index(path.parent)
    files, missing, ambiguous = {}, [], []
    for image_id in rows:
        matches = index.get(image_id.replace("\\", "/"), [])
        if len(matches) > 1:
            ambiguous.append(f"{image_id} ({', '.join(p.name for p in matches[:3])})")
        elif not matches:
            missing.append(image_id)
        else:
            files[image_id] = str(matches[0].resolve())
    if missing:
        raise ValueError(
            f"{where}: {len(missing)} of {len(rows)} id(s) in column {spec.id_column!r} of {path} have no "
            f"image below {path.parent}: {_first(missing)}"
        )
    if ambiguous:
        raise ValueError(
            f"{where}: {len(ambiguous)} id(s) in {path} match several images (give the relative path): "
            f"{_first(ambiguous)}"
        )
    pairs = [(files[i], 0) for i in rows]
    valid, skipped = validate_files(pairs, min_size, options)
    if skipped:
        report_skipped(path, skipped, strict=False)
    usable = {item["image"] for item in valid}
    records = [
        {
            "image": files[i],
            "external_label": row[spec.label_column],
            "case": row[spec.case_column] if spec.case_column else None,
            "group": row[spec.group_column] if spec.group_column else None,
        }
        for i, row in rows.items()
        if files[i] in usable
    ]
    return records, skipped


def _image_index(root: Path) -> dict[str, list[Path]]:
    """Image files below ``root`` by relative path (with and without extension) and by file stem."""
    index: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or is_ignored_file(path) or is_mask_file(path) or not is_image_file(path):
            continue
        rel = path.relative_to(root).as_posix()
        keys = {rel, rel[: -len(path.name)] + image_stem(path), image_stem(path)}
        for key in keys:
            index.setdefault(key, []).append(path)
    return index


def _read_rows(path: Path, spec: ExternalSetSpec, where: str) -> dict[str, dict[str, str]]:
    """The CSV's rows keyed by ``id_column``, after checking that every named column exists."""
    if not path.is_file():
        raise FileNotFoundError(f"{where}: CSV file not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        rows = [
            {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            for row in reader
            if any((v or "").strip() for v in row.values() if isinstance(v, str))
        ]
    named = {k: getattr(spec, k) for k in ("id_column", "label_column", "case_column", "group_column")}
    unknown = {k: v for k, v in named.items() if v and v not in header}
    if unknown:
        shown = ", ".join(f"{k} {v!r}" for k, v in unknown.items())
        raise ValueError(f"{where}: {path} has no column {shown}; its columns are {header}")
    keyed: dict[str, dict[str, str]] = {}
    duplicated, empty = [], []
    for line, row in enumerate(rows, start=2):
        image_id = row[spec.id_column]
        if any(not row[k] for k in named.values() if k):
            empty.append(f"line {line}")
        elif image_id in keyed:
            duplicated.append(image_id)
        keyed[image_id] = row
    if empty:
        raise ValueError(f"{where}: {path} has empty cells in the named columns {named}: {_first(empty)}")
    if duplicated:
        raise ValueError(
            f"{where}: {len(duplicated)} id(s) repeat in column {spec.id_column!r} of {path}: "
            f"{_first(duplicated)}"
        )
    return keyed


def _check_ids_match(
    rows: Mapping[str, Any], by_stem: Mapping[str, Any], path: Path, spec: ExternalSetSpec, where: str
) -> None:
    """Every image of the folder has a CSV row and every CSV row an image."""
    no_image = sorted(set(rows) - set(by_stem))
    if no_image:
        raise ValueError(
            f"{where}: {len(no_image)} of {len(rows)} id(s) in column {spec.id_column!r} of {path} have no "
            f"image in the class folders: {_first(no_image)}"
        )
    no_row = sorted(set(by_stem) - set(rows))
    if no_row:
        raise ValueError(
            f"{where}: {len(no_row)} image(s) have no row in {path} (matched by file name without extension "
            f"in column {spec.id_column!r}): {_first(no_row)}"
        )


def _effective_label_map(
    spec: ExternalSetSpec, external: list[str], class_names: list[str], where: str
) -> dict[str, str | None]:
    """The label map applied: the given one, or each external class to the model class of its name."""
    label_map = dict(spec.label_map) if spec.label_map else {c: c for c in external}
    uncovered = [c for c in external if c not in label_map]
    if uncovered:
        raise ValueError(
            f"{where}: external class(es) {uncovered} are not covered by label_map {spec.label_map}; "
            f"map each to a model class {class_names} (or to null to leave its images out)"
        )
    bad = sorted({t for t in label_map.values() if t is not None and t not in class_names})
    if bad:
        raise ValueError(
            f"{where}: label_map target(s) {bad} are not model classes; the model's classes are {class_names}"
        )
    targets = sorted({t for t in label_map.values() if t is not None})
    if len(targets) < 2:
        raise ValueError(
            f"{where}: one class only after the label map (model class(es) {targets}): the "
            f"{spec.positive}-versus-rest AUC is undefined; an external set needs images of "
            f"{spec.positive!r} and of another mapped class"
        )
    if spec.positive not in targets:
        raise ValueError(
            f"{where}: the positive class {spec.positive!r} must be a model class {class_names} that "
            f"label_map maps to; it maps to {targets}"
        )
    unused = [k for k in label_map if k not in external]
    if unused:
        message = f"{where}: label_map key(s) {unused} are not classes of the set (its classes: {external})"
        logger.warning(message)
        warnings.warn(message, DataWarning, stacklevel=4)
    return label_map


def _check_two_classes(
    items: list[dict[str, Any]], class_names: list[str], spec: ExternalSetSpec, where: str
) -> None:
    """The positive class and at least one other mapped class must have images (else no AUC)."""
    counts = Counter(class_names[item["label"]] for item in items)
    negatives = sum(n for c, n in counts.items() if c != spec.positive)
    if counts.get(spec.positive, 0) == 0 or negatives == 0:
        raise ValueError(
            f"{where}: one class only after the label map ({dict(counts) or 'no images'}): the "
            f"{spec.positive}-versus-rest AUC is undefined; an external set needs images of "
            f"{spec.positive!r} and of another mapped class"
        )


def _relative(image: str, root: Path) -> str:
    """``image``'s path relative to ``root`` (the absolute path when a link leads outside it)."""
    path, base = Path(image).resolve(), root.resolve()
    return (path.relative_to(base) if path.is_relative_to(base) else path).as_posix()


def _first(values: Sequence[str], limit: int = 5) -> str:
    """The first ``limit`` values, with a count of the rest."""
    shown = ", ".join(values[:limit])
    return shown + (f" (and {len(values) - limit} more)" if len(values) > limit else "")
