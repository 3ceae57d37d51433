"""Early flagging with the ~310 labels active learning chose, against all the pool's
labels.

"Maximum classification with minimum training": an honest-protocol experiment (``earlyia learn
... --protocol honest``) holds out half of the objects and lets each realisation label 10 + 300
alerts of the other half. For each realisation this script rebuilds that split from the
realisation's seed, and evaluates on the held-out objects, with the replay protocol
(``earlyia.evaluate``), three models:

* ``AL model``: the realisation's own final model (the engine's 1000-tree forest, 310 labels);
* ``AL labels + default recipe``: ``train_model`` with the default early recipe (leaf 5, balanced
  classes, object weights) on the same 310 labelled alerts;
* ``all pool labels``: the default recipe on every labelled alert of the pool half (~10 000 alerts),
  the most a random-label strategy could hope for with this split.

Efficiency / purity at threshold 0.5 within 10 and 20 detections, the best efficiency at purity
>= 0.8 on the held-out curve (optimistic), and the efficiency at purity >= 0.8 when the threshold
is the card's operating point (chosen on the training objects only; not available for the AL
model, whose forest has no such card entry).

Usage:
    python scripts/early_al_labels.py RUN_DIR FEATURES.parquet [--realisations 5] [--trees 300] \\
        [--out table.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from earlyia.evaluate import PROTOCOL_TYPES, evaluate_early
from earlyia.features.io import read_features
from earlyia.learn.experiment import load_data
from earlyia.learn.protocols import Protocol
from earlyia.model.artifact import Model
from earlyia.model.recipe import Recipe
from earlyia.model.training import train_model
from earlyia.report.tns import markdown_table

RECIPE = Recipe(min_samples_leaf=5, class_weight="balanced", object_weights=True)


def evaluate(
    meta: pd.DataFrame, score: np.ndarray, card_threshold: dict[int, float] | None
) -> dict[str, float]:
    rep = evaluate_early(meta.assign(score=score), max_detections=(10, 20), type_map=PROTOCOL_TYPES)
    s = rep.summary.set_index("max_detections")
    row: dict[str, float] = {}
    for n in (10, 20):
        row[f"eff@0.5 N<={n}"] = s.loc[n, "efficiency"]
        row[f"pur@0.5 N<={n}"] = s.loc[n, "purity"]
        row[f"eff@pur>=0.8 N<={n} (curve)"] = rep.best_at_purity(n, 0.8)["efficiency"]
        if card_threshold and np.isfinite(card_threshold.get(n, np.nan)):
            blind = evaluate_early(
                meta.assign(score=score), max_detections=(n,), threshold=card_threshold[n]
            )
            b = blind.summary.iloc[0]
            row[f"eff/pur N<={n} (card threshold)"] = f"{b['efficiency']:.3f} / {b['purity']:.3f}"
        else:
            row[f"eff/pur N<={n} (card threshold)"] = "-"
    return row


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "run", help="experiment folder of `earlyia learn --protocol honest` (with model files)"
    )
    ap.add_argument("features", help="the feature table the experiment ran on")
    ap.add_argument(
        "--realisations", type=int, default=5, help="first N realisations of each strategy"
    )
    ap.add_argument("--trees", type=int, default=300, help="trees of the retrained forests")
    ap.add_argument("--out", help="write the Markdown table here too")
    args = ap.parse_args()

    run = Path(args.run)
    cfg = json.loads((run / "manifest.json").read_text())["config"]
    if cfg["protocol"] != "honest":
        raise SystemExit(
            f"{run}: protocol {cfg['protocol']!r}; this evaluation needs the honest "
            "protocol's held-out objects"
        )
    df, meta = read_features(args.features)
    data = load_data(args.features)
    rows_of = pd.Series(np.arange(len(df)), index=df["alert_id"].astype(str))
    data_rows = rows_of.loc[
        pd.Index(data.ids.astype(str))
    ].to_numpy()  # feature-table row of each experiment row
    proto = Protocol(
        name="honest",
        n_initial=cfg["n_initial"],
        n_initial_positive=cfg["n_initial_positive"],
        n_loops=cfg["n_loops"],
        batch_size=cfg["batch_size"],
        test_fraction=cfg["test_fraction"],
    )
    results = []
    for strategy in cfg["strategies"]:
        for r in range(args.realisations):
            rdir = run / "realisations" / strategy / f"r{r:03d}"
            if not (rdir / "done.json").exists() or not (rdir / "model.eia").exists():
                continue
            ids = json.loads((rdir / "ids.json").read_text())
            split = proto.split(
                data.y, data.groups, random_state=np.random.default_rng(ids["seed"])
            )
            test = df.iloc[data_rows[split.test]]
            tmeta = test[["object_id", "ndethist", "label"]]
            al = Model.load(rdir / "model.eia")
            train_ids = ids["initial_ids"] + ids["queried_ids"]
            pool = df.iloc[data_rows[np.concatenate([split.initial, split.pool])]]
            variants = {
                "AL model (engine forest, 310 labels)": (al, None),
                "AL labels + default recipe": (
                    train_model(
                        pool,
                        meta["extractor"],
                        RECIPE.replace(n_estimators=args.trees),
                        sample_ids=train_ids,
                        random_state=r,
                    ),
                    True,
                ),
                "all pool labels + default recipe": (
                    train_model(
                        pool,
                        meta["extractor"],
                        RECIPE.replace(n_estimators=args.trees),
                        random_state=r,
                    ),
                    True,
                ),
            }
            for name, (model, use_card) in variants.items():
                score = model.predict_proba(test)[:, 1]
                row = {
                    "strategy": strategy,
                    "realisation": r,
                    "model": name,
                    "labels": int(model.card["training"]["n_samples"]),
                }
                row |= evaluate(tmeta, score, model.operating_thresholds() if use_card else None)
                results.append(row)
                print(row, flush=True)
    res = pd.DataFrame(results)
    num = [c for c in res.columns if res[c].dtype.kind == "f"]
    summ = res.groupby(["strategy", "model"], sort=False).agg(
        realisations=("realisation", "size"),
        labels=("labels", "median"),
        **{c: (c, "mean") for c in num},
    )
    text = markdown_table(summ.reset_index().round(3))
    card_cols = [c for c in res.columns if "card threshold" in c]
    per_real = markdown_table(res[["strategy", "realisation", "model", *card_cols]])
    text += "\nCard-threshold efficiency / purity per realisation:\n\n" + per_real
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
