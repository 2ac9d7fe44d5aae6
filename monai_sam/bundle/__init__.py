"""Building blocks of the monai-sam bundles, referenced from their configs by full dotted path.

``monai_sam.bundle.metrics``: multi-class metrics from probabilities (correct for 3 classes);
``monai_sam.bundle.reports``: metrics JSON and per-image predictions CSV writers;
``monai_sam.bundle.inputs``: the split from the ``dataset_dir``/``datalist`` knobs, folders of images;
``monai_sam.bundle.checkpoint``: strict checkpoint loading with clear errors;
``monai_sam.bundle.resume``: the ``resume`` knob, random and validation state for exact resuming;
``monai_sam.bundle.distributed``: torchrun set-up; ``monai_sam.bundle.logs``: log file, scalars, progress;
``monai_sam.bundle.plots``: training curves, ROC and confusion PNGs; ``monai_sam.bundle.summary``: the test
evaluation after training and the end-of-run summaries; ``monai_sam.bundle.user_errors`` (imported by the
configs, not here): a failure caused by the input or settings ends with its cause on the last line.
``monai_sam.bundle.external``: external test sets in ``evaluate.yaml``; ``monai_sam.bundle.prediction``: class
probabilities of a list of images through the evaluation transforms.
``monai_sam.bundle.overlay``: the overlay config of ``monai-sam overlay`` (SAM for an existing bundle).
"""

from monai_sam.bundle.checkpoint import load_network_checkpoint
from monai_sam.bundle.distributed import (
    close_distributed,
    init_distributed,
    is_main_process,
    main_process_first,
    rank_handlers,
)
from monai_sam.bundle.external import ExternalEvaluation
from monai_sam.bundle.inputs import bundle_datalist, default_class_names, image_folder_datalist, select_split
from monai_sam.bundle.logs import EpochProgressBar, add_file_log, remove_file_logs, training_scalars
from monai_sam.bundle.metrics import ClassificationReport, ClassificationScore, probabilities_and_labels
from monai_sam.bundle.plots import (
    ClassificationPlots,
    TrainingCurves,
    plot_binary_roc,
    plot_confusion_matrix,
    plot_reliability,
    plot_roc_curves,
    plot_training_curves,
)
from monai_sam.bundle.prediction import predict_probabilities
from monai_sam.bundle.reports import MetricsJSONWriter, PredictionWriter, write_json
from monai_sam.bundle.resume import (
    RandomStreams,
    ResumeHandler,
    StopAtEpoch,
    ValidationState,
    find_resume_checkpoint,
)
from monai_sam.bundle.summary import (
    TestAfterTraining,
    evaluation_summary,
    inference_summary,
    print_summary,
    track_settings,
    training_summary,
)

__all__ = [
    "ClassificationPlots",
    "ClassificationReport",
    "ClassificationScore",
    "EpochProgressBar",
    "ExternalEvaluation",
    "MetricsJSONWriter",
    "PredictionWriter",
    "RandomStreams",
    "ResumeHandler",
    "StopAtEpoch",
    "TestAfterTraining",
    "TrainingCurves",
    "ValidationState",
    "add_file_log",
    "bundle_datalist",
    "close_distributed",
    "default_class_names",
    "evaluation_summary",
    "find_resume_checkpoint",
    "image_folder_datalist",
    "inference_summary",
    "init_distributed",
    "is_main_process",
    "load_network_checkpoint",
    "main_process_first",
    "plot_binary_roc",
    "plot_confusion_matrix",
    "plot_reliability",
    "plot_roc_curves",
    "plot_training_curves",
    "predict_probabilities",
    "print_summary",
    "probabilities_and_labels",
    "rank_handlers",
    "remove_file_logs",
    "select_split",
    "track_settings",
    "training_scalars",
    "training_summary",
    "write_json",
]
