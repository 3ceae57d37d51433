"""``earlyia tonight``: tonight's alerts -> an observing list to open in a browser (index.html +
tonight.csv)."""

from __future__ import annotations

import argparse
import sys

from earlyia.cli.candidates import _prevalence
from earlyia.cli.followup import _opt_float

EPILOG = """examples:
  # the shipped default ZTF model; open tonight/index.html
  earlyia tonight alerts/ --out tonight/
  earlyia tonight alerts/*.avro --model model.eia --out tonight/ --n 20 --strategy cost_aware \\
      --mag-limit 19
  # no observatory constraints
  earlyia tonight alerts.parquet --out tonight/ --dec-max none --mag-limit none

Writes OUT/index.html (both lists with light curves, positions, magnitudes, scores, days since the
first detection and portal links), OUT/img/*.png, OUT/tonight.csv, OUT/scores.parquet and
OUT/summary.json. Exit code 0; 1 when no alert could be scored (the page says why); 2 on a usage
error or a refused model or input (e.g. another survey's alerts: --allow-survey-mismatch).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tonight",
        help="tonight's observing list: likely early SN Ia and active-learning targets, as a web "
        "page",
        description=(
            "Score tonight's alerts, then list the likely early SN Ia (the `earlyia "
            "candidates` rule at the model card's "
            "threshold for the target purity at the stream's prevalence) and the "
            "active-learning targets (`earlyia "
            "followup select`'s strategy under its observing constraints, nothing recorded), "
            "each with its light curve, "
            "in one page to open in a browser and a CSV."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="ALERTS",
        help="tonight's alert files or directories (any supported format)",
    )
    p.add_argument("--model", help="model file (default: the shipped early model for ZTF alerts)")
    p.add_argument("--out", default="tonight", help="output directory (default ./tonight)")
    c = p.add_argument_group("likely early SN Ia (as earlyia candidates)")
    c.add_argument(
        "--min-purity",
        type=float,
        default=0.8,
        metavar="P",
        help="purity the card threshold aims at (default 0.8)",
    )
    c.add_argument(
        "--prevalence",
        type=_prevalence,
        default="auto",
        metavar="PI",
        help="fraction of SN Ia among tonight's objects: a number, 'training' or 'auto' (default: "
        "estimated from the scores)",
    )
    c.add_argument(
        "--max-ndethist",
        type=int,
        default=20,
        metavar="N",
        help="at most N detections so far (default 20)",
    )
    a = p.add_argument_group("active-learning targets (as earlyia followup select)")
    a.add_argument("--n", type=int, default=30, help="number of targets (default 30)")
    a.add_argument(
        "--strategy",
        default="uncertainty",
        help="uncertainty (default), batch_diverse, cost_aware or random",
    )
    a.add_argument("--dec-min", type=_opt_float, default=-90.0, help="lowest declination (deg)")
    a.add_argument(
        "--dec-max",
        type=_opt_float,
        default=20.0,
        help="declination below this (deg; default 20, Siding Spring)",
    )
    a.add_argument(
        "--max-days",
        type=_opt_float,
        default=20.0,
        help="max days since the first detection (default 20)",
    )
    a.add_argument(
        "--mag-limit",
        type=_opt_float,
        default=19.5,
        help="faintest last magnitude (default 19.5; 'none' = off)",
    )
    a.add_argument("--seed", type=int, default=0, help="random tie-breaking seed")
    p.add_argument(
        "--portal-url",
        default=None,
        metavar="URL",
        help="object pages are URL/<object id> (default: the survey's broker portal, Fink for "
        "ZTF); 'none' for no link",
    )
    p.add_argument(
        "--allow-survey-mismatch",
        action="store_true",
        help="score alerts of another survey than the model's",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=20_000,
        help="input rows (alerts) read at a time (default 20000)",
    )
    p.add_argument("--format", help="input format name when detection is not wanted")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from earlyia.errors import InputError
    from earlyia.followup.config import Constraints
    from earlyia.report.tonight import observing_list

    if args.chunk_size < 1:
        raise InputError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    portal = args.portal_url
    if portal is not None and portal.strip().lower() in ("", "none", "off"):
        portal = ""
    constraints = Constraints(
        dec_min=args.dec_min,
        dec_max=args.dec_max,
        max_days_since_first=args.max_days,
        mag_limit=args.mag_limit,
    )
    res = observing_list(
        args.inputs,
        args.out,
        model=args.model,
        min_purity=args.min_purity,
        prevalence=args.prevalence,
        max_detections=args.max_ndethist,
        n_targets=args.n,
        strategy=args.strategy,
        constraints=constraints,
        portal_url=portal,
        allow_survey_mismatch=args.allow_survey_mismatch,
        chunk_size=args.chunk_size,
        format=args.format,
        seed=args.seed,
        progress=lambda line: print(f"earlyia tonight: {line}", file=sys.stderr),
    )
    for note in res.notes:
        print(f"note: {note}")
    print(
        f"{len(res.candidates)} likely early SN Ia and {len(res.targets)} active-learning "
        f"target(s) from {res.n_alerts} alerts "
        f"in {res.seconds:.0f} s -> {res.index}"
    )
    return 0 if res.n_scored else 1
