"""The run records published in study/results/ belong to the preset that made them, the whole grid of it.

A preset edited without redoing its published runs (or records copied from another study) would make the
report in docs/study.md describe a study that the preset no longer runs; the fingerprints catch that.
"""

from pathlib import Path

import pytest
import yaml

from monai_sam.study.config import StudyConfig, load_preset
from monai_sam.study.grid import expand_grid
from monai_sam.study.runner import load_runs, run_fingerprint

RESULTS = Path(__file__).resolve().parents[2] / "study" / "results"


def _published(preset: str) -> tuple[StudyConfig, dict, list[dict]]:
    """The preset (equal to the published study.yaml), its grid by run id, and the published records."""
    folder = RESULTS / preset
    config = load_preset(preset)
    stored = StudyConfig.from_dict(yaml.safe_load((folder / "study.yaml").read_text()))
    assert stored.to_dict() == config.to_dict()
    return config, {s.run_id: s for s in expand_grid(config)}, load_runs(folder)


@pytest.mark.parametrize("preset", ["busi-cpu", "busi-transfer"])
def test_published_records_are_the_presets_whole_grid(preset):
    config, specs, records = _published(preset)
    assert sorted(r["run_id"] for r in records) == sorted(specs)
    stale = [r["run_id"] for r in records if r["fingerprint"] != run_fingerprint(config, specs[r["run_id"]])]
    assert stale == []
    assert all(r["status"] == "ok" for r in records)
