"""Build the default early model shipped with earlyia (``src/earlyia/models/early_ztf.eia``).

The current ``early`` recipe (``earlyia.model.recipe``, what ``earlyia train LIGHTCURVES --labels
...`` does) on the shared labelled ZTF light curves (``ztf_fink_tns_labelled``: Fink alert histories
with TNS types), with the size settings of ``earlyia.model.shipped.SIZE`` (fewer trees than the
recipe's 300, so that the package stays small), seed 42. Deterministic: the same data and code give
the same model (the card's ``created`` time and content hash aside) with the default ``--jobs 1``.
The card's lineage records the resolved recipe and the sha256 of every training file;
``tests/test_shipped_model.py`` compares them with the recipe and the data as they are now.

``--compare`` also trains the recipe at full size on the same folds (same seed, same objects held
out) and prints what the smaller model costs: held-out efficiency and purity at the card threshold
(purity >= 0.8 within 10 and 20 detections) and the area under the held-out ROC curve of each
operating curve.

Usage:
    python scripts/build_default_model.py [--out PATH] [--jobs N] [--compare] [--trees N] \\
        [--min-samples-leaf N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from earlyia.data import data_dir
from earlyia.io import read
from earlyia.labels import read_labels
from earlyia.model.recipe import RECIPES
from earlyia.model.shipped import (
    FOLDS,
    SEED,
    SIZE,
    shipped_recipe,
    training_data_hash,
    training_files,
)
from earlyia.model.training import train_recipe

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "earlyia" / "models" / "early_ztf.eia"


def build(root: Path, size: dict, *, jobs: int = 1, progress=print):
    """The model of the ``early`` recipe with ``size`` applied, trained on the shipped model's
    files under ``root``."""
    files = training_files(root)
    lcs, labels = files[:-1], files[-1]
    lc = read(lcs)
    lc.objects["label"] = lc.objects["object_id"].astype(str).map(read_labels(labels))
    lineage = {
        "built_by": "scripts/build_default_model.py",
        "training_data": training_data_hash(files, root),
        "recipe_settings": shipped_recipe(size).to_card(),
        "size_overrides": dict(size),
    }
    return train_recipe(
        lc,
        "early",
        overrides={**size, "cv_folds": FOLDS},
        random_state=SEED,
        n_jobs=jobs,
        lineage=lineage,
        progress=progress,
    )


def auc(curve: dict) -> float:
    """Area under a card's held-out operating curve (object-level ROC within its detections)."""
    fpr = np.r_[0.0, curve["fpr"]]
    tpr = np.r_[0.0, curve["tpr"]]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def quality(model) -> dict:
    """Held-out figures of a model's card, per max detections."""
    out = {}
    curves = {c["max_detections"]: c for c in model.card.get("operating_curves") or []}
    for op in model.card["operating_points"]:
        n = op["max_detections"]
        out[n] = {
            "threshold": op["threshold"],
            "efficiency": op["efficiency"],
            "purity": op["purity"],
            "auc": auc(curves[n]) if n in curves else float("nan"),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--out", default=str(OUT), help=f"model file to write (default {OUT.relative_to(ROOT)})"
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="processes for the forests (default 1: bit-for-bit reproducible; with more, "
        "scikit-learn sums the "
        "trees' probabilities in thread order, which moves the calibration in the 8th decimal)",
    )
    ap.add_argument(
        "--compare",
        nargs="*",
        metavar="TREES:LEAF",
        help="also train the recipe at full size (and at these other sizes) on the same folds, "
        "and compare",
    )
    ap.add_argument(
        "--trees",
        type=int,
        default=SIZE["n_estimators"],
        help="trees (try other sizes; the shipped model uses SIZE)",
    )
    ap.add_argument("--min-samples-leaf", type=int, default=SIZE["min_samples_leaf"])
    args = ap.parse_args()
    size = {"n_estimators": args.trees, "min_samples_leaf": args.min_samples_leaf}
    root = data_dir()
    t0 = time.perf_counter()
    model = build(root, size, jobs=args.jobs)
    model.save(args.out)
    mb = Path(args.out).stat().st_size / 1e6
    print(
        f"wrote {args.out}: {mb:.2f} MB, {model.card['n_trees']} trees, hash {model.hash[:16]} "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    rows = [("shipped" if size == SIZE else "this size", size, mb, quality(model))]
    if args.compare is not None:
        others = [{k: getattr(RECIPES["early"], k) for k in SIZE}]
        for spec in args.compare:
            trees, leaf = (int(v) for v in spec.split(":"))
            others.append({"n_estimators": trees, "min_samples_leaf": leaf})
        for i, other in enumerate(others):
            t0 = time.perf_counter()
            big = build(root, other, jobs=args.jobs)
            tmp = Path(args.out).with_suffix(f".compare{i}.eia")
            big.save(tmp)
            mb_other = tmp.stat().st_size / 1e6
            tmp.unlink()
            print(f"{other}: {mb_other:.2f} MB ({time.perf_counter() - t0:.0f} s)", flush=True)
            rows.insert(
                i, ("recipe (full size)" if i == 0 else "other size", other, mb_other, quality(big))
            )
    print("\n| model | trees | leaf | size (MB) | N | threshold | efficiency | purity | AUC |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, s, size_mb, q in rows:
        for n, v in q.items():
            print(
                f"| {name} | {s['n_estimators']} | {s['min_samples_leaf']} | {size_mb:.2f} | "
                f"{n} | {v['threshold']:.3f} | "
                f"{v['efficiency']:.3f} | {v['purity']:.3f} | {v['auc']:.3f} |"
            )


if __name__ == "__main__":
    main()
