"""The ``overlay`` sub-command of ``monai-sam``: SAM for an existing MONAI bundle, without editing it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monai_sam.cli.overlay_config import (
    BundleTraining,
    build_overlay,
    find_training,
    format_overlay,
    load_bundle_config,
    run_command,
    write_overlay,
)
from monai_sam.optimizers.factory import METHODS, PLAIN_OPTIMIZERS
from monai_sam.optimizers.wrapping import KEEP_BASE

#: what --optimizer accepts: every sharpness-aware method (bSAM is refused with its reason), the bundle's
#: optimizer as it is ("none", or its own plain name).
OVERLAY_CHOICES = [*sorted(METHODS), KEEP_BASE, *sorted(PLAIN_OPTIMIZERS)]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``overlay`` sub-command."""
    overlay = subparsers.add_parser(
        "overlay",
        help="write a config that trains an existing MONAI bundle with a sharpness-aware optimizer",
        description=(
            "Read a bundle's train config(s), merged in the given order, find its SupervisedTrainer and "
            "the optimizer it uses, and write an overlay config to put LAST in --config_file."
        ),
    )
    overlay.add_argument(
        "configs", nargs="+", metavar="CONFIG", help="the bundle's train config(s), JSON or YAML"
    )
    overlay.add_argument(
        "--optimizer",
        required=True,
        choices=OVERLAY_CHOICES,
        metavar="NAME",
        help=(
            f"a sharpness-aware method {sorted(METHODS)}, or {KEEP_BASE!r} (or the bundle optimizer's own "
            f"name, {sorted(PLAIN_OPTIMIZERS)}) for the bundle's optimizer as it is; switch at run time with "
            "--sam_optimizer NAME"
        ),
    )
    overlay.add_argument("--rho", type=float, default=None, help="neighbourhood size (default: the method's)")
    overlay.add_argument("--out", metavar="FILE", help="overlay file, .yaml/.yml or .json (default: stdout)")
    overlay.set_defaults(func=run_overlay)


def run_overlay(args: argparse.Namespace) -> int:
    """Write (or print) the overlay and the command that runs it."""
    training = find_training(load_bundle_config(args.configs))
    overlay = build_overlay(training, args.optimizer, args.rho)
    configs = [str(c) for c in args.configs]
    out = Path(args.out) if args.out else None
    if out is not None and any(out.resolve() == Path(c).resolve() for c in configs):
        raise ValueError(f"--out {out} is one of the input configs; choose another file.")
    run_id = training.run_ids[0] if training.run_ids else None
    run = run_command([*configs, str(out) if out else "sam.yaml"], run_id)
    header = [
        f"monai-sam overlay --optimizer {overlay['sam_optimizer']} for {', '.join(configs)}",
        f"trainer: {training.trainer_id}; optimizer: {training.optimizer_id} ({training.optimizer_target})",
        "put this file LAST in --config_file (after multi_gpu_train too):",
        run,
        f"override on the command line: --sam_optimizer NAME --sam_rho R; --sam_optimizer "
        f"{_baseline(training)} trains with the bundle's own optimizer (the A/B baseline)",
    ]
    if run_id is None:
        print(
            f"warning: no top-level id of the bundle runs {training.trainer_id}.run(); the command uses "
            "MONAI's default run id 'run': put the bundle's own after 'run' if it has another.",
            file=sys.stderr,
        )
    if out is None:
        sys.stdout.write(format_overlay(overlay, ".yaml", header))
        print(f"# {header[1]}\n# run: {run}", file=sys.stderr)
        return 0
    write_overlay(overlay, out, header)
    print(f"overlay written to {out}: {overlay['sam_optimizer']} (rho {overlay['sam_rho']}) for {header[1]}")
    print(f"run (overlay last): {run}")
    print(f"the bundle's own optimizer (A/B baseline): {run} --sam_optimizer {_baseline(training)}")
    return 0


def _baseline(training: BundleTraining) -> str:
    """The ``--sam_optimizer`` value that keeps the bundle's optimizer: its plain name, else ``none``."""
    names = [name for name, cls in PLAIN_OPTIMIZERS.items() if training.optimizer_class is cls]
    return names[0] if names else KEEP_BASE
