"""Building blocks of the monai-sam bundles, referenced from their configs by full dotted path.

``monai_sam.bundle.metrics``: multi-class metrics from probabilities (correct for 3 classes);
``monai_sam.bundle.reports``: metrics JSON and per-image predictions CSV writers;
``monai_sam.bundle.inputs``: the split from the ``dataset_dir``/``datalist`` knobs, folders of images;
``monai_sam.bundle.checkpoint``: strict checkpoint loading with clear errors;
``monai_sam.bundle.resume``: the ``resume`` knob, random and validation state for exact resuming;
``monai_sam.bundle.distributed``: torchrun set-up; ``monai_sam.bundle.logs``: log file, scalars, progress.
``monai_sam.bundle.overlay``: the overlay config of ``monai-sam overlay`` (SAM for an existing bundle).
"""

from monai_sam.bundle.checkpoint import load_network_checkpoint
from monai_sam.bundle.distributed import init_distributed, is_main_process, main_process_first, rank_handlers
from monai_sam.bundle.inputs import bundle_datalist, default_class_names, image_folder_datalist, select_split
from monai_sam.bundle.logs import EpochProgressBar, add_file_log, remove_file_logs, training_scalars
from monai_sam.bundle.metrics import ClassificationReport, ClassificationScore, probabilities_and_labels
from monai_sam.bundle.reports import MetricsJSONWriter, PredictionWriter, write_json
from monai_sam.bundle.resume import (
    RandomStreams,
    ResumeHandler,
    StopAtEpoch,
    ValidationState,
    find_resume_checkpoint,
)

__all__ = [
    "ClassificationReport",
    "ClassificationScore",
    "EpochProgressBar",
    "MetricsJSONWriter",
    "PredictionWriter",
    "RandomStreams",
    "ResumeHandler",
    "StopAtEpoch",
    "ValidationState",
    "add_file_log",
    "bundle_datalist",
    "default_class_names",
    "find_resume_checkpoint",
    "image_folder_datalist",
    "init_distributed",
    "is_main_process",
    "load_network_checkpoint",
    "main_process_first",
    "probabilities_and_labels",
    "rank_handlers",
    "remove_file_logs",
    "select_split",
    "training_scalars",
    "write_json",
]
