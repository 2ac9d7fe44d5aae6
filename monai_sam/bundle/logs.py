"""The log file of a bundle run: records to ``<output_dir>/train.log``, closed again in ``finalize``.

``training_scalars`` and ``EpochProgressBar`` moved to :mod:`monai_sam.handlers`; they are re-exported here so
that configs users copied, which name ``monai_sam.bundle.logs.<name>``, still resolve.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence

from monai_sam.handlers.output_transforms import training_scalars
from monai_sam.handlers.progress_bar import EpochProgressBar

__all__ = ["EpochProgressBar", "add_file_log", "remove_file_logs", "suppressed_message", "training_scalars"]

_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"


class _OncePerRecord(logging.Filter):
    """Pass each record once, although the handler hangs on a logger and on one of its ancestors."""

    def __init__(self) -> None:
        super().__init__()
        self._last: logging.LogRecord | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record is self._last:
            return False
        self._last = record
        return True


class _DropMessage(logging.Filter):
    """Drop records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


@contextlib.contextmanager
def suppressed_message(logger: str, prefix: str) -> Iterator[None]:
    """Inside the block, drop the records of ``logger`` whose message starts with ``prefix``.

    For a library notice that says nothing to our users, e.g. MONAI's ``ConfigWorkflow`` warning
    "Logging file is set to False, skipping logging." for every workflow a study builds on purpose
    without a logging file. Every other record of that logger passes.

    Args:
        logger: the logger's name (``"monai.bundle.workflows"``).
        prefix: the start of the message to drop.
    """
    target = logging.getLogger(logger)
    drop = _DropMessage(prefix)
    target.addFilter(drop)
    try:
        yield
    finally:
        target.removeFilter(drop)


def add_file_log(
    path: str | os.PathLike,
    level: int = logging.INFO,
    loggers: Sequence[str] = ("", "monai", "ignite", "monai.handlers.StatsHandler"),
) -> str:
    """Also write log records to ``path`` (the run's log file); idempotent per path.

    The file handler hangs on the root logger and on those of ``loggers`` that already exist, because
    MONAI's loggers (``monai.handlers.StatsHandler``...) do not propagate to the root. Call it after the
    engines are built (so their loggers exist): creating a MONAI logger early would stop MONAI from
    giving it its console handler.
    """
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(level)
    handler.addFilter(_OncePerRecord())
    for name in loggers:
        if name and name not in logging.root.manager.loggerDict:
            continue
        logger = logging.getLogger(name)
        if any(isinstance(h, logging.FileHandler) and h.baseFilename == path for h in logger.handlers):
            continue
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > level:
            logger.setLevel(level)
    return path


def remove_file_logs(path: str | os.PathLike) -> int:
    """Detach and close the log-file handlers writing to ``path``, or to any file below it if it is a folder.

    The counterpart of :func:`add_file_log`, called in a bundle's ``finalize``: in a process that runs several
    workflows (a study, a notebook) the handlers would otherwise pile up, each writing every later record.
    Returns the number of handlers closed.
    """
    target = os.path.abspath(os.fspath(path))
    loggers = [logging.getLogger()] + [
        lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    closed = set()
    for logger in loggers:
        for handler in list(logger.handlers):
            if not isinstance(handler, logging.FileHandler):
                continue
            name = handler.baseFilename
            if name == target or name.startswith(target + os.sep):
                logger.removeHandler(handler)
                handler.close()
                closed.add(id(handler))
    return len(closed)
