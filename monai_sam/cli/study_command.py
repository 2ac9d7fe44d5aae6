"""``monai-sam study``: run an optimizer comparison study (resumable) and write its report."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["apply_overrides", "register", "run_study_command"]


def register(subparsers: Any) -> None:
    """Add the ``study`` sub-command to ``subparsers``."""
    from monai_sam.study.config import PRESETS

    parser = subparsers.add_parser(
        "study",
        help="run an optimizer comparison study (networks x optimizers x folds x seeds) and its report",
        description=(
            "Train every network x optimizer x fold x seed of a study through the bundles, saving each run "
            "as soon as it finishes (rerun the same command to resume), then write report.md, CSVs and plots."
        ),
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="study YAML (see docs/study.md)")
    source.add_argument("--preset", choices=PRESETS, help="built-in study: " + ", ".join(PRESETS))
    parser.add_argument("--output", type=Path, required=True, help="output directory (resumes if it exists)")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the report of --output")
    group = parser.add_argument_group("overrides of the config")
    group.add_argument(
        "--dataset-dir", help="data folder (class sub-folders); sets data.source to busi/folder"
    )
    group.add_argument("--max-epochs", type=int)
    group.add_argument("--image-size", type=int)
    group.add_argument("--batch-size", type=int)
    group.add_argument("--lr", type=float)
    group.add_argument("--folds", type=int, nargs="+", help="fold indices to run")
    group.add_argument("--seeds", type=int, nargs="+")
    group.add_argument("--repeats", type=int, help="repeats of the k-fold split (data.repeats)")
    group.add_argument("--networks", nargs="+", help="network names (replaces the list)")
    group.add_argument("--optimizers", nargs="+", help="keep only these optimizer labels")
    group.add_argument("--no-sharpness", action="store_true", help="skip the sharpness measures")
    group.add_argument("--bundles-dir", help="directory holding breast_us_cnn/ and breast_us_vit/")
    group.add_argument("--keep-going", action="store_true", help="record a failed run and continue")
    parser.add_argument("--keep-work", action="store_true", help="keep each run's checkpoints and logs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (1 on a shared machine: oversubscription is very slow)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="grid runs at once, each in its own process with --threads threads (default 1) or one GPU each",
    )
    parser.set_defaults(func=run_study_command)


def apply_overrides(raw: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Apply the command-line overrides to a raw study mapping (before validation)."""
    raw = dict(raw)
    data = dict(raw.get("data") or {})
    train = dict(raw.get("train") or {})
    if getattr(args, "repeats", None) is not None:
        data["repeats"] = args.repeats
    if args.dataset_dir:
        data["dataset_dir"] = args.dataset_dir
        if data.get("source", "phantom") == "phantom":
            data["source"] = "folder"
    for key in ("max_epochs", "image_size", "batch_size", "lr"):
        if getattr(args, key) is not None:
            train[key] = getattr(args, key)
    raw["data"], raw["train"] = data, train
    if args.folds is not None:
        raw["folds"] = args.folds
    if args.seeds is not None:
        raw["seeds"] = args.seeds
    if args.networks:
        raw["networks"] = args.networks
    if args.optimizers:
        wanted = set(args.optimizers)
        raw["optimizers"] = [o for o in raw.get("optimizers", []) if _label(o) in wanted]
        missing = wanted - {_label(o) for o in raw["optimizers"]}
        if missing:
            raise ValueError(f"--optimizers: {sorted(missing)} not in the config's optimizers")
    if args.no_sharpness:
        raw["sharpness"] = {**(raw.get("sharpness") or {}), "enabled": False}
    if args.bundles_dir:
        raw["bundles_dir"] = args.bundles_dir
    if args.keep_going:
        raw["continue_on_error"] = True
    return raw


def _label(item: Any) -> str:
    """The label of a raw optimizer entry (a name or a mapping)."""
    if isinstance(item, str):
        return item.lower()
    return str(item.get("label", item.get("name", ""))).lower()


def run_study_command(args: argparse.Namespace) -> int:
    """Entry point of ``monai-sam study``."""
    from monai_sam.study.config import StudyConfig, preset_dict, read_config_dict
    from monai_sam.study.report import write_report
    from monai_sam.study.runner import read_study_config, run_study

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.report_only:
        config = read_study_config(args.output)
        print(f"report: {write_report(args.output, config)}")
        return 0
    if args.config is None and args.preset is None:
        raise ValueError("give --config study.yaml or --preset quick|busi-cpu|paper (or --report-only)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    raw = read_config_dict(args.config) if args.config else preset_dict(args.preset)
    source = str(args.config) if args.config else f"preset {args.preset!r}"
    config = StudyConfig.from_dict(apply_overrides(raw, args), source=source)
    run_fn = None
    if args.keep_work:
        from monai_sam.study.training import BundleRunFunction

        run_fn = BundleRunFunction(config, args.output, keep_work=True)
    try:
        if args.workers > 1:
            from monai_sam.study.runner import run_study_parallel

            run_study_parallel(
                config,
                args.output,
                args.workers,
                threads=args.threads or 1,
                keep_work=args.keep_work,
                progress=not args.no_progress,
            )
        else:
            run_study(config, args.output, run_fn=run_fn, progress=not args.no_progress)
    except RuntimeError as err:  # a run failed: its traceback is in failed/<run_id>.json
        print(f"monai-sam study: error: {err} (traceback in {args.output}/failed/)", file=sys.stderr)
        write_report(args.output, config)  # the finished runs are still reported
        return 1
    print(f"report: {write_report(args.output, config)}")
    return 0
