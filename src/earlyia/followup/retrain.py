"""Retrain with the new spectroscopic labels; promote only on evidence that the candidate is not
worse.

The candidate learns from **production's own training rows** (stored content-addressed beside the
database when production was registered or trained here: the exact rows, augmented copies and
generated impostors included) plus the rows of the objects labelled since, taken from the feature
table the user passes, with production's recipe (:meth:`Recipe.of_model
<earlyia.model.recipe.Recipe.of_model>` of its card). A production model registered without its rows
cannot be retrained: that is an error saying how to register it.

Both models are then compared on the same *fixed* validation rows (objects neither trained on,
drawn once, stratified and seeded, and stored with their rows), as they would be deployed: per
object, flagged when any of its alerts (within 20 detections) scores above the model's own card
threshold (0.5 for a card without one), the gate applied. The :class:`PromotionRule` decides:

* the validation set must hold at least ``min_objects`` objects and ``min_positive`` positives;
* a paired bootstrap over validation objects (the same resampled objects for both models) must show
  the candidate's ``metric`` not below production's by more than ``margin`` with ``confidence``: the
  ``1 - confidence`` quantile of ``metric(candidate) - metric(production)`` is at least ``-margin``.

A tie on a handful of objects therefore never promotes. The decision and its evidence (counts,
observed difference, bound, resamples, seed) are stored in the candidate's metrics and printed.
Training happens outside any transaction (it can take minutes and must not lock the database); the
results are written in one transaction that first checks that production did not change meanwhile.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from earlyia.errors import ConfigError, FeatureMismatchError, InputError, ModelError
from earlyia.features.gates import apply_gate
from earlyia.followup.db import FollowupDB, utcnow
from earlyia.followup.ingest import current_labels
from earlyia.followup.model_registry import (
    _promote,
    insert_model,
    load_production,
    load_rows,
    model_rows,
    production_version,
    store_rows,
)
from earlyia.followup.promotion import PromotionRule
from earlyia.labels import NEGATIVE, POSITIVE, TypeMap
from earlyia.metrics import counts_to_metrics, roc_auc
from earlyia.model.recipe import Recipe
from earlyia.model.training import train_model

#: Validation alerts count within this many detections (the replay protocol's N), when they carry
#: ``ndethist``.
MAX_DETECTIONS = 20


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
    evidence: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)
    training: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    def summary(self) -> str:
        def f(d):
            if not d:
                return "n/a"
            return ", ".join(
                f"{k} {_fmt(d.get(k))}"
                for k in ("efficiency", "purity", "fom", "roc_auc", "threshold")
            )

        lines = [
            f"candidate {self.version[:12]} (parent {str(self.parent)[:12]}): {self.n_train} "
            "training objects "
            f"({self.n_new_labels} new labels), validated on {self.n_validation} objects",
            f"  candidate : {f(self.candidate_metrics)}",
            f"  production: {f(self.production_metrics)}",
        ]
        if self.missing:
            lines.append(
                f"  {len(self.missing)} labelled object(s) not in the feature table, left "
                f"out: {', '.join(self.missing[:5])}" + (" ..." if len(self.missing) > 5 else "")
            )
        lines.append(f"  -> {'PROMOTED' if self.promoted else 'kept as candidate'}: {self.reason}")
        return "\n".join(lines)


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"


# ---------------------------------------------------------------------------- labels and rows
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
            df = pd.DataFrame(
                {"object_id": features["object_id"].astype(str).to_numpy(), "label": y}
            )
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


#: Row flags of feature tables (a row a flag marks False has no usable features).
ROW_FLAGS = ("ok", "valid", "passed")


def _usable(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows no flag marks unusable, without the flags: tables with and without them then
    combine safely (a flag missing on one side would read as "unusable" for all its rows)."""
    keep = np.ones(len(rows), bool)
    for col in ROW_FLAGS:
        if col in rows.columns:
            keep &= rows[col].fillna(False).to_numpy(bool)
    return rows[keep].drop(columns=[c for c in (*ROW_FLAGS, "reason") if c in rows.columns])


