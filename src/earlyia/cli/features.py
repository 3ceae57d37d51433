"""``earlyia features``: light curves or alerts in any supported format -> a self-describing
feature table."""

from __future__ import annotations

import argparse
import sys

from earlyia.errors import InputError

EPILOG = """examples:
  # training set
  earlyia features fink_cross_tns_202001.parquet all_nonIa.csv.gz --out features.parquet \\
      --replay 3 20
  # early + robust sigmoid, per alert
  earlyia features alerts/ --out features.parquet
  # Fink's production sigmoid features
  earlyia features alerts/ --out fink_features.parquet --mode fink
  earlyia features lightcurves.parquet --out features.parquet --extractor sigmoid --per object \\
      --bands g r i
  # another registered extractor
  earlyia features elasticc/ --out rainbow.parquet --extractor rainbow
  # the ELAsTiCC classifier's features
  earlyia features elasticc/ --out lsst.parquet --extractor lsst_early

Rows: one per alert when the input has alerts (else per object); columns object_id, alert_id, mjd,
n_detections, label, valid, reason, the alert context (ndethist, cdsxmatch, drb, classtar...) and
the features. A light curve whose features cannot be computed, or an object or input that cannot be
read, stays in the table with valid=False and the reason: one bad object never stops the batch.
Inputs are read in chunks (memory flat); inputs sharing objects are read together. Exit code 0 when
at least one row is valid, 1 when none is, 2 on a usage error or when no input could be read
(nothing is written then).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "features",
        help="compute features (early-epoch + robust sigmoid by default) of every alert or object",
        description=(
            "Read light curves or alerts (format detected per file), compute the features of "
            "each alert's history (or of "
            "each object) in one compiled batch, and write a Parquet feature table whose "
            "metadata records the extractor "
            "configuration, so `earlyia train` and `earlyia score` use exactly the same features."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", nargs="+", help="input files or directories (any supported format)")
    p.add_argument("--out", required=True, help="feature table to write (Parquet, atomic)")
    p.add_argument(
        "--extractor",
        default=None,
        help="registered feature extractor: early (default: early-epoch features + robust sigmoid "
        "+ SN Ia template, "
        "without upper limits or apparent brightness), sigmoid, rainbow, "
        "sigmoid_lsst, lsst_early (LSST: early features on ugrizY + Rainbow + host galaxy); "
        "--mode alone selects sigmoid",
    )
    p.add_argument(
        "--mode",
        choices=("robust", "fink"),
        default=None,
        help="sigmoid mode (robust by default; fink = Fink's exact production features)",
    )
    p.add_argument(
        "--per",
        choices=("alert", "object"),
        default=None,
        help="one row per alert or per object (default: alert when there are alerts)",
    )
    p.add_argument(
        "--bands", nargs="+", default=None, help="bands to use (default g r for ZTF-like data)"
    )
    p.add_argument(
        "--min-points",
        type=int,
        default=None,
        help="minimum points per band (default 4 fink, 3 robust)",
    )
    p.add_argument(
        "--format",
        help="input format name when detection is not wanted (see `earlyia convert --help`)",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=5_000,
        help="input rows (alerts) read at a time (default 5000; memory grows with it)",
    )
    p.add_argument(
        "--replay",
        nargs=2,
        type=int,
        metavar=("MIN", "MAX"),
        help="replay each light curve detection by detection: one row per detection k = MIN..MAX "
        "with the history up to it "
        "(training on early prefixes; replaces the input's own alerts)",
    )
    p.set_defaults(func=run)


def build_extractor(args: argparse.Namespace):
    """The extractor the options describe (shared with other commands)."""
    from earlyia.features import get_extractor

    name = args.extractor or ("sigmoid" if args.mode else "early")
    params = {}
    if name == "early":
        from earlyia.features.early import STREAM_PARAMS

        params.update(STREAM_PARAMS)  # the default early model's features
    if name == "sigmoid":
        params["mode"] = args.mode or "robust"
        if args.min_points is not None:
            params["min_points"] = args.min_points
    elif name == "early" and args.mode:
        params["sigmoid"] = args.mode
    if args.bands:
        params["bands"] = tuple(args.bands)
    return get_extractor(name, **params)


def summarise(summary) -> tuple[str, list[str]]:
    """One summary line and the most frequent reasons of invalid rows (with counts)."""
    n, valid, seconds = summary.n_rows, summary.n_valid, summary.seconds
    top = sorted(summary.reasons.items(), key=lambda kv: -kv[1])[:8]
    lines = [f"  {cnt:6d} x {reason}" for reason, cnt in top]
    rate = f", {n / seconds:,.0f} rows/s" if seconds > 0 and n else ""
    head = (
        f"{n} rows, {valid} valid ({(valid / n if n else 0):.1%}), {len(summary.problems)} input "
        f"problem(s), {seconds:.2f} s{rate}"
    )
    return head, lines


def run(args: argparse.Namespace) -> int:
    from earlyia.features.io import features_files
    from earlyia.io.output import check_inputs, check_output

    ext = build_extractor(args)
    _ = ext.names  # validate the configuration before reading anything
    if args.replay:
        lo, hi = args.replay
        if not 1 <= lo <= hi:
            raise InputError(f"--replay needs 1 <= MIN <= MAX, got {lo} {hi}")
    if args.chunk_size < 1:
        raise InputError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    check_inputs(args.input)
    check_output(args.out, args.input)
    summary = features_files(
        args.input,
        ext,
        args.out,
        per=args.per,
        replay=tuple(args.replay) if args.replay else None,
        chunk_size=args.chunk_size,
        format=args.format,
    )
    head, lines = summarise(summary)
    print(f"earlyia features: {ext!r} per {summary.per}: {head} -> {args.out}", file=sys.stderr)
    if lines:
        print("invalid rows by reason:", file=sys.stderr)
        print("\n".join(lines), file=sys.stderr)
    for p in summary.problems[:5]:
        print(f"input problem: {p}", file=sys.stderr)
    if len(summary.problems) > 5:
        print(
            f"... and {len(summary.problems) - 5} more input problems (rows with valid=False)",
            file=sys.stderr,
        )
    return 0 if summary.n_valid else 1
