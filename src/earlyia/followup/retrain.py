"""Retrain with the new spectroscopic labels, compare with production honestly, promote if not worse.

The candidate is trained on production's training set plus every usable label the database
holds (minus the validation objects), with production's recipe: its forest settings, selection,
gate and generated impostors (``training_settings`` of its card). Both models are then scored on the same *fixed*
validation set: objects that neither model trained on, chosen once (object-level, stratified,
seeded) and stored in the database, so successive retrains are compared on the same ground.
The candidate replaces production only when ``metric(candidate) >= metric(production) - margin``;
otherwise it stays registered as a candidate (``earlyia models promote`` can still force it).

Training happens outside any transaction (it can take minutes and must not lock the database);
the results are then written in one transaction, which first checks that production did not
change meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from earlyia.errors import ConfigError, FeatureMismatchError, InputError
from earlyia.followup.db import FollowupDB, utcnow
from earlyia.followup.labels import current_labels
from earlyia.followup.registry import insert_model, load_production, production_version
from earlyia.labels import NEGATIVE, POSITIVE, TypeMap

METRICS = ("fom", "efficiency", "purity", "roc_auc", "accuracy", "f1")


@dataclass
class RetrainReport:
    version: str
    parent: str | None
    promoted: bool
    reason: str
    candidate_metrics: dict
    production_metrics: dict | None
    n_train: int
    n_new_labels: int
    n_validation: int
    metric: str = "fom"
    training: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    def summary(self) -> str:
        def f(d):
            if not d:
                return "n/a"
            return ", ".join(f"{k} {d.get(k, float('nan')):.3f}" for k in ("efficiency", "purity", "fom", "roc_auc"))

        return (
            f"candidate {self.version[:12]} (parent {str(self.parent)[:12]}): {self.n_train} training objects "
            f"({self.n_new_labels} new labels), validated on {self.n_validation} objects\n"
            f"  candidate : {f(self.candidate_metrics)}\n  production: {f(self.production_metrics)}\n"
            f"  -> {'PROMOTED' if self.promoted else 'kept as candidate'}: {self.reason}"
        )


def _object_labels(features: pd.DataFrame, type_map: TypeMap) -> pd.DataFrame:
    """Labels carried by the feature table itself (label 1/0/-1 or type strings), one per object."""
    for col in ("label", "tns_type", "type"):
        if col in features.columns:
            s = features[col]
            if pd.api.types.is_bool_dtype(s):
                y = np.where(s.to_numpy(bool), POSITIVE, NEGATIVE)
            elif pd.api.types.is_numeric_dtype(s):
                y = pd.to_numeric(s).fillna(-1).to_numpy().astype(int)
            else:
                y = type_map.encode(s.tolist()).astype(int)
            df = pd.DataFrame({"object_id": features["object_id"].astype(str).to_numpy(), "label": y})
            return df[df["label"] >= 0].drop_duplicates("object_id", keep="last")
    return pd.DataFrame(columns=["object_id", "label"])


def split_validation(labels: pd.DataFrame, fraction: float, random_state) -> pd.DataFrame:
    """Stratified object-level sample of ``labels`` (object_id, label)."""
    rng = np.random.default_rng(random_state)
    parts = []
    for _, g in labels.groupby("label", sort=True):
        k = round(fraction * len(g))
        if k:
            parts.append(g.iloc[np.sort(rng.choice(len(g), size=k, replace=False))])
    return pd.concat(parts) if parts else labels.iloc[:0]


def evaluate(model, rows: pd.DataFrame, y: np.ndarray, threshold: float = 0.5) -> dict:
    """Alert-level metrics of ``model`` on validation rows (earlyia.learn.metrics definitions), scored as
    ``earlyia score`` would: rows the card's gate rejects score 0."""
    from earlyia.features.gates import apply_gate
    from earlyia.learn.metrics import binary_metrics

    p = model.predict_proba(rows)[:, 1]
    p = np.where(apply_gate(model.card.get("gate"), rows[model.features].to_numpy(np.float64), model.features), p, 0.0)
    out = binary_metrics(y.astype(bool), p, threshold=threshold)
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in out.items()}


