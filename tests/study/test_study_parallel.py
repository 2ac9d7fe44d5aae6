"""Several processes on one study folder: atomic claims, ``--workers``, ``kill -9`` of a worker, resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from monai_sam.study.claims import RunClaims, process_alive

TINY = {
    "name": "tiny",
    "data": {
        "source": "phantom",
        "num_classes": 3,
        "folds": 3,
        "phantom": {"num_per_class": 6, "image_size": 32},
    },
    "networks": ["resnet18"],
    "optimizers": ["adam", {"name": "sam", "rho": 0.05}],
    "folds": [0, 1],
    "seeds": [0],
    "train": {"max_epochs": 1, "batch_size": 8, "lr": 1.0e-3, "image_size": 32},
    "sharpness": {"enabled": False},
}
RUN_IDS = {f"resnet18__{o}__fold{f}__seed0" for o in ("adam", "sam") for f in (0, 1)}


def test_claims_are_exclusive_and_dead_owners_are_taken_over(tmp_path):
    claims = RunClaims(tmp_path)
    first = claims.claim("r", done=lambda: False)
    assert first is not None and first.path.name == "r.0"
    other = subprocess.run(  # another live process cannot take it ...
        [
            sys.executable,
            "-c",
            f"from monai_sam.study.claims import RunClaims; "
            f"print(RunClaims({str(tmp_path)!r}).claim('r', done=lambda: False))",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert other.stdout.strip() == "None"
    # ... a claim of a process that is gone is taken over with the next generation
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not process_alive(dead.pid) and process_alive(os.getpid())
    (tmp_path / "q.0").write_text(json.dumps({"host": claims.host, "pid": dead.pid}))
    taken = claims.claim("q", done=lambda: False)
    assert taken is not None and taken.path.name == "q.1"
    again = claims.claim("q", done=lambda: False)  # our own claim (an earlier failed attempt): ours again
    assert again is not None and again.path.name == "q.2"
    # another host's claim is stale only once its heartbeat is old
    (tmp_path / "h.0").write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    assert RunClaims(tmp_path, stale_after_s=60).claim("h", done=lambda: False) is None
    old = time.time() - 120
    os.utime(tmp_path / "h.0", (old, old))
    assert RunClaims(tmp_path, stale_after_s=60).claim("h", done=lambda: False) is not None
    # a finished run is never claimed, and releasing removes every generation
    assert claims.claim("d", done=lambda: True) is None and not list(tmp_path.glob("d.*"))
    taken.release()
    assert not list(tmp_path.glob("q.*"))


def _claim_log(out: Path) -> list[tuple[str, int, int]]:
    lines = (out / "claims" / "claims.log").read_text().split()
    return [(lines[i + 3], int(lines[i + 2]), int(lines[i + 4])) for i in range(0, len(lines), 5)]


@pytest.mark.slow
def test_two_invocations_and_a_killed_worker(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "study"
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "monai_sam.cli", "study", "--config", str(config), "--output", str(out)]
    cmd += ["--no-progress", "--threads", "1"]
    parallel = subprocess.Popen([*cmd, "--workers", "2"], env=env, stderr=subprocess.PIPE, text=True)
    # kill -9 the first worker of `parallel` seen training a run (its pid is in the claim file)
    victim, deadline = None, time.time() + 400
    while victim is None and time.time() < deadline:
        for path in (out / "claims").glob("resnet18__*.0"):
            try:
                pid = json.loads(path.read_text())["pid"]
            except (OSError, ValueError, KeyError):
                continue
            if pid != parallel.pid:
                os.kill(pid, signal.SIGKILL)
                victim = (path.name.rsplit(".", 1)[0], pid)
                break
        time.sleep(0.2)
    assert victim is not None, "no worker claimed a run in time"
    single = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)  # joins the other worker
    _, err_parallel = parallel.communicate(timeout=600)
    single.communicate(timeout=600)
    assert parallel.returncode == 1 and f"exited with -{int(signal.SIGKILL)}" in err_parallel
    # rerun: whatever the killed worker lost is trained again, nothing else
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    records = {p.stem: json.loads(p.read_text()) for p in (out / "runs").glob("*.json")}
    assert set(records) == RUN_IDS and all(r["status"] == "ok" for r in records.values())
    _, killed_pid = victim
    log = _claim_log(out)
    assert killed_pid in {pid for _, pid, _ in log}
    for run in RUN_IDS:
        claims = [(pid, gen) for r, pid, gen in log if r == run]
        # trained once by the process that recorded it; claimed before only by the killed worker
        assert claims[-1][0] == records[run]["worker"]["pid"]
        assert [pid for pid, _ in claims[:-1]] in ([], [killed_pid])
        assert [gen for _, gen in claims] == list(range(len(claims)))
    assert sum(len([1 for r, _, _ in log if r == run]) > 1 for run in RUN_IDS) <= 1  # at most one run lost
    assert single.returncode == 0
    assert not list((out / "claims").glob("resnet18__*"))  # finished runs leave no claims


def test_simultaneous_claims_only_one_wins(tmp_path, monkeypatch):
    # two processes that both saw no claim race to create the same file: O_EXCL lets one win
    claims = RunClaims(tmp_path)
    monkeypatch.setattr(RunClaims, "owner", lambda self, run_id: None)
    assert claims.claim("r", done=lambda: False) is not None
    assert claims.claim("r", done=lambda: False) is None
