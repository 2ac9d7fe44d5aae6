"""The ``monai-sam`` command-line tool.

Each sub-command lives in its own module and registers itself through a ``register(subparsers)``
function listed in :data:`COMMAND_MODULES`; ``main`` only dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Modules that each define ``register(subparsers)``; the parser they add must set ``func``.
COMMAND_MODULES: tuple[str, ...] = (
    "monai_sam.cli.data_commands",
    "monai_sam.cli.study_command",
    "monai_sam.cli.overlay_command",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available sub-command."""
    parser = argparse.ArgumentParser(prog="monai-sam", description="Sharpness-aware training for MONAI.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # a real missing dependency, not an absent command module
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``monai-sam`` tool; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, NotADirectoryError) as err:
        print(f"monai-sam {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
