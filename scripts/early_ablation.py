"""Ablation for the early SN Ia classifier on the shared real ZTF replay.

Every variant is scored with object-level cross-validation (no object's alerts on both sides)
and evaluated with the alert-by-alert replay protocol (``earlyia.evaluate.evaluate_early``):
efficiency / purity at the fixed threshold 0.5 within 10 and 20 detections, and the best
efficiency with purity >= 0.80 along the curve (threshold chosen on the evaluated folds, hence
optimistic; reported beside the fixed threshold).

Usage:
    python scripts/early_ablation.py [--replay PATH] [--labels PATH] [--folds 5] [--trees 300] \\
        [--only TEXT] [--out TABLE.md]

``--only TEXT`` runs the variants whose name contains TEXT (e.g. ``--only impostors``).
``--learning-curve 0.25 0.5 1`` instead trains the default recipe's variant (leaf 5, object + class
weights, impostors) on those fractions of each training fold's objects, over ``--fold-seeds`` fold
splits: is the target out of reach for want of labels or of information?
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.model_selection import StratifiedGroupKFold

from earlyia.data import data_dir, reference_dir
from earlyia.evaluate import PROTOCOL_TYPES, evaluate_early
from earlyia.features import get_extractor
from earlyia.io import read
from earlyia.labels import read_labels
from earlyia.sim.impostors import generate


def object_weights(object_ids: np.ndarray) -> np.ndarray:
    """1 / (number of alerts of the object): every object weighs the same in training."""
    counts = pd.Series(object_ids).map(pd.Series(object_ids).value_counts())
    return 1.0 / counts.to_numpy(float)


def oof_scores(
    X, y, groups, make, weights, folds, seed, extra=None, train_fraction=1.0
) -> np.ndarray:
    """Out-of-fold scores, folds by object; ``extra = (X, y, w)`` rows are added to every training
    fold.

    ``train_fraction`` < 1 trains each fold on that fraction of its training objects (drawn with
    ``seed``, all alerts of a drawn object kept): the learning curve. The test folds are the same as
    with 1.
    """
    p = np.zeros(len(y))
    rng = np.random.default_rng(seed)
    for train, test in StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(
        X, y, groups
    ):
        if train_fraction < 1:
            objs = np.unique(groups[train])
            drawn = rng.choice(objs, size=max(2, round(train_fraction * len(objs))), replace=False)
            train = train[np.isin(groups[train], drawn)]
        model = make()
        Xt, yt = X[train], y[train]
        wt = None if weights is None else weights[train]
        if extra is not None:
            Xt, yt, wt = (
                np.vstack([Xt, extra[0]]),
                np.concatenate([yt, extra[1]]),
                np.concatenate([wt, extra[2]]),
            )
        model.fit(Xt, yt, sample_weight=wt)
        p[test] = model.predict_proba(X[test])[:, 1]
    return p


def early_metrics(meta: pd.DataFrame, scores: np.ndarray) -> dict:
    """Replay-protocol figures of one set of alert scores: efficiency and purity at 0.5 and the
    best efficiency at purity >= 0.8 on the curve, within 10 and 20 detections."""
    rep = evaluate_early(meta.assign(score=scores), max_detections=(10, 20))
    s = rep.summary.set_index("max_detections")
    row = {}
    for n in (10, 20):
        row |= {
            f"eff@0.5 N<={n}": s.loc[n, "efficiency"],
            f"pur@0.5 N<={n}": s.loc[n, "purity"],
            f"eff@pur>=0.8 N<={n}": rep.best_at_purity(n, 0.8)["efficiency"],
        }
    return row


def emit(table: pd.DataFrame, out: str | None) -> None:
    """Print ``table`` as Markdown, and write it to ``out`` when given."""
    text = markdown(table)
    print(text)
    if out:
        with open(out, "w") as fh:
            fh.write(text + "\n")


def markdown(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns)
    body = [
        "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |"
        for row in df.itertuples(index=False)
    ]
    return "\n".join([head, *body])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--replay", default=str(reference_dir() / "ztf_replay_alerts_with_anchor.parquet")
    )
    ap.add_argument("--labels", default=str(data_dir() / "ztf_fink_tns_labelled" / "objects.csv"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--trees", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", help="run only the variants whose name contains this text")
    ap.add_argument("--out", help="write the Markdown table here too")
    ap.add_argument(
        "--learning-curve",
        type=float,
        nargs="+",
        metavar="FRACTION",
        help="train the default recipe on these fractions of the training objects instead of the "
        "ablation",
    )
    ap.add_argument(
        "--fold-seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="fold splits of the learning curve",
    )
    args = ap.parse_args()

    lc = read([args.replay])
    labels = read_labels(args.labels)
    tables = {}
    extractors = {
        "fink": get_extractor("sigmoid", mode="fink"),
        "robust": get_extractor("sigmoid", mode="robust"),
        "early": get_extractor("early", sigmoid=None),
    }
    for key, ext in extractors.items():
        t0 = time.perf_counter()
        tables[key] = (ext.transform(lc, per="alert"), list(ext.names))
        print(f"features {key}: {time.perf_counter() - t0:.1f} s", flush=True)
    base = tables["early"][0]
    meta = base[["object_id", "ndethist"]].copy()
    meta["label"] = meta["object_id"].map(labels)
    y = PROTOCOL_TYPES.encode(meta["label"].to_numpy(object)) == 1
    groups = meta["object_id"].to_numpy(object)
    w = object_weights(groups)

    def cols(*keys, source=None):
        src = source or {k: tables[k][0] for k in keys}
        return np.clip(np.hstack([src[k][tables[k][1]].to_numpy(float) for k in keys]), -1e6, 1e6)

    # generated flat / fading / noisy-constant light curves, replayed, as negatives
    # (earlyia.sim.impostors)
    imp_lc = generate(100, random_state=args.seed).replay(3, 20)
    imp = {k: extractors[k].transform(imp_lc, per="alert") for k in ("early", "robust")}
    imp_groups = imp["early"]["object_id"].to_numpy(object)
    imp_rows = (
        cols("early", "robust", source=imp),
        np.zeros(len(imp_groups), bool),
        object_weights(imp_groups),
    )

    def rf(leaf=1, balanced=False):
        return lambda: RandomForestClassifier(
            args.trees,
            min_samples_leaf=leaf,
            class_weight="balanced" if balanced else None,
            random_state=args.seed,
            n_jobs=1,
        )

    variants = [  # (name, X, model factory, row weights[, extra training rows])
        ("Fink features (fink mode), RF full depth", cols("fink"), rf(), None),
        ("robust sigmoid, RF full depth", cols("robust"), rf(), None),
        ("early features, RF full depth", cols("early"), rf(), None),
        ("early + robust sigmoid, RF full depth", cols("early", "robust"), rf(), None),
        ("early + robust sigmoid, RF leaf 5", cols("early", "robust"), rf(5), None),
        ("early + robust sigmoid, RF leaf 5, object weights", cols("early", "robust"), rf(5), w),
        (
            "early + robust sigmoid, RF leaf 5, object + class weights",
            cols("early", "robust"),
            rf(5, True),
            w,
        ),
        (
            "early + robust sigmoid, RF leaf 5, object + class weights, impostors (default recipe)",
            cols("early", "robust"),
            rf(5, True),
            w,
            imp_rows,
        ),
        (
            "early + robust sigmoid, gradient boosting, object weights",
            cols("early", "robust"),
            lambda: HistGradientBoostingClassifier(
                max_iter=300, learning_rate=0.05, random_state=args.seed
            ),
            w,
        ),
        (
            "early + robust sigmoid, RF leaf 5, object weights, isotonic calibration",
            cols("early", "robust"),
            lambda: CalibratedClassifierCV(rf(5)(), method="isotonic", cv=3),
            w,
        ),
    ]
    if args.learning_curve:
        learning_curve(args, variants[7], y, groups, meta)
        return
    if args.only:
        variants = [v for v in variants if args.only in v[0]]
    rows = []
    for name, X, make, weights, *extra in variants:
        t0 = time.perf_counter()
        p = oof_scores(
            X, y, groups, make, weights, args.folds, args.seed, extra[0] if extra else None
        )
        row = {"variant": name} | early_metrics(meta, p)
        rows.append(row)
        print(f"{name}: {time.perf_counter() - t0:.0f} s  {row}", flush=True)
    rows.insert(
        0,
        {
            "variant": "Fink production model (anchor_score; probably trained on some of these "
            "objects)"
        }
        | early_metrics(meta, base["anchor_score"].to_numpy(float)),
    )
    emit(pd.DataFrame(rows), args.out)


def learning_curve(args, variant, y, groups, meta) -> None:
    """Efficiency at purity >= 0.8 (curve) and at 0.5 against the number of training objects,
    mean over fold splits."""
    name, X, make, weights, extra = variant
    n_objects = len(np.unique(groups))
    rows = []
    for frac in sorted(args.learning_curve):
        for fs in args.fold_seeds:
            p = oof_scores(X, y, groups, make, weights, args.folds, fs, extra, train_fraction=frac)
            row = {
                "fraction": frac,
                "fold seed": fs,
                "training objects": round(frac * n_objects * (args.folds - 1) / args.folds),
            }
            row |= early_metrics(meta, p)
            rows.append(row)
            print(row, flush=True)
    df = pd.DataFrame(rows)
    mean = df.drop(columns="fold seed").groupby("fraction", as_index=False).mean()
    std = df.drop(columns="fold seed").groupby("fraction").std().reset_index(drop=True)
    for c in ("eff@pur>=0.8 N<=10", "eff@pur>=0.8 N<=20"):
        mean[c + " (std)"] = std[c]
    mean["training objects"] = mean["training objects"].round().astype(int)
    print(f"{name}: learning curve, mean over fold splits {args.fold_seeds}")
    emit(mean, args.out)


if __name__ == "__main__":
    main()
