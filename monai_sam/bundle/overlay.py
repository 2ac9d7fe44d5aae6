"""The overlay config of ``monai-sam overlay``, moved next to the CLI: kept so that code which imports
``monai_sam.bundle.overlay`` still runs; new code imports :mod:`monai_sam.cli.overlay_config`.
"""

from monai_sam.cli.overlay_config import (
    OVERLAY_IDS,
    BundleTraining,
    OverlayError,
    build_overlay,
    default_rho,
    find_run_ids,
    find_training,
    format_overlay,
    load_bundle_config,
    run_command,
    write_overlay,
)

__all__ = [
    "OVERLAY_IDS",
    "BundleTraining",
    "OverlayError",
    "build_overlay",
    "default_rho",
    "find_run_ids",
    "find_training",
    "format_overlay",
    "load_bundle_config",
    "run_command",
    "write_overlay",
]
