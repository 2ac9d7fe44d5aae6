"""Resumable execution of a study grid with an injected run function (no training)."""

import json

import pytest
from study_fakes import FakeRun, make_config

from monai_sam.study.grid import expand_grid
from monai_sam.study.runner import load_runs, run_fingerprint, run_study


def test_runs_saved_one_json_each(tmp_path, fake_run):
    config = make_config(seeds=[0], folds=[0, 1])
    records = run_study(config, tmp_path, run_fn=fake_run, progress=False)
    assert len(records) == len(expand_grid(config)) == 12
    files = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert files == sorted(f"{s.run_id}.json" for s in expand_grid(config))  # no temporary leftovers
    record = json.loads((tmp_path / "runs" / "resnet18__sam__fold1__seed0.json").read_text())
    assert record["status"] == "ok" and record["optimizer"] == "sam" and record["rho"] == 0.05
    spec = next(s for s in expand_grid(config) if s.run_id == "resnet18__sam__fold1__seed0")
    assert record["fingerprint"] == run_fingerprint(config, spec) and record["wall_s"] >= 0
    assert (tmp_path / "study.yaml").is_file()


def test_resume_after_crash_runs_only_missing(tmp_path):
    config = make_config(seeds=[0], folds=[0, 1])
    crashing = FakeRun(fail_at=4)
    with pytest.raises(RuntimeError, match="vit_small__adam__fold0__seed0"):  # the 4th run of the grid
        run_study(config, tmp_path, run_fn=crashing, progress=False)
    done = {r["run_id"] for r in load_runs(tmp_path)}
    assert done == set(crashing.calls[:3])
    assert (tmp_path / "failed" / f"{crashing.calls[3]}.json").is_file()
    resumed = FakeRun()
    records = run_study(config, tmp_path, run_fn=resumed, progress=False)
    assert len(records) == 12
    assert set(resumed.calls) == {s.run_id for s in expand_grid(config)} - done
    assert not (tmp_path / "failed" / f"{crashing.calls[3]}.json").exists()
    again = FakeRun()
    run_study(config, tmp_path, run_fn=again, progress=False)
    assert again.calls == []


def test_grid_extension_reuses_finished_runs(tmp_path, fake_run):
    run_study(make_config(seeds=[0], folds=[0]), tmp_path, run_fn=fake_run, progress=False)
    more = FakeRun()
    run_study(make_config(seeds=[0, 1], folds=[0]), tmp_path, run_fn=more, progress=False)
    assert len(more.calls) == 6 and all(c.endswith("seed1") for c in more.calls)


def test_continue_on_error_records_failure(tmp_path):
    config = make_config(seeds=[0], folds=[0], continue_on_error=True)
    records = run_study(config, tmp_path, run_fn=FakeRun(fail_at=2), progress=False)
    assert len(records) == 5
    failed = list((tmp_path / "failed").glob("*.json"))
    assert len(failed) == 1 and "simulated crash" in json.loads(failed[0].read_text())["error"]


def test_refuses_output_of_other_settings(tmp_path, fake_run):
    run_study(make_config(seeds=[0], folds=[0]), tmp_path, run_fn=fake_run, progress=False)
    with pytest.raises(ValueError, match="different"):
        run_study(
            make_config(seeds=[0], folds=[0], train={"lr": 0.1}), tmp_path, run_fn=fake_run, progress=False
        )


def test_changed_cell_is_rerun_not_reused(tmp_path, fake_run):
    run_study(make_config(seeds=[0], folds=[0]), tmp_path, run_fn=fake_run, progress=False)
    changed = make_config(
        seeds=[0], folds=[0], optimizers=["adam", {"name": "sam", "rho": 0.1}, {"name": "asam", "rho": 0.5}]
    )
    again = FakeRun()
    run_study(changed, tmp_path, run_fn=again, progress=False)
    assert sorted(again.calls) == ["resnet18__sam__fold0__seed0", "vit_small__sam__fold0__seed0"]
    record = json.loads((tmp_path / "runs" / "resnet18__sam__fold0__seed0.json").read_text())
    assert record["rho"] == 0.1


def test_network_evaluation_reruns_only_that_network(tmp_path, fake_run):
    run_study(make_config(seeds=[0], folds=[0]), tmp_path, run_fn=fake_run, progress=False)
    own = {"name": "vit_small", "evaluation": {"checkpoint": "last"}}
    changed = make_config(seeds=[0], folds=[0], networks=["resnet18", own])
    again = FakeRun()
    run_study(changed, tmp_path, run_fn=again, progress=False)
    assert sorted(again.calls) == [f"vit_small__{o}__fold0__seed0" for o in ("adam", "asam", "sam")]
    record = json.loads((tmp_path / "runs" / "vit_small__sam__fold0__seed0.json").read_text())
    assert record["network_evaluation"] == {"checkpoint": "last"}
