"""The ``earlyia`` command.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func(args) -> int``. Errors of the earlyia hierarchy are printed
as one clear line (no traceback) and give exit code 2; Ctrl-C gives 130 and SIGTERM 143, after the
temporary files are removed.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from earlyia import __version__
from earlyia.errors import EarlyIAError
from earlyia.signals import Terminated, raising_signals

#: Subcommand modules, in the order ``earlyia --help`` lists them.
SUBCOMMANDS = (
    "demo",
    "convert",
    "select",
    "features",
    "learn",
    "train",
    "models",
    "score",
    "candidates",
    "evaluate_early",
    "followup",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="earlyia",
        description="Find Type Ia supernovae early in alert streams, with active learning.",
    )
    parser.add_argument("--version", action="version", version=f"earlyia {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"earlyia.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"earlyia.cli.{name}":
                continue  # subcommand not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        with raising_signals():  # SIGTERM/SIGHUP unwind like Ctrl-C: temporary files are removed
            return int(args.func(args) or 0)
    except EarlyIAError as exc:
        print(f"earlyia {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Terminated as exc:
        print(f"earlyia {args.command}: {exc}; nothing written", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print(f"earlyia {args.command}: interrupted; nothing written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
