"""Cross-validated stress report of the default early recipe on the shared real ZTF replay, beside
Fink's forest.

Every object is scored by a model that never saw it: the labelled objects are split into folds (by
object, stratified on SN Ia); for each fold the ``early`` recipe is trained on the other folds
(exactly as ``earlyia train LIGHTCURVES --labels``), and the held-out objects are replayed under
every stress case of :mod:`earlyia.stress` and scored by that model (at its card's threshold and at
0.5) and by Fink's production forest (at 0.5). Fink's forest may have been trained on some of these
objects: its figures are optimistic.

Usage:
    python scripts/stress_cv.py [--folds 5] [--seed 0] [--trees 300] [--copies 2] \\
        [--out docs/results/stress]

Writes ``stress.csv`` (every figure), ``stress.md`` (N <= 20), ``stress_n10.md``, ``within.md``
(change from "as given") and ``stress.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from earlyia import stress
from earlyia.data import data_dir, reference_dir
from earlyia.folds import object_folds
from earlyia.io import read
from earlyia.io.datasets import labelled
from earlyia.model.artifact import Model
from earlyia.model.training import train_recipe
from earlyia.sim.impostors import generate


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--replay", default=str(reference_dir() / "ztf_replay_alerts_with_anchor.parquet")
    )
    ap.add_argument("--labels", default=str(data_dir() / "ztf_fink_tns_labelled" / "objects.csv"))
    ap.add_argument(
        "--fink-model",
        default=str(data_dir() / "anchor_models_fink" / "default-model_sigmoid.obj.xz"),
    )
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--trees", type=int, default=None, help="trees per model (default: the recipe's)"
    )
    ap.add_argument(
        "--copies", type=int, default=None, help="augmented copies (default: the recipe's)"
    )
    ap.add_argument(
        "--impostors",
        type=int,
        default=100,
        help="generated impostors per kind in the protection case",
    )
    ap.add_argument("--cases", nargs="+", help="stress cases (default: all)")
    ap.add_argument("--jobs", type=int, default=-1)
    ap.add_argument("--out", default="stress-cv")
    args = ap.parse_args()

    lc = read([args.replay])
    lc, y = labelled(lc, args.labels)
    cases = [stress.case_named(c) for c in args.cases] if args.cases else list(stress.CASES)
    fink = stress.StressScorer(
        "Fink", stress.model_scorer(Model.from_fink(args.fink_model)).score, None
    )
    impostors = (
        generate(args.impostors, random_state=10_000 + args.seed) if args.impostors else None
    )
    parts = []
    t0 = time.perf_counter()
    for fold, (tr, te) in enumerate(object_folds(y, args.folds, args.seed)):
        model = train_recipe(
            lc.take(tr),
            "early",
            overrides={"n_estimators": args.trees, "augment_copies": args.copies},
            random_state=args.seed + fold,
            n_jobs=args.jobs,
        )
        ours = stress.model_scorer(model, "earlyia")
        rows = stress.case_table(
            lc.take(te),
            [ours, fink],
            cases=cases,
            random_state=args.seed,
            impostors=impostors if fold == 0 else None,
        )
        parts.append(rows.assign(fold=fold))
        print(
            f"fold {fold + 1}/{args.folds}: threshold {ours.threshold:.3f}, "
            f"{time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    table = pd.concat(parts, ignore_index=True)
    summary = stress.summarise(table, (10, 20))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "stress.csv", index=False)
    (out / "stress.md").write_text(stress.to_markdown(summary, 20) + "\n")
    (out / "stress_n10.md").write_text(stress.to_markdown(summary, 10) + "\n")
    within = stress.within_goal(summary, "earlyia")
    (out / "within.md").write_text(_markdown(within) + "\n")
    stress.plot(
        summary,
        out / "stress.png",
        title="cross-validated early flagging within 20 detections, per perturbation",
    )
    print(stress.to_markdown(summary, 20))
    print()
    print(within.to_string(index=False))
    print(f"wrote {out}/ in {time.perf_counter() - t0:.0f} s")


def _markdown(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns)
    body = [
        "| " + " | ".join(f"{v:+.3f}" if isinstance(v, float) else str(v) for v in r) + " |"
        for r in df.itertuples(index=False)
    ]
    return "\n".join([head, *body])


if __name__ == "__main__":
    main()
