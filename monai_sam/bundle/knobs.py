"""Renamed bundle knobs: an old name on the ``monai.bundle`` command line stops the run with the new name.

The bundles follow the MONAI Model Zoo's ids and the knobs ``monai-sam overlay`` adds to any zoo bundle:
``network`` is the built module and ``optimizer`` the torch optimizer object, so the names that used to
hold a network or method name became ``network_name`` and ``sam_optimizer``, and ``rho`` became
``sam_rho``. Left alone, an old override would replace the module or optimizer with a string (an
obscure failure deep in the trainer) or add an id nothing reads (a silent no-op); the bundles' configs
call :func:`reject_renamed_knobs` first in ``initialize`` instead.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["COMPONENT_KNOBS", "RENAMED_KNOBS", "reject_renamed_knobs", "reject_renamed_overrides"]

#: Old knobs that no longer exist: old id -> the id to use now.
RENAMED_KNOBS: dict[str, str] = {"rho": "sam_rho", "net": "network", "optim": "optimizer"}
#: Ids that now hold a component: a plain name given to them meant the knob named here.
COMPONENT_KNOBS: dict[str, str] = {"network": "network_name", "optimizer": "sam_optimizer"}
_COMPONENTS = {"network": "the built network", "optimizer": "the torch optimizer object"}
#: First characters of a value that replaces a component on purpose (an expression or reference).
_COMPONENT_VALUE_PREFIXES = ("$", "@", "%", "{")


def _overrides(argv: Sequence[str]) -> Iterator[tuple[str, str | None]]:
    """``(id, value)`` for every ``--id value`` or ``--id=value`` in ``argv`` (value None at the end)."""
    for index, arg in enumerate(argv):
        if not arg.startswith("--"):
            continue
        key, sep, value = arg[2:].partition("=")
        if not sep:
            value = argv[index + 1] if index + 1 < len(argv) else None
        yield key, value


def _problem(key: str, value: Any) -> str | None:
    """The error message for one override, or None when it is fine."""
    root, _, nested = key.partition("#")
    if root in RENAMED_KNOBS:
        new = RENAMED_KNOBS[root] + (f"#{nested}" if nested else "")
        return f"--{key} was renamed: use --{new} (the MONAI Model Zoo's ids, shared with monai-sam overlay)"
    if root in COMPONENT_KNOBS and not nested:
        if value is None or not isinstance(value, str) or value.startswith(_COMPONENT_VALUE_PREFIXES):
            return None
        return (
            f"--{key} {value}: '{key}' is now {_COMPONENTS[root]} (the MONAI Model Zoo's id); "
            f"give the name with --{COMPONENT_KNOBS[root]} {value}"
        )
    return None


def _bundle_command_line() -> Sequence[str]:
    """``sys.argv`` when this process is ``python -m monai.bundle`` (torchrun included), else empty."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return sys.argv[1:] if spec is not None and str(spec.name).startswith("monai.bundle") else ()


def reject_renamed_knobs(argv: Sequence[str] | None = None) -> None:
    """Raise for a renamed knob among the command-line overrides.

    Nested overrides of the components (``--optimizer#lr 0.01``) and values that replace a component on
    purpose (``--network "$@network_def"``) are allowed.

    Args:
        argv: the arguments after the program name; None reads ``sys.argv`` when the process is
            ``python -m monai.bundle`` (other programs that build a bundle workflow are left alone).

    Raises:
        ValueError: every renamed knob found ("; "-separated), each naming the knob to use.
    """
    _raise_for(_overrides(_bundle_command_line() if argv is None else argv))


def reject_renamed_overrides(overrides: Mapping[str, Any]) -> None:
    """Raise for a renamed knob among the ``id: value`` overrides of a workflow built in Python.

    Args:
        overrides: the keyword overrides given to ``monai.bundle.ConfigWorkflow`` (a study's ``overrides``).

    Raises:
        ValueError: as :func:`reject_renamed_knobs`.
    """
    _raise_for(overrides.items())


def _raise_for(pairs: Iterable[tuple[str, Any]]) -> None:
    problems = [p for key, value in pairs if (p := _problem(key, value)) is not None]
    if problems:
        raise ValueError("; ".join(problems))
