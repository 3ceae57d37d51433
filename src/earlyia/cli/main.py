"""The ``earlyia`` command.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func(args) -> int``. Errors of the earlyia hierarchy are printed
as one clear line (no traceback) and give exit code 2; Ctrl-C gives 130 and SIGTERM 143, after the
temporary files are removed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
from typing import NoReturn

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
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        print(f"earlyia {args.command}: {exc if isinstance(exc, Terminated) else 'interrupted'}; "
              "unfinished outputs removed", file=sys.stderr)
        if argv is None:  # the process's own command line: end now (see _exit_now)
            _exit_now(128 + signum)
        return 128 + signum


def _exit_now(code: int) -> NoReturn:
    """End the process at once with ``code``, after an interruption has unwound (temporaries removed, streams
    flushed). The interpreter's own teardown is skipped: after a large batch its final garbage collection of
    every object takes a second or more, and Ctrl-C must stop a run within a second."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