def _rows_of(feats: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The usable feature rows of the labelled objects, with their (database) label as ``label``
    1/0 and ``view`` 0."""
    rows = _usable(feats[feats["object_id"].isin(set(labels["object_id"]))]).drop(
        columns=[c for c in ("label", "tns_type", "type", "view") if c in feats.columns]
    )
    return rows.merge(labels[["object_id", "label"]], on="object_id", how="inner").assign(view=0)


# ---------------------------------------------------------------------------- deployed comparison
def object_scores(model, rows: pd.DataFrame, max_detections: int = MAX_DETECTIONS) -> pd.Series:
    """Per object, the highest score of its rows within ``max_detections`` (when rows carry
    ``ndethist``), scored as ``earlyia score`` would: rows the card's gate rejects score 0."""
    X = rows[model.features].to_numpy(np.float64)
    p = model.predict_proba(X)[:, 1]
    p = np.where(apply_gate(model.card.get("gate"), X, model.features), p, 0.0)
    det = (
        pd.to_numeric(rows["ndethist"], errors="coerce").to_numpy(float)
        if "ndethist" in rows.columns
        else None
    )
    if det is not None:
        p = np.where(
            ~(det > max_detections), p, -np.inf
        )  # later alerts do not count; unknown N counts
    best = pd.Series(p, index=rows["object_id"].astype(str).to_numpy()).groupby(level=0).max()
    return best.where(np.isfinite(best), 0.0)


def deployed_threshold(model, max_detections: int = MAX_DETECTIONS) -> float:
    """The model's own candidate threshold (its card, purity >= 0.8 within ``max_detections``),
    else 0.5."""
    try:
        t = model.threshold(max_detections, 0.8)["threshold"]
    except ModelError:
        return 0.5
    return float(t) if t is not None and np.isfinite(t) else 0.5


def object_metrics(best: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    """Efficiency, purity, FoM of flagging objects whose best score is above ``threshold``; ROC
    AUC of the scores."""
    y = np.asarray(y, bool)
    flag = np.asarray(best) > threshold
    tp, fp = int((flag & y).sum()), int((flag & ~y).sum())
    fn, tn = int((~flag & y).sum()), int((~flag & ~y).sum())
    m = counts_to_metrics(np.array([tp]), np.array([fp]), np.array([tn]), np.array([fn]))
    out = {k: float(m[k][0]) for k in ("efficiency", "purity", "fom")}
    out["roc_auc"] = (
        float(roc_auc(y, np.asarray(best, float))) if 0 < y.sum() < len(y) else float("nan")
    )
    out.update(tp=tp, fp=fp, n_objects=len(y), n_positive=int(y.sum()), threshold=float(threshold))
    return out


def paired_bootstrap(
    best_c: np.ndarray,
    best_p: np.ndarray,
    y: np.ndarray,
    thr_c: float,
    thr_p: float,
    metric: str,
    n: int,
    random_state,
) -> np.ndarray:
    """``metric(candidate) - metric(production)`` on ``n`` resamples of the objects (the same for
    both models)."""
    rng = np.random.default_rng(random_state)
    y = np.asarray(y, bool)
    k = len(y)
    idx = rng.integers(0, k, (n, k))
    yy = y[idx]
    if metric == "roc_auc":
        out = np.full(n, np.nan)
        for i in range(n):
            if 0 < yy[i].sum() < k:
                out[i] = roc_auc(yy[i], best_c[idx[i]]) - roc_auc(yy[i], best_p[idx[i]])
        return out[np.isfinite(out)]

    def resampled(best, thr):
        flag = (np.asarray(best) > thr)[idx]
        tp, fp = (flag & yy).sum(axis=1), (flag & ~yy).sum(axis=1)
        fn, tn = (~flag & yy).sum(axis=1), (~flag & ~yy).sum(axis=1)
        return counts_to_metrics(tp, fp, tn, fn)[metric]

    return resampled(best_c, thr_c) - resampled(best_p, thr_p)


def decide(
    rule: PromotionRule,
    cand: pd.Series,
    prod: pd.Series | None,
    y: pd.Series,
    thr_c: float,
    thr_p: float,
) -> tuple[bool, str, dict]:
    """Whether the candidate may replace production, why, and the evidence (see
    :class:`PromotionRule`)."""
    objs = y.index
    yv = y.to_numpy(bool)
    evidence: dict = {"rule": asdict(rule), "n_objects": len(objs), "n_positive": int(yv.sum())}
    if prod is None:
        return True, "no model in production yet", evidence
    if len(objs) < rule.min_objects or yv.sum() < rule.min_positive:
        return (
            False,
            (
                f"validation holds {len(objs)} object(s), {int(yv.sum())} positive: too few "
                "to decide (the rule needs "
                f">= {rule.min_objects} and >= {rule.min_positive}); label more objects or "
                "lower the minimum"
            ),
            evidence,
        )
    bc, bp = cand.reindex(objs).to_numpy(float), prod.reindex(objs).to_numpy(float)
    mc, mp = object_metrics(bc, yv, thr_c)[rule.metric], object_metrics(bp, yv, thr_p)[rule.metric]
    deltas = paired_bootstrap(
        bc, bp, yv, thr_c, thr_p, rule.metric, rule.n_bootstrap, rule.random_state
    )
    if len(deltas) < rule.n_bootstrap // 2:
        return (
            False,
            f"{rule.metric} undefined on most resamples of the validation objects: not comparable",
            evidence,
        )
    lower = float(np.quantile(deltas, 1 - rule.confidence))
    evidence.update(
        candidate=mc,
        production=mp,
        difference=mc - mp,
        lower_bound=lower,
        n_resamples=len(deltas),
        mean_difference=float(deltas.mean()),
    )
    ok = lower >= -rule.margin
    reason = (
        f"{rule.metric} {_fmt(mc)} vs production {_fmt(mp)} (difference {mc - mp:+.3f}); "
        f"{rule.confidence:.0%} lower bound {lower:+.3f} {'>=' if ok else '<'} "
        f"-{rule.margin:g} over {len(deltas)} "
        f"paired resamples of {len(objs)} validation objects: "
        + ("not worse" if ok else "not shown to be no worse")
    )
    return ok, reason, evidence


# ---------------------------------------------------------------------------- retrain
def retrain(
    db: FollowupDB,
    features: pd.DataFrame,
    extractor_config: dict,
    *,
    validation: pd.DataFrame | None = None,
    rule: PromotionRule | None = None,
    type_map: TypeMap | None = None,
    validation_fraction: float = 0.3,
    use_feature_labels: bool = False,
    auto_promote: bool = True,
    n_estimators: int | None = None,
    random_state: int = 42,
    n_jobs: int = 1,
    **overrides,
) -> RetrainReport:
    """Train a candidate from production's stored rows + the rows of newly labelled objects; promote
    it on evidence.

    Args:
        features: a feature table (one row per alert or per object) with ``object_id`` and
        production's features,
            holding the newly labelled objects (and, the first time, the validation objects).
        validation: a labelled feature table to validate on instead of the database's fixed
        validation rows. rule: the :class:`PromotionRule` (default: its defaults).
        use_feature_labels: also take labels from the feature table's own label column (bootstrap).
        n_estimators: the candidate's number of trees (default: production's). n_jobs: processes for
        the forests. overrides: recipe settings that override production's recipe
        (:meth:`~earlyia.model.recipe.Recipe.replace`).
    """
    rule = rule or PromotionRule()
    rule.check()
    if "object_id" not in features.columns:
        raise InputError("the feature table needs an object_id column")
    type_map = type_map or TypeMap()
    feats = _usable(
        features
    ).copy()  # an object whose rows all lack features is missing from the table, and said so
    feats["object_id"] = feats["object_id"].astype(str)

    # --- production and its training rows
    # -----------------------------------------------------------
    prod_version = production_version(db.con)
    prod = load_production(db)
    prod_rows = None
    if prod is not None:
        prod_rows = model_rows(db, prod_version)
        if prod_rows is None:
            raise ConfigError(
                f"production model {prod_version[:12]} was registered without the rows it "
                "learned from, so it cannot be "
                "retrained: register it again with `earlyia followup register MODEL "
                "--production --training-rows ROWS` "
                "(ROWS written by `earlyia train ... --training-rows ROWS`)"
            )
        prod.check_extractor(extractor_config)
        missing_feats = [n for n in prod.features if n not in feats.columns]
        if missing_feats:
            raise FeatureMismatchError(
                f"the feature table lacks production's feature(s) {missing_feats[:5]}"
            )
    parent_objects = (
        set(
            prod_rows.loc[
                pd.to_numeric(prod_rows.get("view", 0), errors="coerce").fillna(0) == 0, "object_id"
            ].astype(str)
        )
        if prod_rows is not None
        else set()
    )
    db_labels = current_labels(db)
    stored_val = pd.DataFrame(
        [dict(r) for r in db.query("SELECT object_id, label FROM validation_set")],
        columns=["object_id", "label"],
    )
    stored_val_rows = db.query("SELECT sha256 FROM validation_rows WHERE id = 1")

    # --- validation rows
    # -----------------------------------------------------------------------------
    new_validation = None
    new_val_rows = None
    if validation is not None:
        if "object_id" not in validation.columns:
            raise InputError("the validation table needs an object_id column")
        val = validation.copy()
        val["object_id"] = val["object_id"].astype(str)
        vlab = _object_labels(val, type_map)
        if vlab.empty:
            raise InputError(
                "the validation table has no usable label column (label 1/0 or TNS type strings)"
            )
        val = _rows_of(val, vlab)
    elif stored_val_rows:
        val = load_rows(db, stored_val_rows[0]["sha256"])
    else:
        if stored_val.empty:
            pool = db_labels[["object_id", "label"]]
            if use_feature_labels:
                pool = pd.concat([pool, _object_labels(feats, type_map)]).drop_duplicates(
                    "object_id", keep="first"
                )
            pool = pool[
                ~pool["object_id"].isin(parent_objects)
                & pool["object_id"].isin(set(feats["object_id"]))
            ]
            new_validation = split_validation(
                pool.sort_values("object_id"), validation_fraction, random_state
            )
            stored_val = new_validation
        val = _rows_of(feats, stored_val)
        new_val_rows = val
    val = val[
        ~val["object_id"].astype(str).isin(parent_objects)
    ]  # never judge production on what it learned
    val_ids = set(val["object_id"].astype(str)) | set(stored_val["object_id"])

    # --- training rows: production's + the new labels'
    # ------------------------------------------------------
    new = db_labels[~db_labels["object_id"].isin(parent_objects | val_ids)][
        ["object_id", "label", "label_id"]
    ]
    if use_feature_labels:
        fl = _object_labels(feats, type_map)
        fl = fl[~fl["object_id"].isin(parent_objects | val_ids | set(new["object_id"]))]
        new = pd.concat([new, fl.assign(label_id=None)], ignore_index=True)
    missing = sorted(set(new["object_id"]) - set(feats["object_id"]))
    new = new[new["object_id"].isin(set(feats["object_id"]))]
    new_rows = _rows_of(feats, new)
    parts = [_usable(r) for r in (prod_rows, new_rows) if r is not None and len(r)]
    if not parts:
        raise InputError(
            "no training rows: no model in production and none of the labelled objects has "
            "features in the table"
        )
    train_rows = pd.concat(parts, ignore_index=True)

    recipe = (Recipe.of_model(prod.card) if prod is not None else Recipe()).replace(**overrides)
    if n_estimators is not None:
        recipe = recipe.replace(n_estimators=int(n_estimators))
    lineage: dict = {"recipe": f"inherited from {prod_version}"} if prod is not None else {}
    if prod is not None:
        lineage.update(inherited_rows=len(prod_rows), new_objects=int(new["object_id"].nunique()))
        if (prod.card.get("lineage") or {}).get("impostors"):
            lineage["impostors"] = dict(prod.card["lineage"]["impostors"])
    model = train_model(
        train_rows,
        extractor_config,
        recipe,
        type_map=type_map,
        label_column="label",
        parent=prod_version,
        random_state=random_state,
        lineage=lineage,
        n_jobs=n_jobs,
    )
    origin = pd.concat(
        [
            pd.DataFrame({"object_id": sorted(parent_objects), "origin": "parent"}),
            new.drop_duplicates("object_id").assign(
                origin=lambda d: np.where(d["label_id"].isna(), "features", "label")
            )[["object_id", "origin"]],
        ],
        ignore_index=True,
    ).drop_duplicates("object_id", keep="first")
    training = pd.DataFrame(
        {
            "object_id": model.card["training"]["object_ids"],
            "label": model.card["training"]["labels"],
        }
    )
    training = training.drop_duplicates("object_id", keep="last").merge(
        origin, on="object_id", how="left"
    )
    training["origin"] = training["origin"].fillna("parent")
    ids = (
        db_labels.set_index("object_id")["label_id"]
        if "label_id" in db_labels.columns
        else pd.Series(dtype=object)
    )
    training["label_id"] = [
        ids.get(o) if g == "label" else None
        for o, g in zip(training["object_id"], training["origin"], strict=True)
    ]
    n_new = int((training["origin"] == "label").sum())

    # --- compare as deployed, decide
    # ---------------------------------------------------------------------------
    if val.empty:
        raise InputError(
            "the validation set is empty: label more objects, pass --validation, or raise "
            "--validation-fraction"
        )
    y_val = val.groupby(val["object_id"].astype(str))["label"].first().astype(int) == POSITIVE
    cand_best = object_scores(model, val)
    thr_c = deployed_threshold(model)
    cand_m = object_metrics(cand_best.reindex(y_val.index).to_numpy(), y_val.to_numpy(), thr_c)
    prod_m, prod_best, thr_p, note = None, None, 0.5, ""
    if prod is not None:
        try:
            prod.check_features(model.features)
            prod_best = object_scores(prod, val)
            thr_p = deployed_threshold(prod)
            prod_m = object_metrics(
                prod_best.reindex(y_val.index).to_numpy(), y_val.to_numpy(), thr_p
            )
        except FeatureMismatchError as exc:
            note = (
                f"production uses other features ({exc}); not comparable: promote by hand with "
                "`earlyia models promote`"
            )
    if prod is not None and prod_m is None:
        ok, reason, evidence = False, note, {"rule": asdict(rule)}
    else:
        ok, reason, evidence = decide(rule, cand_best, prod_best, y_val, thr_c, thr_p)
    promoted = bool(ok and auto_promote)
    if ok and not auto_promote:
        reason += " (auto-promotion disabled)"
    metrics = {
        "validation": cand_m,
        "production_validation": prod_m,
        "n_validation_objects": len(y_val),
        "decision": {
            "metric": rule.metric,
            "margin": rule.margin,
            "promoted": promoted,
            "reason": reason,
            "evidence": evidence,
        },
        "missing_features": missing[:50],
        "grouped_cv": model.card.get("metrics", {}).get("grouped_cv"),
    }

    # --- write everything in one transaction
    # ---------------------------------------------------------------------
    rows_sha = (
        store_rows(db, model.training_rows, what=f"training rows of {model.hash}"),
        len(model.training_rows),
        int(model.training_rows["object_id"].nunique()),
    )
    val_sha = None
    if new_val_rows is not None and not stored_val_rows:
        val_sha = (
            store_rows(db, new_val_rows, what="validation rows"),
            len(new_val_rows),
            int(new_val_rows["object_id"].nunique()),
        )
    with db.transaction() as con:
        if production_version(con) != prod_version:
            raise ConfigError(
                "production changed while retraining (another process promoted a model); "
                "re-run retrain"
            )
        if new_validation is not None:
            if con.execute("SELECT COUNT(*) FROM validation_set").fetchone()[0]:
                raise ConfigError(
                    "the validation set was created by another process meanwhile; re-run retrain"
                )
            now = utcnow()
            con.executemany(
                "INSERT INTO validation_set (object_id, label, added_at) VALUES (?, ?, ?)",
                [
                    (str(r.object_id), int(r.label), now)
                    for r in new_validation.itertuples(index=False)
                ],
            )
        if val_sha is not None:
            if con.execute("SELECT COUNT(*) FROM validation_rows").fetchone()[0]:
                raise ConfigError(
                    "the validation rows were stored by another process meanwhile; re-run retrain"
                )
            con.execute(
                "INSERT INTO validation_rows (id, sha256, n_rows, n_objects, added_at) "
                "VALUES (1, ?, ?, ?, ?)",
                (*val_sha, utcnow()),
            )
        version = insert_model(
            con,
            db,
            model,
            status="candidate",
            parent=prod_version,
            metrics=metrics,
            training=training[["object_id", "label", "origin", "label_id"]],
            note="retrained with follow-up labels",
            rows_sha=rows_sha,
        )
        if promoted:
            _promote(con, version, reason)
    return RetrainReport(
        version=version,
        parent=prod_version,
        promoted=promoted,
        reason=reason,
        candidate_metrics=cand_m,
        production_metrics=prod_m,
        n_train=int(training["object_id"].nunique()),
        n_new_labels=n_new,
        n_validation=len(y_val),
        metric=rule.metric,
        evidence=evidence,
        missing=missing,
        training=training,
    )
