"""The data sub-commands of ``monai-sam``: ``audit``, ``split`` and ``phantom``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from monai_sam.data.audit import audit_dataset
from monai_sam.data.datalist import build_datalist
from monai_sam.data.image_hashing import DEFAULT_HASH_THRESHOLD
from monai_sam.data.image_reading import ReadOptions
from monai_sam.data.phantom import PHANTOM_CLASSES, make_phantom_dataset
from monai_sam.data.splits import make_splits


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``audit``, ``split`` and ``phantom`` sub-commands."""
    audit = subparsers.add_parser(
        "audit", help="audit a data set: counts, unreadable files, duplicates, conflicts"
    )
    audit.add_argument("source", help="BUSI-layout or class-folder directory, CSV or datalist JSON")
    _add_common(audit)
    audit.add_argument("--max-listed", type=int, default=20, help="entries listed per section (default 20)")
    audit.add_argument("--strict", action="store_true", help="exit 1 on unreadable files or label conflicts")
    audit.set_defaults(func=run_audit)

    split = subparsers.add_parser("split", help="leakage-free stratified k-fold or train/val/test splits")
    split.add_argument("source", help="BUSI-layout or class-folder directory, CSV or datalist JSON")
    split.add_argument("--out", required=True, help="output directory for fold_{i}.json or split.json")
    split.add_argument("--folds", type=int, default=5, help="number of folds; 0 for one split (default 5)")
    split.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    split.add_argument("--val-fraction", type=float, default=0.1, help="validation share of all images")
    split.add_argument("--test-fraction", type=float, default=0.2, help="test share with --folds 0")
    split.add_argument(
        "--keep-conflicts", action="store_true", help="keep duplicates with conflicting labels"
    )
    _add_common(split)
    split.set_defaults(func=run_split)

    phantom = subparsers.add_parser("phantom", help="write the synthetic B-mode phantom in the BUSI layout")
    phantom.add_argument("--out", required=True, help="dataset directory to create")
    phantom.add_argument("--num-per-class", type=int, default=40, help="images per class (default 40)")
    phantom.add_argument("--image-size", type=int, default=128, help="image side in pixels (default 128)")
    phantom.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    phantom.add_argument("--difficulty", type=float, default=0.5, help="0 (easy) to 1 (hard), default 0.5")
    phantom.add_argument("--classes", nargs="+", default=list(PHANTOM_CLASSES), choices=PHANTOM_CLASSES)
    phantom.add_argument("--json", metavar="PATH", help="also write a JSON summary to PATH")
    phantom.set_defaults(func=run_phantom)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="expected classes; 2 drops 'normal' (default: all found)",
    )
    parser.add_argument(
        "--threshold",
        type=int,
        default=DEFAULT_HASH_THRESHOLD,
        help=f"near-duplicate pHash distance in bits out of 64 (default {DEFAULT_HASH_THRESHOLD})",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the machine-readable result to PATH")
    parser.add_argument(
        "--frame",
        type=_index_or_middle,
        default=0,
        help="frame of multi-frame DICOM files: an index from 0 or 'middle' (default 0, the first)",
    )
    parser.add_argument(
        "--nifti-slice",
        type=_index_or_middle,
        default=None,
        help="slice of 3-D NIfTI volumes along their last axis: an index from 0 or 'middle' "
        "(default: none, volumes are an error)",
    )
    parser.add_argument(
        "--no-crop-region",
        action="store_true",
        help="read whole DICOM images instead of cropping them to their ultrasound region",
    )


def _index_or_middle(text: str) -> int | str:
    if text == "middle":
        return text
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an index >= 0 or 'middle', got {text!r}")
    return int(text)


def _reader_options(args: argparse.Namespace) -> ReadOptions:
    return ReadOptions(frame=args.frame, nifti_slice=args.nifti_slice, crop_region=not args.no_crop_region)


def run_audit(args: argparse.Namespace) -> int:
    """Print the audit report; with ``--strict`` return 1 on unreadable files or label conflicts."""
    options = _reader_options(args)
    data = build_datalist(args.source, num_classes=args.num_classes, min_size=1, reader_options=options)
    report = audit_dataset(data, hash_threshold=args.threshold, progress=True, reader_options=options)
    print(report.format_text(max_listed=args.max_listed))
    if args.json:
        report.save(args.json)
        print(f"JSON report: {args.json}")
    return int(bool(args.strict and (report.unreadable or report.label_conflicts)))


def run_split(args: argparse.Namespace) -> int:
    """Write the split files and print the per-split class counts."""
    splits = make_splits(
        args.source,
        num_folds=args.folds,
        seed=args.seed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        num_classes=args.num_classes,
        hash_threshold=args.threshold,
        exclude_conflicts=not args.keep_conflicts,
        out_dir=args.out,
        reader_options=_reader_options(args),
    )
    meta = splits[0]["metadata"]
    print(f"{len(splits)} split(s) of {meta['source']} (seed {args.seed}, {meta['num_groups']} groups)")
    print(f"  written to {args.out}")
    for split in splits:
        name = f"fold {split['metadata']['fold']}" if split["metadata"]["fold"] is not None else "split"
        counts = "  ".join(f"{key}: {_fmt(c)}" for key, c in split["metadata"]["counts"].items())
        print(f"  {name}: {counts}")
    for item in meta["excluded"]:
        print(f"  excluded {item['image']}: {item['reason']}")
    if args.json:
        _write_json(args.json, json.loads((Path(args.out) / "split_summary.json").read_text()))
    return 0


def run_phantom(args: argparse.Namespace) -> int:
    """Generate the phantom and print where it went."""
    out = make_phantom_dataset(
        args.out,
        num_per_class=args.num_per_class,
        image_size=args.image_size,
        seed=args.seed,
        difficulty=args.difficulty,
        classes=args.classes,
        progress=True,
    )
    data = build_datalist(out, num_classes=None)
    print(f"phantom: {len(data)} images in {out} ({_fmt(data.label_counts())})")
    print(f"  datalist: {out / 'datalist.json'}")
    if args.json:
        _write_json(
            args.json, {"dataset_dir": str(out), "counts": data.label_counts(), "classes": data.classes}
        )
    return 0


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def _write_json(path: str, data: Any) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2))
