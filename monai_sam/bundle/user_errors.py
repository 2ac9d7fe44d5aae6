"""The cause on the last line: how a bundle run that fails because of its input or settings ends.

MONAI wraps every error raised while a config is instantiated or evaluated in a ``RuntimeError`` ("Failed to
instantiate component ..." / "Failed to evaluate ..."), so Python's traceback ends with MONAI's wrapper and
the message that names the knob or file sits many lines above it. :func:`install_excepthook` (the bundles'
configs call it first in ``initialize``) installs a :data:`sys.excepthook` that, for a *user error*, prints
a short report whose last line is that message; every other error keeps Python's full traceback.

Importing the module changes nothing. A config written for older versions, which only imported it, gets
Python's plain traceback; add ``"$monai_sam.bundle.user_errors.install_excepthook()"`` to its
``initialize`` for the short report.

A user error is the outermost exception of the chain that is a ``ValueError``, ``KeyError`` or ``OSError``
(``FileNotFoundError``, ``NotADirectoryError``...) raised by monai-sam's own code (our input checks) or by
MONAI's config parser (an unknown id or reference), with nothing but MONAI's wrappers around it. Errors
raised inside torch, numpy... and any other exception type are treated as bugs. Set the environment
variable ``MONAI_SAM_TRACEBACK=1`` to get the full traceback of user errors too; MONAI's ``_mode_=debug`` and
``MONAI_DEBUG_CONFIG=1`` still start the debugger.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

__all__ = ["TRACEBACK_ENV", "excepthook", "find_user_error", "format_user_error", "install_excepthook"]

#: Environment variable: set to 1 for the full traceback of user errors too.
TRACEBACK_ENV = "MONAI_SAM_TRACEBACK"

_USER_ERROR_TYPES = (ValueError, KeyError, OSError)
#: Modules whose errors of those types are input checks: ours, and MONAI's config parser.
_CHECKING_MODULES = ("monai_sam", "monai.bundle")
#: Modules whose RuntimeErrors only wrap the cause ("Failed to instantiate / evaluate ...").
_WRAPPING_MODULES = ("monai.utils.module", "monai.bundle")


def _raised_in(err: BaseException) -> str:
    """``__name__`` of the module whose code raised ``err`` (the innermost traceback frame), or ``""``."""
    tb = err.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(tb.tb_frame.f_globals.get("__name__", ""))


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and its causes, outermost first (explicit causes, else unsuppressed contexts)."""
    chain: list[BaseException] = []
    while err is not None and err not in chain:
        chain.append(err)
        err = (
            err.__cause__
            if err.__cause__ is not None
            else (None if err.__suppress_context__ else err.__context__)
        )
    return chain


def _is_wrapper(err: BaseException) -> bool:
    return type(err) is RuntimeError and _in(_raised_in(err), _WRAPPING_MODULES)


def find_user_error(err: BaseException) -> BaseException | None:
    """The user error behind ``err`` (see the module docstring), or None when ``err`` looks like a bug.

    Args:
        err: the exception that ended the run.
    """
    for item in _chain(err):
        if isinstance(item, _USER_ERROR_TYPES) and _in(_raised_in(item), _CHECKING_MODULES):
            return item
        if not _is_wrapper(item):
            return None
    return None


def _message(err: BaseException) -> str:
    """``Type: message`` on one line (a KeyError's message without its quotes)."""
    text = err.args[0] if isinstance(err, KeyError) and len(err.args) == 1 else str(err)
    text = " ".join(str(text).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def format_user_error(err: BaseException, cause: BaseException) -> str:
    """The short report of a user error; its last line is ``cause``'s message.

    Args:
        err: the exception that ended the run.
        cause: its user error (from :func:`find_user_error`).
    """
    lines = ["", "The bundle run stopped because of its input or settings."]
    for item in _chain(err):
        if item is cause:
            break
        first = str(item).strip().splitlines()[0] if str(item).strip() else ""
        if first.startswith("Failed to instantiate component"):
            lines.append(
                f"  while building {first.split(' with keywords')[0][len('Failed to instantiate ') :]}"
            )
    lines.append(f"  (full traceback: set {TRACEBACK_ENV}=1)")
    lines.append(_message(cause))
    return "\n".join(lines) + "\n"


_previous_hook = sys.excepthook


def excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """:data:`sys.excepthook`: the short report for a user error, the previous hook for everything else.

    Args:
        exc_type: the exception's type.
        exc: the exception.
        tb: its traceback.
    """
    cause = find_user_error(exc) if os.environ.get(TRACEBACK_ENV, "0") in ("", "0") else None
    if cause is None:
        _previous_hook(exc_type, exc, tb)
        return
    try:
        sys.stdout.flush()
    except Exception:  # a closed stdout must not hide the message
        pass
    sys.stderr.write(format_user_error(exc, cause))
    sys.stderr.flush()


def install_excepthook() -> None:
    """Make :func:`excepthook` the process's :data:`sys.excepthook` (idempotent; keeps the previous hook)."""
    global _previous_hook
    if sys.excepthook is not excepthook:
        _previous_hook = sys.excepthook
        sys.excepthook = excepthook
