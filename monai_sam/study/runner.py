"""Resumable, parallel execution of a study grid: one JSON per finished run, written atomically.

Every run is claimed atomically before it trains (:mod:`monai_sam.study.claims`), so several
processes on one output folder (``--workers N``, the same command on two machines, the tasks of
a SLURM job array) split the grid: no run is trained twice, and a run whose process died is taken
over by the next invocation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from monai_sam.json_files import write_json
from monai_sam.study.claims import RunClaims
from monai_sam.study.config import StudyConfig
from monai_sam.study.grid import RunSpec, expand_grid

__all__ = [
    "RunFunction",
    "load_runs",
    "read_study_config",
    "run_fingerprint",
    "run_study",
    "run_study_parallel",
    "worker_devices",
]

logger = logging.getLogger(__name__)

#: A run function trains and evaluates one grid cell and returns its results (JSON-serialisable).
RunFunction = Callable[[RunSpec], dict[str, Any]]

CONFIG_FILE = "study.yaml"
RUNS_DIR = "runs"
CLAIMS_DIR = "claims"
#: seconds between heartbeats of a claimed run, and the age after which another host's claim is stale
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0


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
    fd, tmp = tempfile.mkstemp(prefix=".study.", suffix=".tmp", dir=out)  # unique: invocations may race
    with os.fdopen(fd, "w") as f:
        f.write(text)
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


def _pending(config: StudyConfig, out: Path, specs: list[RunSpec]) -> list[RunSpec]:
    """The specs without a finished record of their current fingerprint."""
    return [s for s in specs if not _is_done(out / RUNS_DIR / f"{s.run_id}.json", run_fingerprint(config, s))]


def run_study(
    config: StudyConfig,
    output_dir: str | Path,
    run_fn: RunFunction | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every missing cell of the grid that no other process holds, saving each result at once.

    Rerunning with the same ``output_dir`` skips finished runs, so an interruption loses at most the
    run in progress. Each run is claimed first (see :mod:`monai_sam.study.claims`): other processes
    working on the same folder skip it, and a claim whose process is gone is taken over. A failed run
    raises (after recording the traceback in ``failed/<run_id>.json``) unless
    ``config.continue_on_error`` is set; its claim is kept until this process exits, so it is
    retried by the next invocation, not by a concurrent one.

    Args:
        config: the validated study configuration.
        output_dir: where ``study.yaml``, ``runs/`` and the report go.
        run_fn: trains and evaluates one :class:`RunSpec`; defaults to the bundle training path
            (:class:`monai_sam.study.training.BundleRunFunction`). Its ``prepare()``, if any, is
            called once before the first run.
        progress: show a tqdm progress bar over the whole grid (runs finished by any process).

    Returns:
        All finished run records in ``output_dir``.
    """
    out = Path(output_dir)
    _claim_output_dir(config, out)
    specs = expand_grid(config)
    todo = _pending(config, out, specs)
    logger.info("study %s: %d runs, %d already done", config.name, len(specs), len(specs) - len(todo))
    if todo and run_fn is None:
        from monai_sam.study.training import BundleRunFunction  # heavy imports only when training

        run_fn = BundleRunFunction(config, out)
    prepare = getattr(run_fn, "prepare", None)
    if todo and callable(prepare):
        prepare()  # missing data fails here, with its own message, before any run starts
    claims = RunClaims(out / CLAIMS_DIR, stale_after_s=STALE_AFTER_S)
    bar = tqdm(
        total=len(specs), initial=len(specs) - len(todo), desc=f"study {config.name}", disable=not progress
    )
    for spec in todo:
        record_path = out / RUNS_DIR / f"{spec.run_id}.json"
        fingerprint = run_fingerprint(config, spec)
        claim = claims.claim(spec.run_id, done=lambda p=record_path, f=fingerprint: _is_done(p, f))
        if claim is None:  # finished or being trained by another process
            continue
        claim.start_heartbeat(HEARTBEAT_S)
        bar.set_postfix_str(spec.run_id)
        start = time.perf_counter()
        try:
            result = run_fn(spec)
        except Exception as err:
            claim.stop()
            _write_record(
                out / "failed" / f"{spec.run_id}.json",
                {**spec.describe(), "error": repr(err), "traceback": traceback.format_exc()},
            )
            if not config.continue_on_error:
                bar.close()
                raise RuntimeError(f"study run {spec.run_id} failed: {err!r}") from err
            logger.error("run %s failed (continuing): %r", spec.run_id, err)
            continue
        record = {**spec.describe(), "fingerprint": fingerprint, "status": "ok", **result}
        record["wall_s"] = time.perf_counter() - start
        record["worker"] = {"host": claims.host, "pid": os.getpid()}  # who trained it (see claims.log)
        _write_record(record_path, record)
        (out / "failed" / f"{spec.run_id}.json").unlink(missing_ok=True)
        claim.release()
        bar.n = len(specs) - len(_pending(config, out, specs))  # other processes' runs count too
        bar.refresh()
    bar.n = len(specs) - len(_pending(config, out, specs))
    bar.close()
    return load_runs(out)


