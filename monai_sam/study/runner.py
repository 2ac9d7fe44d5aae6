"""Resumable execution of a study grid: one JSON per finished run, written atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from monai_sam.bundle.reports import write_json
from monai_sam.study.config import StudyConfig
from monai_sam.study.grid import RunSpec, expand_grid

__all__ = [
    "RunFunction",
    "load_runs",
    "read_study_config",
    "run_fingerprint",
    "run_study",
]

logger = logging.getLogger(__name__)

#: A run function trains and evaluates one grid cell and returns its results (JSON-serialisable).
RunFunction = Callable[[RunSpec], dict[str, Any]]

CONFIG_FILE = "study.yaml"
RUNS_DIR = "runs"


def _write_record(path: Path, payload: Any) -> None:
    """Atomic JSON with NaN kept (run records are read back by Python) and anything else as ``str``."""
    write_json(path, payload, nan_as_null=False, indent=1, default=str)


def read_study_config(output_dir: str | Path) -> StudyConfig:
    """The config a study in ``output_dir`` was run with (for ``--report-only``)."""
    path = Path(output_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {output_dir} the output of 'monai-sam study'?")
    return StudyConfig.from_dict(yaml.safe_load(path.read_text()), source=str(path))


def _claim_output_dir(config: StudyConfig, out: Path) -> None:
    """Write ``study.yaml``; refuse a directory holding runs of a config with other training settings."""
    path = out / CONFIG_FILE
    if path.is_file():
        previous = read_study_config(out)
        if previous.fingerprint() != config.fingerprint():
            raise ValueError(
                f"{out} holds runs of a study with different data/train/evaluation/sharpness settings "
                f"(fingerprint {previous.fingerprint()} != {config.fingerprint()}); use another --output"
            )
    out.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_runs(output_dir: str | Path) -> list[dict[str, Any]]:
    """Every finished run record (``runs/*.json``) in ``output_dir``, sorted by run id."""
    runs_dir = Path(output_dir) / RUNS_DIR
    records = []
    for path in sorted(runs_dir.glob("*.json")):
        with path.open() as f:
            records.append(json.load(f))
    return records


def run_fingerprint(config: StudyConfig, spec: RunSpec) -> str:
    """Hash of everything that determines one run: the study's settings and the cell's own.

    A saved run whose cell changed (another ``rho`` for the label ``sam``, another learning rate for
    one network) no longer matches and is run again instead of being silently reused.
    """
    payload = json.dumps({"study": config.fingerprint(), **spec.describe()}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _is_done(path: Path, fingerprint: str) -> bool:
    """Whether ``path`` holds a finished run of this configuration."""
    if not path.is_file():
        return False
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    return record.get("status") == "ok" and record.get("fingerprint") == fingerprint


def run_study(
    config: StudyConfig,
    output_dir: str | Path,
    run_fn: RunFunction | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every missing cell of the grid, saving each result as soon as it finishes.

    Rerunning with the same ``output_dir`` skips finished runs, so an interruption loses at most the
    run in progress. A failed run raises (after recording the traceback in ``failed/<run_id>.json``)
    unless ``config.continue_on_error`` is set; failed runs are retried on the next invocation.

    Args:
        config: the validated study configuration.
        output_dir: where ``study.yaml``, ``runs/`` and the report go.
        run_fn: trains and evaluates one :class:`RunSpec`; defaults to the bundle training path
            (:class:`monai_sam.study.training.BundleRunFunction`). Its ``prepare()``, if any, is
            called once before the first run.
        progress: show a tqdm progress bar over the grid.

    Returns:
        All finished run records in ``output_dir``.
    """
    out = Path(output_dir)
    _claim_output_dir(config, out)
    specs = expand_grid(config)
    todo = [s for s in specs if not _is_done(out / RUNS_DIR / f"{s.run_id}.json", run_fingerprint(config, s))]
    logger.info("study %s: %d runs, %d already done", config.name, len(specs), len(specs) - len(todo))
    if todo and run_fn is None:
        from monai_sam.study.training import BundleRunFunction  # heavy imports only when training

        run_fn = BundleRunFunction(config, out)
    prepare = getattr(run_fn, "prepare", None)
    if todo and callable(prepare):
        prepare()  # missing data fails here, with its own message, before any run starts
    bar = tqdm(
        total=len(specs), initial=len(specs) - len(todo), desc=f"study {config.name}", disable=not progress
    )
    for spec in todo:
        bar.set_postfix_str(spec.run_id)
        start = time.perf_counter()
        try:
            result = run_fn(spec)
        except Exception as err:
            _write_record(
                out / "failed" / f"{spec.run_id}.json",
                {**spec.describe(), "error": repr(err), "traceback": traceback.format_exc()},
            )
            if not config.continue_on_error:
                bar.close()
                raise RuntimeError(f"study run {spec.run_id} failed: {err!r}") from err
            logger.error("run %s failed (continuing): %r", spec.run_id, err)
            bar.update(1)
            continue
        record = {**spec.describe(), "fingerprint": run_fingerprint(config, spec), "status": "ok", **result}
        record["wall_s"] = time.perf_counter() - start
        _write_record(out / RUNS_DIR / f"{spec.run_id}.json", record)
        (out / "failed" / f"{spec.run_id}.json").unlink(missing_ok=True)
        bar.update(1)
    bar.close()
    return load_runs(out)
