"""Atomic claims on the runs of a study, so several processes (or machines) share one output folder.

A process that wants to train run ``r`` creates ``claims/r.<g>`` with ``O_CREAT | O_EXCL``: the file
system lets exactly one creator succeed, so no run is trained twice. The file holds the owner's
host name and process id, and the owner refreshes its modification time (a heartbeat) while the
run trains. The claim with the highest generation ``g`` is the current one. It is *stale*, and
may be taken over by creating generation ``g + 1`` (again with ``O_EXCL``, so only one process
wins), when

* its owner ran on this host and that process no longer exists (``kill -9``, a crash), or is
  the calling process itself (a claim kept by its own earlier failed attempt), or
* its heartbeat is older than ``stale_after_s`` (the owner's machine died or lost the folder).

Claims of finished runs are removed; the run record is written before, so a process that claims
a run must check that it is not finished yet (:meth:`RunClaims.claim` does). Every successful claim
is appended to ``claims/claims.log`` (time, host, pid, run, generation), an audit of who trained what.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Claim", "RunClaims", "process_alive"]


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie (exited, not yet reaped).

    Args:
        pid: a process id.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): os.kill said it exists
    return status.rsplit(")", 1)[-1].split()[0] != "Z"


@dataclass
class Claim:
    """A run claimed by this process; :meth:`beat` keeps it fresh, :meth:`release` gives it up.

    Attributes:
        run_id: the claimed run.
        path: the claim file.
    """

    run_id: str
    path: Path
    _stop: threading.Event | None = None
    _thread: threading.Thread | None = None

    def beat(self) -> None:
        """Refresh the heartbeat (the claim file's modification time)."""
        try:
            os.utime(self.path)
        except FileNotFoundError:
            pass

    def start_heartbeat(self, interval_s: float) -> Claim:
        """Refresh the heartbeat every ``interval_s`` seconds in a daemon thread until :meth:`stop`."""
        self._stop = threading.Event()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.beat()

        self._thread = threading.Thread(target=loop, name=f"claim-{self.run_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the heartbeat; the claim stays (it becomes stale once this process exits)."""
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
            self._stop = self._thread = None

    def release(self) -> None:
        """Stop the heartbeat and remove every claim file of the run (after its record is written)."""
        self.stop()
        for path in self.path.parent.glob(f"{self.run_id}.*"):
            if path.suffix[1:].isdigit():
                path.unlink(missing_ok=True)


class RunClaims:
    """The claims folder of a study.

    Args:
        directory: where the claim files live (``<output>/claims``).
        stale_after_s: a claim of another host whose heartbeat is older than this is taken over.
    """

    def __init__(self, directory: str | Path, stale_after_s: float = 600.0) -> None:
        self.directory = Path(directory)
        self.stale_after_s = float(stale_after_s)
        self.host = socket.gethostname()

    def _generations(self, run_id: str) -> list[int]:
        return sorted(int(p.suffix[1:]) for p in self.directory.glob(f"{run_id}.*") if p.suffix[1:].isdigit())

    def owner(self, run_id: str) -> dict | None:
        """The current claim's content (``host``, ``pid``, ``generation``, ``stale``), or None."""
        generations = self._generations(run_id)
        if not generations:
            return None
        path = self.directory / f"{run_id}.{generations[-1]}"
        try:
            info = json.loads(path.read_text() or "{}")
            age = time.time() - path.stat().st_mtime
        except (OSError, json.JSONDecodeError):
            info, age = {}, 0.0  # removed or being written right now: not stale
        info["generation"] = generations[-1]
        info["stale"] = self._stale(info, age)
        return info

    def _stale(self, info: dict, age: float) -> bool:
        if info.get("host") == self.host and isinstance(info.get("pid"), int):
            # our own pid: a claim kept by an earlier failed attempt of this process (one run at a time)
            return info["pid"] == os.getpid() or not process_alive(info["pid"])
        return age > self.stale_after_s  # other host, or a file left empty by a crash

    def claim(self, run_id: str, done: callable) -> Claim | None:
        """Claim ``run_id`` unless another live process holds it or ``done()`` says it is finished.

        Args:
            run_id: the run to claim.
            done: returns whether the run's record already exists (checked after claiming, since a
                finished run's claims are removed after its record is written).

        Returns:
            The :class:`Claim`, or None when the run is taken or finished.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        owner = self.owner(run_id)
        if owner is not None and not owner["stale"]:
            return None
        generation = 0 if owner is None else owner["generation"] + 1
        path = self.directory / f"{run_id}.{generation}"
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None  # another process claimed (or took over) the run first
        with os.fdopen(fd, "w") as f:
            json.dump({"host": self.host, "pid": os.getpid(), "claimed_at": time.time()}, f)
            f.flush()
            os.fsync(f.fileno())
        claim = Claim(run_id, path)
        if done():
            claim.release()
            return None
        line = f"{time.time():.3f} {self.host} {os.getpid()} {run_id} {generation}\n"
        fd = os.open(self.directory / "claims.log", os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o644)
        try:
            os.write(fd, line.encode())  # one small O_APPEND write: lines of processes never interleave
        finally:
            os.close(fd)
        return claim
