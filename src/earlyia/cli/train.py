"""``earlyia train``: a model file from a labelled feature table (optionally restricted to an
active-learning run's ids)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from earlyia.errors import InputError
from earlyia.features.io import is_feature_table, read_features, write_features
from earlyia.io import read
from earlyia.io.output import check_inputs, check_output
from earlyia.labels import TypeMap, read_labels

if TYPE_CHECKING:
    from earlyia.model.recipe import Recipe

EPILOG = """examples:
  # light curves: the default early model
  earlyia train replay.parquet --labels objects.csv --out model.eia
                                                                               # (augmented,
                                                                               # calibrated by
                                                                               # evidence)
  earlyia features lightcurves.parquet --out features.parquet
  # recipe from the table: early, lsst or fink
  earlyia train features.parquet --out model.eia
  # Fink's settings on any table
  earlyia train features.parquet --out model.eia --recipe fink
  # LSST table: lsst recipe (every alert, rise gate)
  earlyia train lsst.parquet --out lsst.eia
  earlyia train features.parquet --out model.eia --positive "SN Ia" --include-subtypes \\
      --trees 300 --calibrate isotonic
  # labels from a CSV (objectId, tns_type)
  earlyia train features.parquet --labels objects.csv --out model.eia
  # only an AL run's initial + queried ids
  earlyia train features.parquet --from-run runs/uncertainty --out model.eia
  earlyia models show model.eia
