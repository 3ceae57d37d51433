"""The ``earlyia`` command.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func(args) -> int``. Errors of the earlyia hierarchy are printed
as one clear line (no traceback) and give exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from earlyia import __version__
from earlyia.errors import EarlyIAError
from earlyia.kernels import FirstCompile

#: Commands that run the compiled kernels (their first run in an installation says it compiles them).
KERNEL_COMMANDS = frozenset({"demo", "select", "features", "learn", "train", "score", "stream", "tonight", "evaluate-early"})

#: Subcommands in the order ``earlyia --help`` lists them: command -> (module of this package, one-line help).
#: A module is imported only when its command runs, so ``earlyia --help`` stays fast; each module's
#: ``register(subparsers)`` adds the full parser (a test keeps its help equal to the line here).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the whole pipeline on built-in simulated data (offline, ~1 minute)"),
    "convert": ("convert", "read alerts / light curves of any supported format into one canonical table"),
    "select": ("select", "apply the early-SN selection cuts"),
    "features": ("features", "compute features (early-epoch + robust sigmoid by default) of every alert or object"),
    "learn": ("learn", "run an active-learning experiment (strategies x realisations) on a feature table"),
    "train": ("train", "train a model file from a labelled feature table"),
    "models": ("models", "inspect (and manage) model files"),
    "score": ("score", "score alerts with a model file"),
    "stream": ("stream", "score alerts from Kafka as they arrive (Fink livestream, ZTF, Rubin)"),
    "calibrate": ("calibrate", "fit a score calibration on labelled objects (for candidates --calibration)"),
    "candidates": ("candidates", "early SN Ia candidates from scores: CSV/Markdown tables and a TNS AT bulk report"),
    "tonight": ("tonight", "tonight's observing list: likely early SN Ia and active-learning targets, as a web page"),
    "evaluate-early": ("evaluate_early", "efficiency/purity of early flagging with the alert-by-alert replay protocol"),
    "followup": ("followup", "live active learning: select targets, notify Slack, ingest spectra, retrain, promote"),
}


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the first argument that is not an option), if any."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``earlyia`` parser with ``command``'s full parser (``"*"``: every command's); the other commands are
    one-line entries of the listing."""
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
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        if args.command in KERNEL_COMMANDS:
            with FirstCompile():
                return int(args.func(args) or 0)
        return int(args.func(args) or 0)
    except EarlyIAError as exc:
        print(f"earlyia {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"earlyia {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