def worker_devices() -> list[str]:
    """The GPUs to hand out one per worker (``CUDA_VISIBLE_DEVICES`` values); empty without GPUs."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        return []


def run_study_parallel(
    config: StudyConfig,
    output_dir: str | Path,
    workers: int,
    threads: int = 1,
    keep_work: bool = False,
    progress: bool = True,
    poll_s: float = 1.0,
) -> list[dict[str, Any]]:
    """Run the grid with ``workers`` processes at once, each claiming runs until none is left.

    Each worker is ``python -m monai_sam.study.runner OUTPUT`` with ``threads`` torch/OpenMP threads,
    and one GPU of its own (``CUDA_VISIBLE_DEVICES``) when GPUs are present (round robin when there
    are fewer GPUs than workers). The data and folds are prepared once, before the workers start.
    The progress bar counts every finished run of the grid, whoever trained it.

    Args:
        config: the validated study configuration (written to ``OUTPUT/study.yaml`` for the workers).
        output_dir: the study output folder.
        workers: number of processes.
        threads: CPU threads per worker.
        keep_work: keep each run's work folder.
        progress: show the progress bar.
        poll_s: seconds between progress updates.

    Raises:
        RuntimeError: a worker exited with an error or was killed; the finished runs are kept, and
            rerunning the command trains what is missing.
    """
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    out = Path(output_dir)
    _claim_output_dir(config, out)
    specs = expand_grid(config)
    if _pending(config, out, specs):
        from monai_sam.study.data import prepare_study_data

        prepare_study_data(config, out)
    devices = worker_devices()
    procs = []
    for i in range(workers):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = devices[i % len(devices)]
        cmd = [sys.executable, "-m", "monai_sam.study.runner", str(out), "--threads", str(threads)]
        procs.append(subprocess.Popen(cmd + (["--keep-work"] if keep_work else []), env=env))
    bar = tqdm(total=len(specs), desc=f"study {config.name} ({workers} workers)", disable=not progress)
    while True:
        bar.n = len(specs) - len(_pending(config, out, specs))
        bar.refresh()
        if all(p.poll() is not None for p in procs):
            break
        time.sleep(poll_s)
    bar.close()
    failed = [
        f"worker {i} (pid {p.pid}) exited with {p.returncode}" for i, p in enumerate(procs) if p.returncode
    ]
    if failed:
        missing = len(_pending(config, out, specs))
        raise RuntimeError("; ".join(failed) + f"; {missing} runs not finished: run the same command again")
    return load_runs(out)


def _worker_main(argv: list[str] | None = None) -> int:
    """One worker of :func:`run_study_parallel`: claim and train runs of ``OUTPUT/study.yaml``."""
    parser = argparse.ArgumentParser(prog="python -m monai_sam.study.runner")
    parser.add_argument("output", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep-work", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    config = read_study_config(args.output)
    run_fn = None
    if args.keep_work:
        from monai_sam.study.training import BundleRunFunction

        run_fn = BundleRunFunction(config, args.output, keep_work=True)
    try:
        run_study(config, args.output, run_fn=run_fn, progress=False)
    except RuntimeError as err:
        print(f"study worker {os.getpid()}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
