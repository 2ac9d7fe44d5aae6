"""What builds the monai-sam bundles, referenced from their configs by full dotted path.

``monai_sam.bundle.inputs``: the split from the ``dataset_dir``/``datalist`` knobs, folders of images;
``monai_sam.bundle.torchrun``: the process group of ``multi_gpu_train`` and the handlers each rank attaches;
``monai_sam.bundle.logs``: the run's log file; ``monai_sam.bundle.summary``: the end-of-run summaries and the
settings for MLflow; ``monai_sam.bundle.external``: external test sets in the evaluate config;
``monai_sam.bundle.prediction``: class probabilities of a list of images through the evaluation transforms;
``monai_sam.bundle.knobs``: renamed knobs on the command line stop the run with the new name;
``monai_sam.bundle.user_errors`` (imported by the configs, not here; ``initialize`` installs its hook): a
failure caused by the input or settings ends with its cause on the last line.

The Ignite handlers and metrics the configs attach live in :mod:`monai_sam.handlers`, the figures in
:mod:`monai_sam.visualize`, checkpoint loading in :mod:`monai_sam.networks.checkpoint`, and the overlay of
``monai-sam overlay`` in :mod:`monai_sam.cli.overlay_config`. Their old names here
(``monai_sam.bundle.<name>`` and the old submodules ``plots``, ``reports``, ``metrics``, ``resume``,
``checkpoint``, ``distributed`` and ``overlay``) still resolve, so that configs users copied keep working.
"""

import importlib
from typing import Any

from monai_sam.bundle.external import ExternalEvaluation
from monai_sam.bundle.inputs import bundle_datalist, default_class_names, image_folder_datalist, select_split
from monai_sam.bundle.knobs import reject_renamed_knobs
from monai_sam.bundle.logs import add_file_log, remove_file_logs
from monai_sam.bundle.prediction import predict_probabilities
from monai_sam.bundle.summary import (
    evaluation_summary,
    inference_summary,
    print_summary,
    track_settings,
    training_summary,
)
from monai_sam.bundle.torchrun import (
    close_distributed,
    init_distributed,
    is_main_process,
    main_process_first,
    rank_handlers,
)

__all__ = [
    "ExternalEvaluation",
    "add_file_log",
    "bundle_datalist",
    "close_distributed",
    "default_class_names",
    "evaluation_summary",
    "image_folder_datalist",
    "inference_summary",
    "init_distributed",
    "is_main_process",
    "main_process_first",
    "predict_probabilities",
    "print_summary",
    "rank_handlers",
    "reject_renamed_knobs",
    "remove_file_logs",
    "select_split",
    "track_settings",
    "training_summary",
]

#: Names that moved out of this package, and the module each now lives in. ``monai_sam.bundle.<name>`` still
#: resolves to them (silently), so that configs users copied keep working.
MOVED_NAMES: dict[str, str] = {
    **dict.fromkeys(
        (
            "ClassificationPlots",
            "ClassificationReport",
            "ClassificationScore",
            "EpochProgressBar",
            "MetricsJSONWriter",
            "PredictionWriter",
            "RandomStreams",
            "ResumeHandler",
            "StopAtEpoch",
            "TestAfterTraining",
            "TrainingCurves",
            "ValidationState",
            "find_resume_checkpoint",
            "probabilities_and_labels",
            "training_scalars",
        ),
        "monai_sam.handlers",
    ),
    **dict.fromkeys(
        (
            "plot_binary_roc",
            "plot_confusion_matrix",
            "plot_reliability",
            "plot_roc_curves",
            "plot_training_curves",
        ),
        "monai_sam.visualize",
    ),
    "load_network_checkpoint": "monai_sam.networks.checkpoint",
    "write_json": "monai_sam.json_files",
}


def __getattr__(name: str) -> Any:
    """Resolve a name that moved out of ``monai_sam.bundle`` from its new module (PEP 562).

    Args:
        name: the attribute looked up on ``monai_sam.bundle``.
    """
    if name in MOVED_NAMES:
        return getattr(importlib.import_module(MOVED_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The package's names, including those that moved out (for completion and ``dir``)."""
    return sorted([*globals(), *MOVED_NAMES])
