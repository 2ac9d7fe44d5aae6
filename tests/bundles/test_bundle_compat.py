"""Configs users copied keep working: every name ``monai_sam.bundle`` exported, and every old submodule,
still resolves (silently) to the object that now lives in ``monai_sam.handlers``, ``.visualize``..."""

from __future__ import annotations

import importlib
import warnings

import pytest
from monai.bundle import ConfigParser

import monai_sam.bundle

#: ``monai_sam.bundle.__all__`` before the handlers, figures and overlay moved out.
OLD_EXPORTS = (
    "ClassificationPlots ClassificationReport ClassificationScore EpochProgressBar ExternalEvaluation "
    "MetricsJSONWriter PredictionWriter RandomStreams ResumeHandler StopAtEpoch TestAfterTraining "
    "TrainingCurves ValidationState add_file_log bundle_datalist close_distributed default_class_names "
    "evaluation_summary find_resume_checkpoint image_folder_datalist inference_summary init_distributed "
    "is_main_process load_network_checkpoint main_process_first plot_binary_roc plot_confusion_matrix "
    "plot_reliability plot_roc_curves plot_training_curves predict_probabilities print_summary "
    "probabilities_and_labels rank_handlers remove_file_logs select_split track_settings training_scalars "
    "training_summary write_json"
).split()

#: old submodule -> (a name it exported, the module that now defines it).
OLD_SUBMODULES = {
    "plots": ("ClassificationPlots", "monai_sam.handlers.classification_plots"),
    "reports": ("MetricsJSONWriter", "monai_sam.handlers.metrics_json_writer"),
    "metrics": ("ClassificationScore", "monai_sam.handlers.classification_metrics"),
    "resume": ("ResumeHandler", "monai_sam.handlers.resume"),
    "checkpoint": ("load_network_checkpoint", "monai_sam.networks.checkpoint"),
    "distributed": ("rank_handlers", "monai_sam.bundle.torchrun"),
    "overlay": ("build_overlay", "monai_sam.cli.overlay_config"),
    "logs": ("EpochProgressBar", "monai_sam.handlers.progress_bar"),
    "summary": ("TestAfterTraining", "monai_sam.handlers.evaluation_after_training"),
}


@pytest.mark.parametrize("name", OLD_EXPORTS)
def test_every_old_export_resolves_silently(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = getattr(monai_sam.bundle, name)
    assert name in dir(monai_sam.bundle)
    home = importlib.import_module(value.__module__)
    assert getattr(home, name) is value


@pytest.mark.parametrize("submodule", sorted(OLD_SUBMODULES))
def test_old_submodules_import_and_hold_their_names(submodule):
    name, home = OLD_SUBMODULES[submodule]
    module = importlib.import_module(f"monai_sam.bundle.{submodule}")
    assert getattr(module, name) is getattr(importlib.import_module(home), name)
    assert all(hasattr(module, n) for n in module.__all__)


def test_config_targets_with_old_paths_still_instantiate(tmp_path):
    parser = ConfigParser(
        {
            "writer": {
                "_target_": "monai_sam.bundle.MetricsJSONWriter",
                "output_path": str(tmp_path / "m.json"),
            },
            "old_module": {"_target_": "monai_sam.bundle.resume.StopAtEpoch", "epoch": 2},
            "call": "$monai_sam.bundle.training_scalars([{'loss': 1.0}])",
        },
        globals={"monai_sam": "monai_sam"},
    )
    assert type(parser.get_parsed_content("writer")).__module__ == "monai_sam.handlers.metrics_json_writer"
    assert parser.get_parsed_content("old_module").epoch == 2
    assert parser.get_parsed_content("call") == {"loss": 1.0}


def test_unknown_names_still_fail():
    with pytest.raises(AttributeError, match="no attribute 'NoSuchHandler'"):
        monai_sam.bundle.NoSuchHandler  # noqa: B018
