"""Dataset audit: counts, sizes, modes, unreadable files, duplicates, label conflicts, colour overlays.

DICOM and NIfTI files are decoded as the bundles read them (:func:`~monai_sam.data.image_reading.open_image`),
so duplicates are found across formats (a PNG and a DICOM of the same picture are exact duplicates). For
DICOM the audit also lists the files that carry patient-identifying attributes (by attribute *name*,
never a value), ``BurnedInAnnotation = YES`` and modalities other than US.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm.auto import tqdm

from monai_sam.data.datalist import Datalist, build_datalist
from monai_sam.data.image_files import DEFAULT_MIN_SIZE
from monai_sam.data.image_hashing import (
    DEFAULT_HASH_THRESHOLD,
    content_hash,
    hamming,
    hash_groups,
    perceptual_hash,
)
from monai_sam.data.image_reading import ImageReadError, ReadOptions, open_image

#: A pixel is "coloured" when max(R,G,B) - min(R,G,B) exceeds this (grey ultrasound has equal channels).
COLOUR_CHROMA = 40
#: An image carries colour annotations when at least this fraction of its pixels is coloured.
COLOUR_FRACTION = 5e-4


@dataclass
class AuditReport:
    """Findings of :func:`audit_dataset`; ``to_dict`` gives the JSON form, ``format_text`` the report.

    Args:
        source: audited directory or file.
        classes: class names in label order.
        items: readable items ``{"image", "label"}`` with their ``group`` id (near-duplicate group).
        counts: readable images per class.
        sizes: ``"WxH"`` -> number of images.
        modes: PIL mode -> number of images.
        unreadable: ``{"image", "reason"}`` for files that could not be used (header or pixel data).
        exact_duplicates: groups of paths with identical pixels.
        near_duplicates: groups of paths within ``hash_threshold`` bits (groups of exact copies excluded).
        label_conflicts: ``{"images", "classes", "kind"}`` for duplicate groups spanning several classes.
        colour_annotated: ``{"image", "coloured_fraction"}`` for images with coloured overlays.
        too_small: images below ``min_size`` pixels.
        hash_threshold: Hamming threshold used for near-duplicates (out of 64 bits).
        formats: file format (``PNG``, ``JPEG``, ``DICOM``, ``NIfTI``...) -> number of images.
        frames: frames (DICOM) or slices (NIfTI) per file -> number of files, for files with more than one.
        identifying: ``{"image", "attributes"}`` for DICOM files carrying patient-identifying attributes:
            attribute names only (PatientName, PatientID, the dates, "private tags"...), never values.
        burned_in_annotation: DICOM files flagged ``BurnedInAnnotation = YES`` (text burned into pixels).
        other_modality: ``{"image", "modality"}`` for DICOM files whose modality is not US (the code
            when it is a DICOM defined term, else ``"other"``; ``"missing"`` when absent).
    """

    source: str
    classes: list[str]
    items: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    exact_duplicates: list[list[str]] = field(default_factory=list)
    near_duplicates: list[list[str]] = field(default_factory=list)
    label_conflicts: list[dict[str, Any]] = field(default_factory=list)
    colour_annotated: list[dict[str, Any]] = field(default_factory=list)
    too_small: list[str] = field(default_factory=list)
    hash_threshold: int = DEFAULT_HASH_THRESHOLD
    formats: dict[str, int] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    identifying: list[dict[str, Any]] = field(default_factory=list)
    burned_in_annotation: list[str] = field(default_factory=list)
    other_modality: list[dict[str, str]] = field(default_factory=list)

    def conflicting_images(self) -> set[str]:
        """Paths of every image involved in a label conflict."""
        return {image for conflict in self.label_conflicts for image in conflict["images"]}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready findings with a ``summary`` block."""
        summary = {
            "images": len(self.items),
            "unreadable": len(self.unreadable),
            "exact_duplicate_groups": len(self.exact_duplicates),
            "near_duplicate_groups": len(self.near_duplicates),
            "images_in_near_duplicate_groups": sum(len(g) for g in self.near_duplicates),
            "label_conflicts": len(self.label_conflicts),
            "colour_annotated": len(self.colour_annotated),
            "dicom_with_identifying_attributes": len(self.identifying),
            "dicom_burned_in_annotation": len(self.burned_in_annotation),
            "dicom_other_modality": len(self.other_modality),
        }
        keys = (
            "source",
            "classes",
            "counts",
            "formats",
            "sizes",
            "modes",
            "frames",
            "unreadable",
            "too_small",
        )
        data = {key: getattr(self, key) for key in keys}
        data.update(
            summary=summary,
            hash={"algorithm": "pHash 64-bit DCT", "threshold_bits": self.hash_threshold},
            exact_duplicates=self.exact_duplicates,
            near_duplicates=self.near_duplicates,
            label_conflicts=self.label_conflicts,
            colour_annotated=self.colour_annotated,
            identifying=self.identifying,
            burned_in_annotation=self.burned_in_annotation,
            other_modality=self.other_modality,
            items=self.items,
        )
        return data

    def save(self, path: str | Path) -> Path:
        """Write the JSON form to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def format_text(self, max_listed: int = 20) -> str:
        """A readable multi-line report (long lists cut at ``max_listed`` entries)."""
        lines = [f"Audit of {self.source}", f"  images: {len(self.items)} readable"]
        lines += [f"    {name}: {n}" for name, n in self.counts.items()]
        lines.append("  formats: " + ", ".join(f"{f} ({n})" for f, n in _top(self.formats)))
        lines.append("  sizes: " + ", ".join(f"{s} ({n})" for s, n in _top(self.sizes)))
        lines.append("  modes: " + ", ".join(f"{m} ({n})" for m, n in _top(self.modes)))
        if self.frames:
            lines.append(
                "  multi-frame/volume files: " + ", ".join(f"{k} frames ({n})" for k, n in _top(self.frames))
            )
        lines += _section(
            "unreadable files", [f"{u['image']}: {u['reason']}" for u in self.unreadable], max_listed
        )
        lines += _section(f"images smaller than {DEFAULT_MIN_SIZE} px", self.too_small, max_listed)
        lines += _section(
            "exact duplicates (identical pixels)", _group_lines(self, self.exact_duplicates), max_listed
        )
        lines += _section(
            f"near-duplicate groups (pHash distance <= {self.hash_threshold}/64 bits)",
            _group_lines(self, self.near_duplicates),
            max_listed,
        )
        root = Path(self.source)
        conflicts = [
            f"[{c['kind']}] " + " <-> ".join(_short(p, root) for p in c["images"])
            for c in self.label_conflicts
        ]
        lines += _section("LABEL CONFLICTS (duplicates filed under different classes)", conflicts, max_listed)
        colour = [
            f"{_short(c['image'], root)} ({100 * c['coloured_fraction']:.2f}% coloured pixels)"
            for c in self.colour_annotated
        ]
        lines += _section("images with colour annotations", colour, max_listed)
        identifying = [f"{_short(i['image'], root)}: {', '.join(i['attributes'])}" for i in self.identifying]
        lines += _section(
            "DICOM files with patient-identifying attributes (names only; de-identify before sharing)",
            identifying,
            max_listed,
        )
        burned = [_short(p, root) for p in self.burned_in_annotation]
        lines += _section("DICOM files with BurnedInAnnotation = YES", burned, max_listed)
        other = [f"{_short(o['image'], root)} (modality {o['modality']})" for o in self.other_modality]
        lines += _section("DICOM files whose modality is not US", other, max_listed)
        return "\n".join(lines)


def audit_dataset(
    source: str | Path | Datalist,
    hash_threshold: int = DEFAULT_HASH_THRESHOLD,
    min_size: int = DEFAULT_MIN_SIZE,
    progress: bool = False,
    reader_options: ReadOptions | Mapping[str, Any] | None = None,
) -> AuditReport:
    """Audit a data set: decode every image, hash it and look for duplicates and conflicts.

    Args:
        source: a directory (BUSI layout or class folders), a CSV, a datalist JSON or a :class:`Datalist`.
        hash_threshold: near-duplicate threshold in bits of the 64-bit perceptual hash.
        min_size: images with a shorter side below this are listed as too small.
        progress: show a progress bar.
        reader_options: DICOM frame, NIfTI slice and ultrasound-region crop, as the bundles read the files.
    """
    options = ReadOptions.coerce(reader_options)
    if isinstance(source, Datalist):
        datalist = source
    else:
        with warnings.catch_warnings():  # unusable files are reported below, not warned about
            warnings.simplefilter("ignore")
            datalist = build_datalist(source, num_classes=None, min_size=1, reader_options=options)
    report = AuditReport(
        source=datalist.source, classes=list(datalist.classes), hash_threshold=hash_threshold
    )
    report.unreadable = list(datalist.skipped)
    content, phash = [], []
    for item in tqdm(datalist.items, desc="audit", disable=not progress):
        found = _inspect(item["image"], report, min_size, options)
        if found is not None:
            report.items.append({"image": item["image"], "label": item["label"]})
            content.append(found[0])
            phash.append(found[1])
    groups = _merge_exact(hash_groups(phash, hash_threshold), content)
    for item, group in zip(report.items, groups):
        item["group"] = int(group)
    counts = Counter(item["label"] for item in report.items)
    report.counts = {name: counts.get(i, 0) for i, name in enumerate(report.classes)}
    _find_duplicates(report, content, phash)
    return report


def _merge_exact(groups: np.ndarray, content: list[str]) -> np.ndarray:
    """Put identical images in one group whatever the perceptual threshold (even a negative one)."""
    n = len(content)
    if n == 0:
        return groups
    first_of_group: dict[int, int] = {}
    first_of_content: dict[str, int] = {}
    rows = np.arange(n)
    to_group = np.array([first_of_group.setdefault(int(g), i) for i, g in enumerate(groups)])
    to_content = np.array([first_of_content.setdefault(c, i) for i, c in enumerate(content)])
    edges = np.concatenate([to_group, to_content])
    graph = coo_matrix((np.ones(2 * n, dtype=np.int8), (np.concatenate([rows, rows]), edges)), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def _inspect(path: str, report: AuditReport, min_size: int, options: ReadOptions) -> tuple[str, int] | None:
    """Fully decode one image; returns (content hash, perceptual hash) or None when unreadable."""
    try:
        decoded = open_image(path, options)
        img = decoded.image
        size, mode = f"{img.width}x{img.height}", decoded.mode
        small = min(img.width, img.height) < min_size
        fraction = _coloured_fraction(img)
        hashes = content_hash(img), perceptual_hash(img)
    except ImageReadError as err:
        report.unreadable.append({"image": path, "reason": err.reason})
        return None
    except (OSError, SyntaxError, ValueError) as err:
        report.unreadable.append({"image": path, "reason": f"cannot decode: {err.__cause__ or err}"})
        return None
    report.sizes[size] = report.sizes.get(size, 0) + 1
    report.modes[mode] = report.modes.get(mode, 0) + 1
    report.formats[decoded.format] = report.formats.get(decoded.format, 0) + 1
    if decoded.frames > 1:
        report.frames[str(decoded.frames)] = report.frames.get(str(decoded.frames), 0) + 1
    facts = decoded.dicom
    if facts is not None:
        if facts.identifying_attributes:
            report.identifying.append({"image": path, "attributes": list(facts.identifying_attributes)})
        if facts.burned_in_annotation:
            report.burned_in_annotation.append(path)
        if facts.modality != "US":
            report.other_modality.append({"image": path, "modality": facts.modality or "missing"})
    if small:
        report.too_small.append(path)
    if fraction >= COLOUR_FRACTION:
        report.colour_annotated.append({"image": path, "coloured_fraction": round(fraction, 6)})
    return hashes


def _coloured_fraction(img: Image.Image) -> float:
    if img.mode in ("L", "LA", "1", "I", "I;16", "F"):
        return 0.0
    rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    return float((chroma > COLOUR_CHROMA).mean())


def _find_duplicates(report: AuditReport, content: list[str], phash: list[int]) -> None:
    by_content: dict[str, list[int]] = defaultdict(list)
    by_group: dict[int, list[int]] = defaultdict(list)
    for index, (digest, item) in enumerate(zip(content, report.items)):
        by_content[digest].append(index)
        by_group[item["group"]].append(index)
    paths = [item["image"] for item in report.items]
    labels = [item["label"] for item in report.items]
    exact = [members for members in by_content.values() if len(members) > 1]
    report.exact_duplicates = [[paths[i] for i in members] for members in exact]
    near = [m for m in by_group.values() if len(m) > 1 and len({content[i] for i in m}) > 1]
    report.near_duplicates = [[paths[i] for i in members] for members in near]
    for kind, groups in (("exact", exact), ("near", near)):
        for members in groups:
            classes = sorted({labels[i] for i in members})
            if len(classes) > 1:
                distance = max(hamming(phash[members[0]], phash[i]) for i in members)
                report.label_conflicts.append(
                    {
                        "kind": kind,
                        "images": [paths[i] for i in members],
                        "classes": [report.classes[labels[i]] for i in members],
                        "max_hash_distance": distance,
                    }
                )


def _top(counter: dict[str, int], limit: int = 8) -> list[tuple[str, int]]:
    return sorted(counter.items(), key=lambda kv: -kv[1])[:limit]


def _group_lines(report: AuditReport, groups: list[list[str]]) -> list[str]:
    root = Path(report.source)
    return [" | ".join(_short(p, root) for p in group) for group in groups]


def _short(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def _section(title: str, entries: list[str], max_listed: int) -> list[str]:
    lines = [f"  {title}: {len(entries)}"]
    lines += [f"    - {entry}" for entry in entries[:max_listed]]
    if len(entries) > max_listed:
        lines.append(f"    ... and {len(entries) - max_listed} more (see the JSON report)")
    return lines
