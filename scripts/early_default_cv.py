"""The default early pipeline, cross-validated by object on the shared replay.

Exactly the commands a user runs, on folds split by object:

    earlyia features REPLAY --out features.parquet                  # default extractor: early
    earlyia train train_fold.parquet --labels objects.csv --out m.eia   # default recipe (early)
    earlyia score heldout_fold_replay.parquet --model m.eia --out s.parquet

then the replay protocol (``earlyia.evaluate``) on the pooled held-out scores: efficiency / purity
at 0.5 within 5, 10 and 20 detections; the best efficiency at purity >= 0.8 read on the held-out
curve (optimistic: the threshold is chosen on the evaluated objects); and the **blind** figure:
each fold's model applies the threshold its card chose on its own training objects (grouped
cross-validation inside ``earlyia train``), the flagged objects of all folds pooled. Also: the
fraction of CV / AGN / Varstar objects flagged at 0.5, and of freshly generated flat, fading and
noisy-constant light curves (``earlyia.sim.impostors``, a seed the training never used).

Usage:
    python scripts/early_default_cv.py [--replay PATH] [--labels PATH] [--folds 5] [--trees 1000] \\
        [--seed 0] [--out table.md]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from earlyia.cli.main import main as cli
from earlyia.data import data_dir, reference_dir
from earlyia.evaluate import PROTOCOL_TYPES, evaluate_early
from earlyia.features import get_extractor
from earlyia.features.io import read_features, write_features
from earlyia.folds import object_folds
from earlyia.labels import read_labels
from earlyia.model.artifact import Model
from earlyia.report.tns import markdown_table
from earlyia.sim.impostors import generate

VARIABLE_CLASSES = ("CV", "AGN", "Varstar")


def run(cmd: list[str]) -> None:
    code = cli(cmd)
    if code != 0:
        raise SystemExit(f"earlyia {' '.join(cmd)} exited with {code}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--replay", default=str(reference_dir() / "ztf_replay_alerts_with_anchor.parquet")
    )
    ap.add_argument("--labels", default=str(data_dir() / "ztf_fink_tns_labelled" / "objects.csv"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--trees", type=int, default=1000, help="trees (default 1000, the train command's default)"
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the fold split")
    ap.add_argument("--out", help="write the Markdown report here too")
    args = ap.parse_args()

    labels = read_labels(args.labels)
    replay = pd.read_parquet(args.replay)
    replay = replay[replay["objectId"].isin(labels.index)]
    objects = replay["objectId"].drop_duplicates().to_numpy(object)
    y_obj = PROTOCOL_TYPES.encode(labels.reindex(objects).to_numpy(object)) == 1
    impostors = generate(100, random_state=12345).replay(3, 20)
    with tempfile.TemporaryDirectory(prefix="earlyia_cv_") as tmp:
        tmp = Path(tmp)
        feats = tmp / "features.parquet"
        t0 = time.perf_counter()
        run(["features", args.replay, "--out", str(feats)])
        df, meta = read_features(feats)
        print(f"features: {time.perf_counter() - t0:.0f} s, {len(df)} rows", flush=True)
        ext = get_extractor(meta["extractor"])
        imp_feats = ext.transform(impostors, per="alert")
        scores, blind, imp_scores = [], [], []
        for k, (tr, te) in enumerate(object_folds(y_obj, args.folds, args.seed)):
            t0 = time.perf_counter()
            train_ids, test_ids = set(objects[tr]), set(objects[te])
            part = tmp / f"train{k}.parquet"
            write_features(
                df[df["object_id"].isin(train_ids)].reset_index(drop=True),
                part,
                ext,
                survey=meta.get("survey", "ZTF"),
                bands=meta.get("bands"),
            )
            model_path = tmp / f"model{k}.eia"
            run(
                [
                    "train",
                    str(part),
                    "--labels",
                    args.labels,
                    "--out",
                    str(model_path),
                    "--trees",
                    str(args.trees),
                    "--seed",
                    str(args.seed + k),
                ]
            )
            held = tmp / f"heldout{k}.parquet"
            replay[replay["objectId"].isin(test_ids)].to_parquet(held)
            out = tmp / f"scores{k}.parquet"
            run(["score", str(held), "--model", str(model_path), "--out", str(out)])
            s = pd.read_parquet(out)
            s["fold"] = k
            scores.append(s)
            model = Model.load(model_path)
            thr = model.operating_thresholds()
            blind.append((set(s["object_id"]), thr, s))
            imp_scores.append(model.predict_proba(imp_feats)[:, 1])
            print(f"fold {k}: {time.perf_counter() - t0:.0f} s, card thresholds {thr}", flush=True)
    allscores = pd.concat(scores, ignore_index=True)
    rep = evaluate_early(allscores, labels, max_detections=(5, 10, 20))
    s = rep.summary.set_index("max_detections")
    rows = []
    for n in (5, 10, 20):
        best = rep.best_at_purity(n, 0.8)
        tp = fp = 0
        for _ids, thr, sc in blind:
            t = thr.get(n, thr.get(20))
            if t is None or not np.isfinite(t):
                continue
            m = sc[sc["ndethist"] <= n].groupby("object_id")["score"].max()
            flagged = m[m > t].index
            pos = PROTOCOL_TYPES.encode(labels.reindex(flagged).to_numpy(object)) == 1
            tp += int(pos.sum())
            fp += int((~pos).sum())
        n_pos = int(s.loc[n, "n_pos"])
        rows.append(
            {
                "N (max detections)": n,
                "eff / pur at 0.5": f"{s.loc[n, 'efficiency']:.3f} / {s.loc[n, 'purity']:.3f}",
                "eff at pur >= 0.8, curve (optimistic)": f"{best['efficiency']:.3f} (thr "
                f"{best['threshold']:.3f})",
                "eff / pur, card threshold (blind)": f"{tp / n_pos:.3f} / "
                f"{tp / max(tp + fp, 1):.3f}"
                if tp + fp
                else "-",
            }
        )
    table = markdown_table(pd.DataFrame(rows))
    best_obj = allscores[allscores["ndethist"] <= 20].groupby("object_id")["score"].max()
    types = labels.reindex(best_obj.index)
    var = {
        c: f"{(best_obj[types == c] > 0.5).mean():.3f} of {(types == c).sum()}"
        for c in VARIABLE_CLASSES
    }
    kinds = impostors.objects["label"].to_numpy(object)[impostors.alerts["object_index"].to_numpy()]
    imp = pd.DataFrame(
        {"kind": kinds, "obj": imp_feats["object_id"], "p": np.max(imp_scores, axis=0)}
    )
    imp_frac = (
        imp.groupby(["kind", "obj"])["p"].max().gt(0.5).groupby("kind").mean().round(3).to_dict()
    )
    text = (
        f"{table}\nHeld-out objects flagged at 0.5 within 20 detections: {var}\n"
        f"Generated impostors (any fold's model, any alert) above 0.5: {imp_frac}\n"
    )
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