def retrain(db: FollowupDB, features: pd.DataFrame, extractor_config: dict, *, validation: pd.DataFrame | None = None,
            margin: float = 0.0, metric: str = "fom", type_map: TypeMap | None = None, validation_fraction: float = 0.3,
            use_feature_labels: bool = False, auto_promote: bool = True, n_estimators: int = 300, random_state: int = 42,
            threshold: float = 0.5, **train_kwargs) -> RetrainReport:
    """Train a candidate from production's training set + the database's labels; promote it if not worse.

    Args:
        features: a feature table (one row per alert or per object) with ``object_id`` and the extractor's columns.
        validation: a labelled feature table to validate on; default: the database's fixed validation set,
            drawn the first time (``validation_fraction`` of the labelled objects no model trained on).
        margin: tolerated loss in ``metric`` against production (0: must be at least as good).
        use_feature_labels: also take labels from the feature table's own label column (bootstrap).
        train_kwargs: :func:`~earlyia.score.model.train_model` settings that override production's recipe.
    """
    from earlyia.score.model import train_model, training_settings

    if metric not in METRICS:
        raise ConfigError(f"--metric must be one of {METRICS}, got {metric!r}")
    if "object_id" not in features.columns:
        raise InputError("the feature table needs an object_id column")
    type_map = type_map or TypeMap()
    feats = features.copy()
    feats["object_id"] = feats["object_id"].astype(str)

    # --- read the state (consistent snapshot) ---------------------------------------------
    prod_version = production_version(db.con)
    prod = load_production(db)
    cols = ["object_id", "label", "origin", "label_id"]
    sql = "SELECT object_id, label, origin, label_id FROM training_set WHERE model_version = ?"
    rows = db.query(sql, (prod_version,)) if prod_version else []
    parent_set = pd.DataFrame([dict(r) for r in rows], columns=cols)
    parent_set = parent_set[parent_set["label"].isin([POSITIVE, NEGATIVE])]
    db_labels = current_labels(db)
    stored_val = pd.DataFrame([dict(r) for r in db.query("SELECT object_id, label FROM validation_set")], columns=["object_id", "label"])

    # --- validation set ------------------------------------------------------------------------
    new_validation = None
    if validation is not None:
        if "object_id" not in validation.columns:
            raise InputError("the validation table needs an object_id column")
        val = validation.copy()
        val["object_id"] = val["object_id"].astype(str)
        vlab = _object_labels(val, type_map)
        if vlab.empty:
            raise InputError("the validation table has no usable label column (label 1/0 or TNS type strings)")
        val = val.merge(vlab, on="object_id", how="inner", suffixes=("_orig", ""))
        val_ids = set(vlab["object_id"])
    else:
        if stored_val.empty:
            pool = db_labels[["object_id", "label"]]
            if use_feature_labels:
                pool = pd.concat([pool, _object_labels(feats, type_map)]).drop_duplicates("object_id", keep="first")
            pool = pool[~pool["object_id"].isin(set(parent_set["object_id"]))]
            pool = pool[pool["object_id"].isin(set(feats["object_id"]))]
            new_validation = split_validation(pool.sort_values("object_id"), validation_fraction, random_state)
            stored_val = new_validation
        val_ids = set(stored_val["object_id"])
        val = feats[feats["object_id"].isin(val_ids)].drop(columns=[c for c in ("label",) if c in feats.columns])
        val = val.merge(stored_val, on="object_id", how="inner")
    leak = val_ids & set(parent_set["object_id"])
    if leak:
        # production trained on some validation objects: compare only on the others
        val = val[~val["object_id"].isin(leak)]

    # --- training set: parent's + new labels, minus validation ----------------------------------
    train_labels = parent_set[["object_id", "label", "origin", "label_id"]].copy()
    new = db_labels[~db_labels["object_id"].isin(set(train_labels["object_id"]))]
    new = new.assign(origin="label")[["object_id", "label", "origin", "label_id"]]
    parts = [train_labels, new]
    if use_feature_labels:
        fl = _object_labels(feats, type_map)
        fl = fl[~fl["object_id"].isin(set(train_labels["object_id"]) | set(new["object_id"]))]
        parts.append(fl.assign(origin="features", label_id=None))
    training = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else train_labels
    training = training[~training["object_id"].isin(val_ids)]
    training = training[training["object_id"].isin(set(feats["object_id"]))]
    missing = sorted(set(new["object_id"]) - set(feats["object_id"]))
    train_rows = feats[feats["object_id"].isin(set(training["object_id"]))].drop(
        columns=[c for c in ("label", "tns_type", "type") if c in feats.columns])
    train_rows = train_rows.merge(training[["object_id", "label"]], on="object_id", how="inner")
    if train_rows.empty:
        raise InputError("no training rows: none of the labelled objects has features in the feature table")

    # the parent's recipe (forest settings, selection, gate, generated impostors); explicit keywords win
    settings = {**(training_settings(prod.card) if prod is not None else {}), **train_kwargs}
    lineage = {"recipe": f"inherited from {prod_version}"} if prod is not None else {}
    impostors = (prod.card.get("lineage") or {}).get("impostors") if prod is not None else None
    if impostors:
        from earlyia.sim.impostors import impostor_features

        extra = impostor_features(extractor_config, int(impostors["n_per_kind"]), random_state=impostors.get("seed"))
        train_rows = pd.concat([train_rows, extra.assign(label=NEGATIVE)], ignore_index=True)
        lineage["impostors"] = dict(impostors)
    model = train_model(train_rows, extractor_config, type_map=type_map, label_column="label", parent=prod_version,
                        n_estimators=n_estimators, random_state=random_state, lineage=lineage, **settings)
    training = training[training["object_id"].isin(set(model.prohibited_object_ids()))]
    n_new = int((training["origin"] == "label").sum())

    # --- evaluate on the same validation rows -------------------------------------------------------
    if val.empty:
        raise InputError("the validation set is empty: label more objects, pass --validation, or lower --validation-fraction")
    y_val = val["label"].to_numpy(int)
    cand_m = evaluate(model, val, y_val, threshold)
    prod_m = None
    reason = ""
    if prod is not None:
        try:
            prod.check_features(model.features)
            prod_m = evaluate(prod, val, y_val, threshold)
        except FeatureMismatchError as exc:
            reason = f"production uses other features ({exc}); not comparable: "
    if prod is None:
        promoted, reason = auto_promote, "no model in production yet"
    elif prod_m is None:
        promoted, reason = False, reason + "promote by hand with `earlyia models promote`"
    else:
        c, p = cand_m.get(metric), prod_m.get(metric)
        c = -np.inf if c is None else c
        p = -np.inf if p is None else p
        ok = c >= p - margin
        promoted = bool(ok and auto_promote)
        reason = f"{metric} {c:.4f} vs production {p:.4f} (margin {margin}): " + ("not worse" if ok else "worse")
        if ok and not auto_promote:
            reason += " (auto-promotion disabled)"
    metrics = {"validation": cand_m, "production_validation": prod_m, "n_validation_objects": int(val["object_id"].nunique()),
               "decision": {"metric": metric, "margin": margin, "promoted": promoted, "reason": reason},
               "missing_features": missing[:50], "oob": model.card.get("metrics", {}).get("oob")}

    # --- write everything in one transaction -------------------------------------------------------------
    with db.transaction() as con:
        if production_version(con) != prod_version:
            raise ConfigError("production changed while retraining (another process promoted a model); re-run retrain")
        if new_validation is not None:
            if con.execute("SELECT COUNT(*) FROM validation_set").fetchone()[0]:
                raise ConfigError("the validation set was created by another process meanwhile; re-run retrain")
            now = utcnow()
            con.executemany("INSERT INTO validation_set (object_id, label, added_at) VALUES (?, ?, ?)",
                            [(str(r.object_id), int(r.label), now) for r in new_validation.itertuples(index=False)])
        version = insert_model(con, db, model, status="candidate", parent=prod_version, metrics=metrics,
                               training=training, note="retrained with follow-up labels")
        if promoted:
            from earlyia.followup.registry import _promote

            _promote(con, version, reason)
    return RetrainReport(version=version, parent=prod_version, promoted=promoted, reason=reason, candidate_metrics=cand_m,
                         production_metrics=prod_m, n_train=len(training), n_new_labels=n_new,
                         n_validation=int(val["object_id"].nunique()), metric=metric, training=training)
