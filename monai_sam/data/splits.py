"""Leakage-free stratified splits: duplicate groups never straddle training, validation and test.

Groups come from the audit (images within the perceptual-hash threshold, exact copies included). Groups whose
images carry different labels are label conflicts and are excluded by default.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from monai_sam.data.audit import AuditReport, audit_dataset
from monai_sam.data.datalist import SPLIT_KEYS, Datalist, build_datalist
from monai_sam.data.image_hashing import DEFAULT_HASH_THRESHOLD
from monai_sam.data.image_reading import ReadOptions


def allocate_groups(
    group_labels: list[int], group_sizes: list[int], fractions: list[float], seed: int
) -> np.ndarray:
    """Assign whole groups to bins so that each class is spread over the bins in the given fractions.

    Groups are placed largest first (random order among equal sizes, from ``seed``), each into the bin
    whose share of that class is furthest below its target.

    Args:
        group_labels: the class of each group.
        group_sizes: number of images in each group.
        fractions: target fraction of every class per bin (sums to 1).
        seed: random seed for the order of equal-sized groups and for ties.

    Returns:
        The bin index of every group.
    """
    rng = np.random.default_rng(seed)
    labels, sizes = np.asarray(group_labels, dtype=np.int64), np.asarray(group_sizes, dtype=np.float64)
    fractions_arr = np.asarray(fractions, dtype=np.float64)
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    totals = np.bincount(labels, weights=sizes, minlength=num_classes)
    targets = fractions_arr[:, None] * totals[None, :]  # (bins, classes)
    filled = np.zeros_like(targets)
    order = rng.permutation(len(labels))
    order = order[np.argsort(-sizes[order], kind="stable")]
    bins = np.zeros(len(labels), dtype=np.int64)
    for g in order:
        c = labels[g]
        deficit = (targets[:, c] - filled[:, c]) / np.maximum(targets[:, c], 1e-9)
        deficit[fractions_arr <= 0] = -np.inf
        best = np.flatnonzero(deficit == deficit.max())
        bins[g] = best[rng.integers(len(best))] if len(best) > 1 else best[0]
        filled[bins[g], c] += sizes[g]
    return bins


def make_splits(
    source: str | Path | Datalist,
    num_folds: int = 5,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    num_classes: int | None = 3,
    hash_threshold: int = DEFAULT_HASH_THRESHOLD,
    exclude_conflicts: bool = True,
    out_dir: str | Path | None = None,
    audit: AuditReport | None = None,
    reader_options: ReadOptions | Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Make stratified, group-aware k-fold or train/validation/test splits.

    With ``num_folds >= 2`` fold ``i`` is the test set of split ``i`` and a validation set of about
    ``val_fraction`` of all images is carved, group-aware and stratified, from the other folds. With
    ``num_folds`` 0 or 1 one split with ``test_fraction`` and ``val_fraction`` is made.

    Args:
        source: a directory, CSV, datalist JSON or :class:`Datalist`.
        num_folds: number of folds; 0 or 1 for a single train/validation/test split.
        seed: random seed; equal seeds give identical splits.
        val_fraction: fraction of all images used for validation.
        test_fraction: fraction of all images used for testing (single split only).
        num_classes: passed to :func:`build_datalist` (2 drops ``normal``).
        hash_threshold: near-duplicate threshold of the audit (bits out of 64).
        exclude_conflicts: leave out groups whose duplicates carry different labels (listed in metadata).
        out_dir: when given, write ``fold_{i}.json`` (or ``split.json``) and ``split_summary.json`` there.
        audit: a ready audit of the same items (skips re-hashing).
        reader_options: DICOM frame, NIfTI slice and ultrasound-region crop used to read the images.

    Returns:
        One split dictionary per fold (``classes``, ``training``, ``validation``, ``test``, ``metadata``).
    """
    _check_fractions(num_folds, val_fraction, test_fraction)
    if isinstance(source, Datalist):
        datalist = source
    else:
        datalist = build_datalist(source, num_classes=num_classes, reader_options=reader_options)
    if audit is None:
        audit = audit_dataset(datalist, hash_threshold=hash_threshold, reader_options=reader_options)
    groups, excluded = _usable_groups(datalist, audit, exclude_conflicts)
    keys = sorted(groups)
    labels = [Counter(item["label"] for item in groups[k]).most_common(1)[0][0] for k in keys]
    sizes = [len(groups[k]) for k in keys]
    base = {
        "source": datalist.source,
        "seed": seed,
        "num_folds": num_folds if num_folds >= 2 else 0,
        "val_fraction": val_fraction,
        "hash_threshold": audit.hash_threshold,
        "exclude_conflicts": exclude_conflicts,
        "num_groups": len(keys),
        "excluded": excluded,
    }
    splits = []
    if num_folds >= 2:
        folds = allocate_groups(labels, sizes, [1.0 / num_folds] * num_folds, seed)
        inner_val = val_fraction / (1.0 - 1.0 / num_folds)
        for fold in range(num_folds):
            rest = [i for i in range(len(keys)) if folds[i] != fold]
            inner = allocate_groups(
                [labels[i] for i in rest],
                [sizes[i] for i in rest],
                [1 - inner_val, inner_val],
                seed + 1000 * (fold + 1),
            )
            assign = {keys[i]: 2 for i in range(len(keys)) if folds[i] == fold}
            assign.update({keys[i]: int(b) for i, b in zip(rest, inner)})
            splits.append(_build_split(datalist.classes, groups, assign, {**base, "fold": fold}))
    else:
        fractions = [1.0 - val_fraction - test_fraction, val_fraction, test_fraction]
        bins = allocate_groups(labels, sizes, fractions, seed)
        assign = {k: int(b) for k, b in zip(keys, bins)}
        splits.append(
            _build_split(
                datalist.classes, groups, assign, {**base, "fold": None, "test_fraction": test_fraction}
            )
        )
    if out_dir is not None:
        write_splits(splits, out_dir, audit)
    return splits


