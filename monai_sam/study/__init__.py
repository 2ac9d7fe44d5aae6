"""Optimizer comparison studies: networks x optimizers x folds x seeds, with statistics and a report.

``monai-sam study --preset quick --output DIR`` (or ``--config study.yaml``) is the command-line form.
In Python::

    from monai_sam.study import load_preset, run_study, write_report

    config = load_preset("busi-cpu")
    run_study(config, "runs/busi")  # resumable: rerun to continue
    write_report("runs/busi")

Training goes through the bundles' ``configs/train.json`` (see :mod:`monai_sam.study.training`).
"""

from __future__ import annotations

import importlib
from typing import Any

# Public names and their modules; imported on first use so that ``monai-sam --help`` stays fast
# (the report pulls in matplotlib and scipy).
_EXPORTS = {
    "Comparison": "analysis",
    "claims_table": "analysis",
    "compare_to_baseline": "analysis",
    "summarize": "analysis",
    "compare_external": "generalization",
    "summarize_external": "generalization",
    "PRESETS": "config",
    "NetworkSpec": "config",
    "OptimizerSpec": "config",
    "StudyConfig": "config",
    "available_presets": "config",
    "load_config": "config",
    "load_preset": "config",
    "RunSpec": "grid",
    "expand_grid": "grid",
    "write_report": "report",
    "load_runs": "runner",
    "read_study_config": "runner",
    "run_study": "runner",
    "holm": "statistics",
    "paired_bootstrap_ci": "statistics",
    "t_interval": "statistics",
    "wilcoxon_paired": "statistics",
}


def __getattr__(name: str) -> Any:
    """Import public names lazily from their modules."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'monai_sam.study' has no attribute {name!r}")
    return getattr(importlib.import_module(f"monai_sam.study.{_EXPORTS[name]}"), name)


__all__ = [
    "PRESETS",
    "Comparison",
    "NetworkSpec",
    "OptimizerSpec",
    "RunSpec",
    "StudyConfig",
    "available_presets",
    "claims_table",
    "compare_external",
    "compare_to_baseline",
    "expand_grid",
    "holm",
    "load_config",
    "load_preset",
    "load_runs",
    "paired_bootstrap_ci",
    "read_study_config",
    "run_study",
    "summarize",
    "summarize_external",
    "t_interval",
    "wilcoxon_paired",
    "write_report",
]
