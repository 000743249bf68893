"""The `fnac` command line: a thin shell over the library. `main(argv)` returns an exit code."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from fnac.commands import COMMANDS
from fnac.errors import FnacError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fnac",
        description="Self-supervised audio-visual sound source localization (FNAC, CVPR 2023).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        # every listed command must import: a failure is a broken install or a bug, and surfaces here
        # (a command that silently vanished from `fnac --help` would hide it)
        mod = importlib.import_module(f"fnac.commands.{name}")
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except FnacError as e:
        print(f"fnac {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fnac {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