def write_splits(
    splits: list[dict[str, Any]], out_dir: str | Path, audit: AuditReport | None = None
) -> list[Path]:
    """Write ``fold_{i}.json`` (or ``split.json``) and ``split_summary.json``; returns the split paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = (
        [f"fold_{i}.json" for i in range(len(splits))]
        if splits[0]["metadata"]["num_folds"]
        else ["split.json"]
    )
    paths = []
    for name, split in zip(names, splits):
        paths.append(out / name)
        paths[-1].write_text(json.dumps(split, indent=2))
    summary = {
        "source": splits[0]["metadata"]["source"],
        "classes": splits[0]["classes"],
        "seed": splits[0]["metadata"]["seed"],
        "num_folds": splits[0]["metadata"]["num_folds"],
        "files": names,
        "counts": [split["metadata"]["counts"] for split in splits],
        "excluded": splits[0]["metadata"]["excluded"],
        "audit": audit.to_dict()["summary"] if audit is not None else None,
    }
    (out / "split_summary.json").write_text(json.dumps(summary, indent=2))
    return paths


def load_split(path: str | Path, num_classes: int | None = None) -> dict[str, Any]:
    """Load and validate a split JSON (files exist, labels in range, classes consistent).

    Raises:
        FileNotFoundError: the split or one of its images is missing.
        ValueError: missing keys, labels out of range or a class count other than ``num_classes``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file does not exist: {path}")
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"split file {path} is not valid JSON: {err}") from err
    missing_keys = [k for k in ("classes", *SPLIT_KEYS) if not isinstance(split, dict) or k not in split]
    if missing_keys:
        raise ValueError(f"split file {path} lacks key(s) {missing_keys}; make one with `monai-sam split`")
    classes = split["classes"]
    if num_classes is not None and len(classes) != num_classes:
        raise ValueError(
            f"split file {path} has {len(classes)} classes {classes} but num_classes={num_classes}"
        )
    missing, bad = [], []
    for key in SPLIT_KEYS:
        for item in split[key]:
            label = item.get("label")
            if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(classes):
                bad.append(f"{key}: {item}")
            image = Path(item.get("image", ""))
            if not image.is_absolute():  # relative paths are relative to the split file
                image = path.parent / image
                item["image"] = str(image.resolve())
            if not image.is_file():
                missing.append(str(image))
    if bad:
        raise ValueError(f"split file {path}: label(s) not in 0..{len(classes) - 1}: {'; '.join(bad[:5])}")
    if missing:
        raise FileNotFoundError(
            f"split file {path} lists {len(missing)} missing image(s): {', '.join(missing[:5])}"
        )
    if not split["training"]:
        raise ValueError(f"split file {path} has an empty training list")
    split.setdefault("metadata", {})
    return split


def _check_fractions(num_folds: int, val_fraction: float, test_fraction: float) -> None:
    if num_folds < 0:
        raise ValueError(f"folds must be >= 0, got {num_folds}")
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
        raise ValueError(
            f"val_fraction and test_fraction must be in [0, 1), got {val_fraction}, {test_fraction}"
        )
    held_out = val_fraction + (1.0 / num_folds if num_folds >= 2 else test_fraction)
    if held_out >= 1:
        raise ValueError(f"validation + test fractions leave no training data ({held_out:.2f} >= 1)")


def _usable_groups(
    datalist: Datalist, audit: AuditReport, exclude_conflicts: bool
) -> tuple[dict[int, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Group the datalist items by audit group; drop unreadable items and (optionally) conflicts."""
    group_of = {item["image"]: item["group"] for item in audit.items}
    excluded = [{**s, "label": None} for s in datalist.skipped]
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for item in datalist.items:
        if item["image"] not in group_of:
            excluded.append({"image": item["image"], "label": item["label"], "reason": "unreadable"})
            continue
        groups[group_of[item["image"]]].append({"image": item["image"], "label": item["label"]})
    if exclude_conflicts:
        for key in [k for k, members in groups.items() if len({m["label"] for m in members}) > 1]:
            members = groups.pop(key)
            names = ", ".join(f"{Path(m['image']).name}={datalist.classes[m['label']]}" for m in members)
            excluded += [{**m, "reason": f"label conflict between duplicates: {names}"} for m in members]
    return groups, excluded


def _build_split(
    classes: list[str], groups: dict[int, list[dict[str, Any]]], assign: dict[int, int], metadata: dict
) -> dict[str, Any]:
    parts: list[list[dict[str, Any]]] = [[], [], []]
    for key, members in groups.items():
        parts[assign[key]].extend(members)
    for part in parts:
        part.sort(key=lambda item: item["image"])
    counts = {
        key: {name: sum(1 for item in part if item["label"] == i) for i, name in enumerate(classes)}
        for key, part in zip(SPLIT_KEYS, parts)
    }
    return {
        "classes": list(classes),
        "training": parts[0],
        "validation": parts[1],
        "test": parts[2],
        "metadata": {**metadata, "counts": counts},
    }
