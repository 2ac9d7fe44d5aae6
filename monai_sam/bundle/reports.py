"""The bundle's result writers, moved.

Kept so that configs users copied, which name ``monai_sam.bundle.reports.<name>``, still resolve; new
configs and code import from :mod:`monai_sam.handlers` (the writers) and :mod:`monai_sam.json_files`
(``write_json``).
"""

from monai_sam.handlers.metrics_json_writer import MetricsJSONWriter
from monai_sam.handlers.prediction_writer import PredictionWriter
from monai_sam.json_files import write_json

__all__ = [
    "MetricsJSONWriter",
    "PredictionWriter",
    "write_json",
]
