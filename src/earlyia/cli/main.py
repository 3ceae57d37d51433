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
from earlyia.kernels import FirstCompile
from earlyia.signals import Terminated, raising_signals

#: Commands that run the compiled kernels (their first run in an installation says it compiles
#: them).
KERNEL_COMMANDS = frozenset(
    {"demo", "select", "features", "learn", "train", "score", "stream", "tonight", "evaluate-early"}
)

#: Subcommands in the order ``earlyia --help`` lists them: command -> (module of this package,
#: one-line help). A module is imported only when its command runs, so ``earlyia --help`` stays
#: fast; each module's ``register(subparsers)`` adds the full parser (a test keeps its help equal to
#: the line here).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the whole pipeline on built-in simulated data (offline, ~1 minute)"),
    "convert": (
        "convert",
        "read alerts / light curves of any supported format into one canonical table",
    ),
    "select": ("select", "apply the early-SN selection cuts"),
    "features": (
        "features",
        "compute features (early-epoch + robust sigmoid by default) of every alert or object",
    ),
    "learn": (
        "learn",
        "run an active-learning experiment (strategies x realisations) on a feature table",
    ),
    "train": ("train", "train a model file from a labelled feature table"),
    "models": ("models", "inspect (and manage) model files"),
    "score": ("score", "score alerts with a model file"),
    "stream": ("stream", "score alerts from Kafka as they arrive (Fink livestream, ZTF, Rubin)"),
    "calibrate": (
        "calibrate",
        "fit a score calibration on labelled objects (for candidates --calibration)",
    ),
    "candidates": (
        "candidates",
        "early SN Ia candidates from scores: CSV/Markdown tables and a TNS AT bulk report",
    ),
    "tonight": (
        "tonight",
        "tonight's observing list: likely early SN Ia and active-learning targets, as a web page",
    ),
    "evaluate-early": (
        "evaluate_early",
        "efficiency/purity of early flagging with the alert-by-alert replay protocol",
    ),
    "followup": (
        "followup",
        "live active learning: select targets, notify Slack, ingest spectra, retrain, promote",
    ),
}


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first argument that is not an option), if
    any."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``earlyia`` parser with ``command``'s full parser (``"*"``: every command's); the
    other commands are one-line entries of the listing."""
    parser = argparse.ArgumentParser(
        prog="earlyia",
        description="Find Type Ia supernovae early in alert streams, with active learning.",
    )
    parser.add_argument("--version", action="version", version=f"earlyia {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_line) in COMMANDS.items():
        if command in (name, "*"):
            importlib.import_module(f"earlyia.cli.{module_name}").register(sub)
        else:
            sub.add_parser(name, help=help_line, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(words))
    args = parser.parse_args(words)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        with raising_signals():  # SIGTERM/SIGHUP unwind like Ctrl-C: temporary files are removed
            if args.command in KERNEL_COMMANDS:
                with FirstCompile():
                    return int(args.func(args) or 0)
            return int(args.func(args) or 0)
    except EarlyIAError as exc:
        print(f"earlyia {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        print(
            f"earlyia {args.command}: {exc if isinstance(exc, Terminated) else 'interrupted'}; "
            "unfinished outputs removed",
            file=sys.stderr,
        )
        if argv is None:  # the process's own command line: end now (see _exit_now)
            _exit_now(128 + signum)
        return 128 + signum


def _exit_now(code: int) -> NoReturn:
    """End the process at once with ``code``, after an interruption has unwound (temporaries
    removed, streams flushed). The interpreter's own teardown is skipped: after a large batch its
    final garbage collection of every object takes a second or more, and Ctrl-C must stop a run
    within a second."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