"""

#: Keys of an active-learning run file that list the ids it trained on.
RUN_ID_KEYS = ("initial_ids", "queried_ids", "training_ids", "train_ids", "labelled_ids")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model file from a labelled feature table",
        description=(
            "Fit a random forest on a feature table written by `earlyia features` and save "
            "it as a model file: a zip "
            "of JSON and numpy arrays (no pickle) whose card records the extractor and "
            "feature order, the positive "
            "class, the training ids (never reported as discoveries), out-of-bag metrics, "
            "versions and a content hash."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="labelled light curves or alerts in any supported format (the early recipe then "
        "replays and augments them), "
        "or one feature table written by `earlyia features`",
    )
    p.add_argument("--out", required=True, help="model file to write (atomically)")
    p.add_argument(
        "--training-rows",
        metavar="ROWS",
        help="also write the rows the forest learned from (Parquet: features, labels, views): "
        "what `earlyia followup "
        "register --training-rows` needs to retrain the model later",
    )
    p.add_argument(
        "--labels",
        help="CSV of labels (object id column objectId/object_id, type column tns_type/type/label)",
    )
    p.add_argument(
        "--label-column",
        help="column of the feature table holding labels (default: label, tns_type or type)",
    )
    p.add_argument(
        "--from-run",
        metavar="RUN_DIR",
        help="train only on the initial + queried ids of an active-learning run",
    )
    p.add_argument(
        "--positive",
        nargs="+",
        default=["SN Ia"],
        metavar="TYPE",
        help="type(s) of the positive class (default: 'SN Ia')",
    )
    p.add_argument(
        "--include-subtypes",
        action="store_true",
        help="count SN Ia sub-types (91T, 91bg, pec, CSM, Iax...) as positive",
    )
    p.add_argument(
        "--trees",
        type=int,
        default=None,
        help="number of trees (recipe: early 300, fink and lsst 1000)",
    )
    p.add_argument(
        "--augment-copies",
        type=int,
        default=None,
        metavar="N",
        help="augmented copies of every labelled light curve (light-curve inputs; recipe: early "
        "2, others 0)",
    )
    p.add_argument("--classifier", choices=("rf", "extratrees"), default="rf")
    p.add_argument("--max-depth", type=int, default=None)
    p.add_argument(
        "--recipe",
        choices=("auto", "early", "fink", "lsst"),
        default="auto",
        help="defaults of the options below: early (leaf 5, balanced classes, object weights, 100 "
        "impostors per kind, loose "
        "selection), fink (Fink's settings) or lsst (every alert scored, rise gate); auto = "
        "early for an `early` feature "
        "table, lsst for `lsst_early`, else fink",
    )
    p.add_argument(
        "--min-samples-leaf",
        type=int,
        default=None,
        help="minimum rows per leaf (recipe: early 5, fink 1)",
    )
    p.add_argument(
        "--select-min-points",
        type=int,
        default=None,
        metavar="N",
        help="selection applied when scoring with this model: nights with a detection needed per "
        "band (recipe: early 0, fink 3)",
    )
    p.add_argument(
        "--select-no-rising",
        action="store_true",
        default=None,
        help="selection applied when scoring with this model: do not require a rising light curve "
        "(early recipe: the model judges it)",
    )
    p.add_argument(
        "--class-weight",
        choices=("balanced", "balanced_subsample", "none"),
        default=None,
        help="reweigh the classes (recipe: early balanced, fink none)",
    )
    p.add_argument(
        "--object-weights",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="weigh each row by 1/(rows of its object): objects replayed at many detections count "
        "once (recipe: early yes)",
    )
    p.add_argument(
        "--impostors",
        type=int,
        default=None,
        metavar="N",
        help="add N generated flat, N fading and N noisy-constant light curves (replayed) as "
        "negatives, ZTF tables only "
        "(recipe: early 100, fink 0)",
    )
    p.add_argument(
        "--gate",
        choices=("none", "rise"),
        default=None,
        help="score 0 the alerts whose light curve has >= 3 points and no significant rise (flat, "
        "noisy-constant, fading); "
        "needs Rainbow's rise_sig among the features (recipe: lsst rise, others none)",
    )
    p.add_argument(
        "--train-rows",
        choices=("all", "gate"),
        default=None,
        help="learn from every labelled row, or only from the rows the gate accepts (the ones the "
        "model will score; "
        "recipe: lsst gate, others all; all when there is no gate)",
    )
    p.add_argument(
        "--calibrate",
        choices=("evidence", "isotonic", "sigmoid", "none"),
        default=None,
        help="calibrate probabilities on held-out predictions: per evidence stratum with "
        "operating curves for any "
        "prevalence (recipe: early), one isotonic or sigmoid map, or none (recipe: fink, lsst)",
    )
    p.add_argument(
        "--cv-folds",
        type=int,
        default=5,
        help="folds by object for honest metrics and calibration when objects have several rows "
        "(0: out-of-bag only)",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument(
        "--jobs",
        type=int,
        default=-1,
        help="processes for the forests (default -1: every core; results do not depend on it)",
    )
    p.add_argument("--parent", help="parent model file (its hash is recorded for lineage)")
    p.set_defaults(func=run)


def _id_list(value) -> list[str]:
    """Flatten ids given as a list, a list of lists (one batch per loop) or a mapping of such."""
    out: list[str] = []
    if isinstance(value, dict):
        for v in value.values():
            out += _id_list(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            out += _id_list(v) if isinstance(v, (list, tuple, dict)) else [str(v)]
    elif value is not None:
        out.append(str(value))
    return out


def _ids_from_file(path: Path) -> list[str]:
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read run file: {exc}", source=str(path)) from exc
        if isinstance(data, list):
            return _id_list(data)
        found = [k for k in RUN_ID_KEYS if k in data]
        return [i for k in found for i in _id_list(data[k])]
    if path.suffix in (".csv", ".parquet"):
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        col = next((c for c in ("id", "alert_id", "ids", "object_id") if c in df.columns), None)
        if col is None:
            return []
        if (
            "role" in df.columns
        ):  # a run table with initial/queried/test roles: keep the training ones
            df = df[df["role"].astype(str).isin(["initial", "queried", "train", "training"])]
        return df[col].astype(str).tolist()
    return []


def read_run_ids(run: str | Path) -> tuple[list[str], dict]:
    """The ids an active-learning run trained on (initial + queried) and where they came from.

    ``run`` is one realisation's folder (its ``ids.json``, written by ``earlyia.learn.experiment``),
    an experiment folder (its ``best.json`` names the best realisation, whose ids are used, as Fink
    refits its best-FoM realisation), or a single file: JSON with :data:`RUN_ID_KEYS`, or a
    CSV/Parquet with an id column.
    """
    run = Path(run)
    if not run.exists():
        raise InputError("active-learning run not found", source=str(run))
    info: dict = {"from_run": str(run)}
    if run.is_file():
        path = run
    elif (run / "ids.json").exists():
        path = run / "ids.json"
    elif (run / "best.json").exists():
        best = json.loads((run / "best.json").read_text())
        candidates = sorted(run.glob(f"realisations/*/r{int(best['realisation']):03d}/ids.json"))
        matching = [
            c
            for c in candidates
            if json.loads(c.read_text()).get("strategy") == best.get("strategy")
        ]
        if not matching:
            raise InputError(
                f"best.json names {best.get('strategy')!r} realisation "
                f"{best.get('realisation')}, but its ids.json is missing",
                source=str(run),
            )
        path = matching[0]
        info.update(best={k: best.get(k) for k in ("strategy", "realisation", "seed", "rule")})
    else:
        found = sorted(run.rglob("ids.json"))
        if len(found) != 1:
            raise InputError(
                f"found {len(found)} ids.json files; give one realisation folder (e.g. "
                "realisations/<strategy>/r000) "
                "or an experiment folder with best.json",
                source=str(run),
            )
        path = found[0]
    ids = _ids_from_file(path)
    if not ids:
        raise InputError(
            f"no training ids found (looked for JSON keys {list(RUN_ID_KEYS)} or an id column)",
            source=str(path),
        )
    if path.suffix == ".json":
        meta = json.loads(path.read_text())
        if isinstance(meta, dict):
            info.update({k: meta[k] for k in ("strategy", "realisation", "seed") if k in meta})
    info["ids_file"] = str(path)
    return list(dict.fromkeys(ids)), info


def attach_labels(df: pd.DataFrame, labels_csv: str) -> pd.DataFrame:
    """The feature table with a ``label`` column (type strings) looked up by object id in a
    labels CSV."""
    types = read_labels(labels_csv)
    if "object_id" not in df.columns:
        raise InputError("the feature table has no object_id column to match labels on")
    out = df.copy()
    out["label"] = out["object_id"].astype(str).map(types)
    if out["label"].isna().all():
        raise InputError("no object of the feature table is in the labels file", source=labels_csv)
    return out


def _selection(args: argparse.Namespace, recipe: Recipe) -> dict | None:
    """Keyword arguments of ``earlyia.select.select_early`` recorded in the card (None: its
    defaults)."""
    sel = dict(recipe.selection or {})
    if args.select_min_points is not None:
        if args.select_min_points < 0:
            raise InputError(f"--select-min-points must be >= 0, got {args.select_min_points}")
        sel["min_points_per_band"] = args.select_min_points
    if args.select_no_rising:
        sel["require_rising"] = False
    return sel or None


def run(args: argparse.Namespace) -> int:
    # training loads scikit-learn and the compiled kernels: imported when the command runs, so
    # `--help` stays fast
    from earlyia.model.artifact import Model
    from earlyia.model.recipe import RECIPES
    from earlyia.model.training import train_recipe

    if args.trees is not None and args.trees < 1:
        raise InputError(f"--trees must be >= 1, got {args.trees}")
    check_inputs(args.inputs)
    check_output(args.out, [*args.inputs, *([args.labels] if args.labels else [])])
    if len(args.inputs) == 1 and is_feature_table(args.inputs[0]):
        data, meta = read_features(args.inputs[0])
        if args.labels:
            data = attach_labels(data, args.labels)
    else:
        meta = None
        data = read(args.inputs)
        if args.labels:
            data.objects["label"] = (
                data.objects["object_id"].astype(str).map(read_labels(args.labels))
            )
    sample_ids, run_info = read_run_ids(args.from_run) if args.from_run else (None, {})
    parent = Model.load(args.parent).hash if args.parent else None
    type_map = TypeMap(positive=tuple(args.positive), include_subtypes=args.include_subtypes)
    base = RECIPES.get(args.recipe, RECIPES["early"]) if args.recipe != "auto" else None
    overrides = {
        "min_samples_leaf": args.min_samples_leaf,
        "class_weight": args.class_weight,
        "object_weights": args.object_weights,
        "impostors": args.impostors,
        "gate": args.gate,
        "train_rows": args.train_rows,
        "calibrate": args.calibrate,
        "n_estimators": args.trees,
        "augment_copies": args.augment_copies,
        "classifier": args.classifier,
        "max_depth": args.max_depth,
        "cv_folds": args.cv_folds,
    }
    if args.select_min_points is not None or args.select_no_rising:
        overrides["selection"] = _selection(args, base or RECIPES["early"])
    model = train_recipe(
        data,
        args.recipe,
        meta=meta,
        type_map=type_map,
        overrides=overrides,
        random_state=args.seed,
        n_jobs=args.jobs,
        sample_ids=sample_ids,
        label_column=args.label_column,
        parent=parent,
        lineage={"features": ", ".join(str(i) for i in args.inputs), **run_info},
        progress=lambda line: print(line, flush=True),
    )
    model.save(args.out)
    if args.training_rows:
        write_features(
            model.training_rows,
            args.training_rows,
            model.card["extractor"],
            extra={"training_rows_of": model.hash},
        )
    _report(model, sample_ids)
    rows_note = f" and its training rows {args.training_rows}" if args.training_rows else ""
    print(f"wrote {args.out} (hash {model.hash[:16]}){rows_note}")
    return 0


def _report(model, sample_ids) -> None:
    tr = model.card["training"]
    held = "grouped_cv" if "grouped_cv" in model.card["metrics"] else "oob"
    oob = model.card["metrics"][held]
    print(
        f"trained {model.card['n_trees']} trees on {tr['n_samples']} rows "
        f"({tr['n_positive']} positive, {tr['n_negative']} negative)"
        + (f" of {len(sample_ids)} run ids" if sample_ids is not None else "")
        + (
            f"; {tr['n_gate_rejected']} labelled rows the gate rejects left out"
            if tr.get("rows") == "gate"
            else ""
        )
    )
    fmt = {
        k: (f"{v:.3f}" if isinstance(v, float) and np.isfinite(v) else v) for k, v in oob.items()
    }
    label = "held-out by object" if held == "grouped_cv" else "out-of-bag"
    print(
        f"{label}, per alert: accuracy {fmt['accuracy']}, efficiency {fmt['efficiency']}, "
        f"purity {fmt['purity']}, FoM {fmt['fom']}"
    )
    for op in model.card.get("operating_points") or []:
        t = op.get("threshold")
        if t is not None and np.isfinite(t):
            print(
                f"operating point, purity >= {op['min_purity']:g} within "
                f"{op['max_detections']} detections: threshold {t:.3f}, "
                f"efficiency {op['efficiency']:.3f} (held out)"
            )
        else:
            print(
                f"operating point, purity >= {op['min_purity']:g} within "
                f"{op['max_detections']} detections: "
                "not reached on held-out objects"
            )
    ev = model.card.get("evidence")
    if ev:
        judged = ev.get("judged_from")
        print(
            f"calibrated at prevalence {ev['prevalence']:.3f}; "
            + (
                f"alerts can reach the candidate threshold from {judged} positive detection(s)"
                if judged
                else "no evidence level reaches the candidate threshold"
            )
        )
