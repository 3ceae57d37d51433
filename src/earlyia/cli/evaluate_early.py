"""``earlyia evaluate-early``: the alert-by-alert replay protocol on scores or on any labelled input."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from earlyia.errors import InputError
from earlyia.evaluate import evaluate_early, plot_efficiency_vs_detections
from earlyia.io.table import atomic_write

EPILOG = """examples:
  # Fink's production scores stored in the shared replay file
  earlyia evaluate-early ../shared/reference/ztf_replay_alerts_with_anchor.parquet \\
      --labels ../shared/data/ztf_fink_tns_labelled/objects.csv --score-column anchor_score --out eval-fink
  # scores written by `earlyia score`
  earlyia evaluate-early SCORES.parquet --labels objects.csv --max-detections 5 10 20
  # any labelled light-curve input: replayed detection by detection and scored with a model
  earlyia evaluate-early lightcurves.parquet --model MODEL.eia --out eval
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate-early",
        help="efficiency/purity of early flagging with the alert-by-alert replay protocol",
        description=(
            "An object is flagged within N detections when any of its alerts with <= N detections scores above the "
            "threshold. Prints efficiency, purity and FoM per N, writes the efficiency-purity curves, the calibration "
            "of the score and a PNG of efficiency vs number of detections."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", nargs="+", help="a scores table (Parquet with a score column) or light-curve input(s) with --model")
    p.add_argument("--labels", help="CSV with an object id column (objectId/object_id) and a type column (tns_type/type/label)")
    p.add_argument("--model", help="model to score light-curve input with (each detection replayed as an alert)")
    p.add_argument("--score-column", default="score", help="column holding the score (default: score)")
    p.add_argument("--max-detections", type=int, nargs="+", default=[5, 10, 20], metavar="N")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--out", help="directory for tables, the report and the PNG")
    p.set_defaults(func=run)


def read_labels(path: str) -> pd.Series:
    """Object id -> type string from a CSV with recognisable column names."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read labels CSV: {exc}", source=path) from exc
    id_col = next((c for c in ("objectId", "object_id", "id", "name") if c in df.columns), None)
    type_col = next((c for c in ("tns_type", "type", "label", "TNS", "classification") if c in df.columns), None)
    if id_col is None or type_col is None:
        raise InputError(f"labels need an object id and a type column; found {list(df.columns)}", source=path)
    return df.drop_duplicates(id_col, keep="last").set_index(id_col)[type_col].astype(str)


def _load_scores(args) -> pd.DataFrame:
    first = args.input[0]
    if len(args.input) == 1 and first.endswith(".parquet") and args.model is None:
        try:
            names = pq.read_schema(first).names
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read Parquet schema: {exc}", source=first) from exc
        if args.score_column not in names:
            raise InputError(f"no column {args.score_column!r}; give --score-column, or --model to score light curves", source=first)
        wanted = [c for c in ("objectId", "object_id", "ndethist", "n_detections", "label", args.score_column) if c in names]
        return pd.read_parquet(first, columns=wanted)
    if args.model is None:
        raise InputError("light-curve input needs --model to be scored")
    from earlyia.io import read
    from earlyia.score.model import Model
    from earlyia.score.pipeline import score_lightcurves

    lc = read(args.input)
    if lc.alerts.empty:
        lc = lc.replay(min_detections=1, max_detections=max(args.max_detections))
    return score_lightcurves(lc, Model.load(args.model))


def run(args: argparse.Namespace) -> int:
    scores = _load_scores(args)
    labels = read_labels(args.labels) if args.labels else None
    det_col = "ndethist" if "ndethist" in scores.columns else "n_detections"
    report = evaluate_early(
        scores, labels, max_detections=args.max_detections, threshold=args.threshold,
        score_column=args.score_column, detections_column=det_col,
    )
    text = report.to_markdown()
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in (("summary", report.summary), ("by_detections", report.by_detections), ("calibration", report.calibration)):
            atomic_write(out / f"{name}.csv", lambda tmp, f=frame: f.to_csv(tmp, index=False))
        curves = pd.concat([c.assign(max_detections=n) for n, c in report.curves.items()], ignore_index=True)
        atomic_write(out / "curves.csv", lambda tmp: curves.to_csv(tmp, index=False))
        atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(text + "\n"))
        plot_efficiency_vs_detections(report, out / "efficiency_vs_detections.png")
        print(f"wrote {out}/")
    return 0
