"""Learning curve of the default early recipe on the shared real ZTF replay, with and without what
the stream gives for free: augmented copies of the labelled light curves, self-training on the
unlabelled alert pool, and pre-training rows from the built-in simulator.

Objects are split into folds (by object, stratified on SN Ia). For each fold and each fraction of
the other folds' objects (drawn with the seed, the same objects for every variant), the recipe is
trained and the held-out objects are replayed alert by alert (3rd to 20th detection, the reference
protocol). Reported per variant and training size, pooled over folds: efficiency and purity within
20 (and 10) detections at the card's own threshold (chosen on the training objects alone, "blind"),
and the best efficiency at purity >= 0.8 on the held-out curve (optimistic: the threshold is chosen
on the objects evaluated).

Variants:
* ``plain``: no augmentation (``--augment-copies 0``);
* ``augmented``: the recipe (2 augmented copies);
* ``self-trained``: the recipe, then the pool's alerts scored by that model; objects whose latest
  scored alert has a probability >= ``--pseudo-high`` become pseudo-SN Ia, <= ``--pseudo-low``
  pseudo-others (with their replayed alerts), and the recipe is trained again with them;
* ``simulated``: the recipe with ``--sim`` simulated light curves (earlyia.sim.ztf) added as
  labelled objects.

Usage:
    python scripts/learning_curve.py [--fractions 0.25 0.5 1] [--folds 5] \\
        [--variants plain augmented self-trained simulated]
        [--trees 300] [--out docs/results/learning_curve.md]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from earlyia.data import data_dir, reference_dir
from earlyia.evaluate import PROTOCOL_TYPES, evaluate_early
from earlyia.folds import object_folds
from earlyia.io import read
from earlyia.io.datasets import labelled
from earlyia.io.table import LightCurves
from earlyia.model.training import train_recipe
from earlyia.score.pipeline import score_lightcurves
from earlyia.sim.ztf import simulate


def _train(lc, variant, args, seed, pool):
    over = {"n_estimators": args.trees, "augment_copies": 0 if variant == "plain" else None}
    if variant == "simulated":
        sim = simulate(args.sim, random_state=seed)
        sim.objects["label"] = sim.objects["label"].astype(str)
        lc = LightCurves.concat([lc, sim])
    model = train_recipe(
        lc,
        "early",
        overrides={**over, "cv_folds": args.cv_folds},
        random_state=seed,
        n_jobs=args.jobs,
    )
    if variant != "self-trained":
        return model, 0
    s = score_lightcurves(pool, model, per="alert")
    s = s[s["passed"] & (s["n_detections"] >= 3)]
    latest = (
        s.sort_values(["object_id", "mjd"])
        .drop_duplicates("object_id", keep="last")
        .set_index("object_id")["score"]
    )
    high = latest.index[latest >= args.pseudo_high]
    low = latest.index[latest <= args.pseudo_low]
    chosen = pool.take(pool.object_index([*high, *low]))
    chosen.objects["label"] = np.where(
        chosen.objects["object_id"].isin(set(high)), "SN Ia", "pseudo-other"
    )
    chosen.alerts = chosen.alerts.iloc[0:0]
    both = LightCurves.concat([lc, chosen])
    model = train_recipe(
        both,
        "early",
        overrides={**over, "cv_folds": args.cv_folds},
        random_state=seed,
        n_jobs=args.jobs,
    )
    return model, len(chosen.objects)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--replay", default=str(reference_dir() / "ztf_replay_alerts_with_anchor.parquet")
    )
    ap.add_argument("--labels", default=str(data_dir() / "ztf_fink_tns_labelled" / "objects.csv"))
    ap.add_argument(
        "--pool", default=str(data_dir() / "ztf_fink_alerts_pool" / "ztf_alerts_pool.parquet")
    )
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["plain", "augmented", "self-trained", "simulated"],
        choices=["plain", "augmented", "self-trained", "simulated"],
    )
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--cv-folds",
        type=int,
        default=5,
        help="inner folds of each training (calibration, threshold)",
    )
    ap.add_argument("--trees", type=int, default=None)
    ap.add_argument(
        "--sim", type=int, default=3000, help="simulated objects added by the 'simulated' variant"
    )
    ap.add_argument("--pseudo-high", type=float, default=0.9)
    ap.add_argument("--pseudo-low", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=-1)
    ap.add_argument("--out", help="write the Markdown table here too")
    args = ap.parse_args()

    lc = read([args.replay])
    lc, y = labelled(lc, args.labels)
    pool = read([args.pool]) if "self-trained" in args.variants else None
    objs = lc.objects["object_id"].to_numpy(object)
    labels = dict(zip(objs, lc.objects["label"], strict=True))
    rng = np.random.default_rng(args.seed)
    rows = {}
    t0 = time.perf_counter()
    for fold, (tr, te) in enumerate(object_folds(y, args.folds, args.seed)):
        test = lc.take(te).replay(3, 20)
        order = rng.permutation(tr)
        for frac in args.fractions:
            sub = np.sort(order[: max(10, round(frac * len(tr)))])
            for variant in args.variants:
                model, n_pseudo = _train(lc.take(sub), variant, args, args.seed + fold, pool)
                s = score_lightcurves(test, model, per="alert")
                thr = model.threshold(20)["threshold"]
                thr10 = model.threshold(10)["threshold"]
                key = (
                    variant,
                    frac,
                )  # folds differ by an object or two in size: pooled by fraction
                part = pd.DataFrame(
                    {
                        "object_id": s["object_id"],
                        "ndethist": s["ndethist"],
                        "score": s["score"],
                        "blind20": s["score"] - (thr if np.isfinite(thr) else 2.0),
                        "blind10": s["score"] - (thr10 if np.isfinite(thr10) else 2.0),
                    }
                )
                rows.setdefault(key, []).append(
                    part.assign(
                        label=part["object_id"].map(labels), n_pseudo=n_pseudo, n_train=len(sub)
                    )
                )
                print(
                    f"fold {fold + 1}, {len(sub)} objects, {variant}: threshold {thr:.3f}, "
                    f"{time.perf_counter() - t0:.0f} s",
                    flush=True,
                )
    table = []
    for (variant, _frac), parts in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        df = pd.concat(parts, ignore_index=True)
        out = {
            "variant": variant,
            "training objects (per fold)": round(np.mean([p["n_train"].iloc[0] for p in parts])),
        }
        for nd in (20, 10):
            rep = evaluate_early(
                df.assign(score=df[f"blind{nd}"]),
                max_detections=(nd,),
                threshold=0.0,
                type_map=PROTOCOL_TYPES,
            )
            r = rep.summary.iloc[0]
            out[f"blind N<={nd} eff / pur"] = f"{r['efficiency']:.3f} / {r['purity']:.3f}"
            curve = evaluate_early(df, max_detections=(nd,), type_map=PROTOCOL_TYPES)
            out[f"curve N<={nd} eff@pur>=0.8"] = (
                f"{curve.best_at_purity(nd, 0.8)['efficiency']:.3f}"
            )
        if variant == "self-trained":
            out["pseudo-labelled objects"] = int(np.mean([p["n_pseudo"].iloc[0] for p in parts]))
        table.append(out)
    result = pd.DataFrame(table)
    head = "| " + " | ".join(result.columns) + " |\n|" + "---|" * len(result.columns)
    body = [
        "| " + " | ".join("" if pd.isna(v) else str(v) for v in r) + " |"
        for r in result.itertuples(index=False)
    ]
    text = "\n".join([head, *body])
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
