"""``earlyia evaluate-early``: the alert-by-alert replay protocol on scores or on any labelled
input."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from earlyia.errors import InputError
from earlyia.evaluate import evaluate_early, plot_efficiency_vs_detections
from earlyia.io.table import atomic_write
from earlyia.labels import read_labels

EPILOG = """examples:
  # Fink's production scores stored in the shared replay file
  earlyia evaluate-early ../shared/reference/ztf_replay_alerts_with_anchor.parquet \\
      --labels ../shared/data/ztf_fink_tns_labelled/objects.csv --score-column anchor_score --out
      eval-fink
  # scores written by `earlyia score`
  earlyia evaluate-early SCORES.parquet --labels objects.csv --max-detections 5 10 20
  # any labelled light-curve input: replayed detection by detection and scored with a model
  earlyia evaluate-early lightcurves.parquet --model MODEL.eia --out eval
  # stress report: the same held-out light curves perturbed as the stream delivers them, beside
  # Fink's forest
  earlyia evaluate-early held_out.parquet --labels objects.csv --model MODEL.eia --stress \\
      --out stress \
      --fink-model ../shared/data/anchor_models_fink/default-model_sigmoid.obj.xz
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate-early",
        help="efficiency/purity of early flagging with the alert-by-alert replay protocol",
        description=(
            "An object is flagged within N detections when any of its alerts with <= N "
            "detections scores above the "
            "threshold. Prints efficiency, purity and FoM per N, writes the "
            "efficiency-purity curves, the calibration "
            "of the score and a PNG of efficiency vs number of detections."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "input",
        nargs="+",
        help="a scores table (Parquet with a score column) or light-curve input(s) with --model",
    )
    p.add_argument(
        "--labels",
        help="CSV with an object id column (objectId/object_id) and a type column "
        "(tns_type/type/label)",
    )
    p.add_argument(
        "--model",
        help="model to score light-curve input with (each detection replayed as an alert)",
    )
    p.add_argument(
        "--score-column", default="score", help="column holding the score (default: score)"
    )
    p.add_argument("--max-detections", type=int, nargs="+", default=[5, 10, 20], metavar="N")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--out", help="directory for tables, the report and the PNG")
    g = p.add_argument_group("stress report (labelled light curves and --model)")
    g.add_argument(
        "--stress",
        action="store_true",
        help="replay the light curves perturbed every way the stream delivers them (no upper "
        "limits, 30-day history, one "
        "band, cadence halved, +-1 mag, from the 1st detection, negative differences) and "
        "report efficiency and purity "
        "per case at the model's threshold and at 0.5 (objects the model trained on are left out)",
    )
    g.add_argument(
        "--cases",
        nargs="+",
        metavar="CASE",
        help="stress cases to run (default: all; names as in the report)",
    )
    g.add_argument(
        "--fink-model",
        help="Fink's production forest (its pinned pickle, .obj or .obj.xz) to report beside",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of the perturbations (default 0)")
    p.set_defaults(func=run)


def _load_scores(args) -> pd.DataFrame:
    first = args.input[0]
    if len(args.input) == 1 and first.endswith(".parquet") and args.model is None:
        try:
            names = pq.read_schema(first).names
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read Parquet schema: {exc}", source=first) from exc
        if args.score_column not in names:
            raise InputError(
                f"no column {args.score_column!r}; give --score-column, or --model to score "
                "light curves",
                source=first,
            )
        wanted = [
            c
            for c in (
                "objectId",
                "object_id",
                "ndethist",
                "n_detections",
                "label",
                args.score_column,
            )
            if c in names
        ]
        return pd.read_parquet(first, columns=wanted)
    if args.model is None:
        raise InputError("light-curve input needs --model to be scored")
    from earlyia.io import read
    from earlyia.model.artifact import Model
    from earlyia.score.pipeline import score_lightcurves

    lc = read(args.input)
    if lc.alerts.empty:
        lc = lc.replay(min_detections=1, max_detections=max(args.max_detections))
    return score_lightcurves(lc, Model.load(args.model))


def run(args: argparse.Namespace) -> int:
    if args.stress:
        return run_stress(args)
    if args.cases or args.fink_model:
        raise InputError("--cases and --fink-model belong to --stress")
    scores = _load_scores(args)
    labels = read_labels(args.labels) if args.labels else None
    det_col = "ndethist" if "ndethist" in scores.columns else "n_detections"
    report = evaluate_early(
        scores,
        labels,
        max_detections=args.max_detections,
        threshold=args.threshold,
        score_column=args.score_column,
        detections_column=det_col,
    )
    text = report.to_markdown()
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in (
            ("summary", report.summary),
            ("by_detections", report.by_detections),
            ("calibration", report.calibration),
        ):
            atomic_write(out / f"{name}.csv", lambda tmp, f=frame: f.to_csv(tmp, index=False))
        curves = pd.concat(
            [c.assign(max_detections=n) for n, c in report.curves.items()], ignore_index=True
        )
        atomic_write(out / "curves.csv", lambda tmp: curves.to_csv(tmp, index=False))
        atomic_write(out / "report.md", lambda tmp: Path(tmp).write_text(text + "\n"))
        plot_efficiency_vs_detections(report, out / "efficiency_vs_detections.png")
        print(f"wrote {out}/")
    return 0


def run_stress(args: argparse.Namespace) -> int:
    from earlyia import stress
    from earlyia.io import read
    from earlyia.model.artifact import Model

    if not args.model:
        raise InputError("--stress needs --model (the model to stress) and labelled light curves")
    cases = [stress.case_named(c) for c in args.cases] if args.cases else list(stress.CASES)
    model = Model.load(args.model)
    lc = read(args.input)
    if args.labels:
        lc.objects["label"] = lc.objects["object_id"].astype(str).map(read_labels(args.labels))
    if "label" not in lc.objects.columns or lc.objects["label"].isna().all():
        raise InputError("--stress needs labelled light curves: give --labels objects.csv")
    trained = model.prohibited_object_ids()
    keep = [
        i
        for i, (o, lab) in enumerate(
            zip(lc.objects["object_id"].astype(str), lc.objects["label"], strict=True)
        )
        if o not in trained and isinstance(lab, str) and lab
    ]
    if not keep:
        raise InputError(
            f"every labelled object of the input was used to train model {model.hash[:12]}: "
            "a stress report needs objects "
            "it never saw (hold some out, or use scripts/stress_cv.py, which cross-validates "
            "the recipe)"
        )
    print(
        f"{len(keep)} held-out labelled objects ({lc.n_objects - len(keep)} left out: "
        "trained on or unlabelled)",
        flush=True,
    )
    lc = lc.take(keep)
    scorers = [stress.model_scorer(model, "earlyia")]
    if args.fink_model:
        scorers.append(
            stress.StressScorer(
                "Fink", stress.model_scorer(Model.from_fink(args.fink_model)).score, None
            )
        )
    table = stress.stress_test(
        lc,
        scorers,
        cases=cases,
        max_detections=sorted(set(args.max_detections)),
        random_state=args.seed,
    )
    text = stress.to_markdown(table, max(args.max_detections))
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "stress.csv", lambda tmp: table.to_csv(tmp, index=False))
        atomic_write(out / "stress.md", lambda tmp: Path(tmp).write_text(text + "\n"))
        stress.plot(table, out / "stress.png", max_detections=max(args.max_detections))
        print(f"wrote {out}/")
    return 0
