"""``earlyia calibrate``: a calibration map of a score from labelled objects (for ``candidates
--calibration``)."""

from __future__ import annotations

import argparse

from earlyia.report.calibration import calibrate_scores

EPILOG = """example:
  earlyia calibrate scores.parquet --labels objects.csv --method isotonic --out cal.json
  earlyia candidates new_scores.parquet --out cands/ --calibration cal.json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit a score calibration on labelled objects (for candidates --calibration)",
        description="Fit a monotone map from a score to P(SN Ia) on labelled objects, print the "
        "reliability before "
        "and after (in-sample, optimistic), and write the map as JSON.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "scores", help="scores Parquet (earlyia score output, or any table with object_id/objectId)"
    )
    p.add_argument("--labels", required=True, help="CSV of object id and type (e.g. objects.csv)")
    p.add_argument("--score-column", default="score", help="the score to calibrate (default score)")
    p.add_argument(
        "--method",
        choices=("isotonic", "sigmoid"),
        default="isotonic",
        help="isotonic (a few hundred labels) or sigmoid (Platt, robust with few labels)",
    )
    p.add_argument("--out", required=True, help="calibration JSON to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cal, before, after = calibrate_scores(
        args.scores, args.labels, score_column=args.score_column, method=args.method
    )
    print(before.to_markdown(f"{args.score_column} (raw)"))
    print(
        f"calibrated ({args.method}, in-sample: optimistic): Brier {after.brier:.4f}, ECE "
        f"{after.ece:.4f}"
    )
    cal.save(args.out)
    print(f"-> {args.out}")
    return 0
