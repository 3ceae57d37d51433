"""``earlyia select``: apply the early-SN selection cuts to every alert (or object) and say why
each fails."""

from __future__ import annotations

import argparse
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from earlyia.io import read
from earlyia.io.output import check_inputs, check_output
from earlyia.io.table import atomic_write
from earlyia.select import reason_kind, select_early

EPILOG = """examples:
  earlyia select alerts/ --out selection.parquet
  earlyia select ztf_alerts_pool.parquet --out sel.parquet --max-ndethist 30 --min-points 2
  earlyia select lightcurves.parquet --out sel.parquet --per object --no-rising

Columns: object_id, alert_id, passed, reason (the first failing cut, e.g. "ndethist 34 > 20", "band
r: 2 points < 3", "not rising in g", "SIMBAD type 'RRLyr' is not a possible SN host or transient").
Exit code 0 when at least one row passed, 1 when none did, 2 on a usage or input error.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "select",
        help="apply the early-SN selection cuts",
        description=(
            "Keep young (ndethist), extragalactic-or-unknown (SIMBAD type), well-sampled "
            "(points per band) and rising "
            "alerts; write one row per alert (or object) with passed and the reason of a rejection."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", nargs="+", help="input files or directories (any supported format)")
    p.add_argument("--out", required=True, help="selection table to write (Parquet, atomic)")
    p.add_argument(
        "--per",
        choices=("alert", "object"),
        default=None,
        help="default: alert when the input has alerts",
    )
    p.add_argument(
        "--max-ndethist",
        type=int,
        default=20,
        help="maximum detections in the alert history (default 20)",
    )
    p.add_argument(
        "--min-points",
        type=int,
        default=3,
        help="minimum nights with a detection per band (default 3)",
    )
    p.add_argument(
        "--bands", nargs="+", default=["g", "r"], help="bands that need the points (default g r)"
    )
    p.add_argument("--no-rising", action="store_true", help="do not require a rising light curve")
    p.add_argument("--format", help="input format name when detection is not wanted")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_inputs(args.input)
    check_output(args.out, args.input)
    lc = read(args.input, format=args.format)
    per = args.per or ("alert" if not lc.alerts.empty else "object")
    out = select_early(
        lc,
        per=per,
        max_ndethist=args.max_ndethist,
        min_points_per_band=args.min_points,
        bands=tuple(args.bands),
        require_rising=not args.no_rising,
    )
    table = pa.Table.from_pandas(out, preserve_index=False)
    atomic_write(args.out, lambda tmp: pq.write_table(table, tmp))
    n, k = len(out), int(out["passed"].sum())
    share = k / n if n else 0.0
    print(
        f"earlyia select: {n} {per}s, {k} passed ({share:.1%}), {len(lc.problems)} input "
        f"problem(s) -> {args.out}",
        file=sys.stderr,
    )
    for reason, cnt in list(
        out.loc[~out["passed"], "reason"].map(reason_kind).value_counts().items()
    )[:8]:
        print(f"  {cnt:6d} x {reason}", file=sys.stderr)
    return 0 if k else 1
