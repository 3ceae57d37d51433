"""Training: a labelled feature table and a :class:`~earlyia.model.recipe.Recipe` in, a
:class:`Model` out.

:func:`train_model` fits the recipe's forest on a feature table in named steps: the usable labelled
rows (:func:`training_rows`), the forest (:func:`fit_forest`), its held-out predictions
(:func:`held_out`), the calibration with the held-out metrics and operating points
(:func:`calibrate`), and the card (:func:`model_card`). :func:`train_recipe` is what ``earlyia
train`` does: from labelled light curves (the recipe's extractor on every replayed alert, plus
augmented copies, :func:`training_table`) or a feature table, with the recipe's generated impostors,
then :func:`train_model`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from earlyia.augment import Augmentation
from earlyia.errors import FeatureMismatchError, InputError
from earlyia.features import get_extractor
from earlyia.features.gates import apply_gate, gate_spec
from earlyia.io.table import LightCurves
from earlyia.labels import NEGATIVE, POSITIVE, UNLABELLED, TypeMap
from earlyia.model.artifact import Model, extractor_name, feature_names_of, versions
from earlyia.model.calibration import apply_calibration, fit_calibration
from earlyia.model.heldout import grouped_out_of_fold, held_out_evidence
from earlyia.model.operating import card_metrics, operating_points
from earlyia.model.recipe import RECIPES, Recipe, recipe_for
from earlyia.model.survey import card_survey
from earlyia.model.trees import TreeEnsemble
from earlyia.sim.impostors import impostor_features

#: Identity and protocol columns kept with the features in a model's training rows
#: (``Model.training_rows``).
TRAINING_ROW_KEYS = ("object_id", "alert_id", "view", "ndethist", "n_detections", "label")
#: Label columns looked for, in this order, when the caller names none.
LABEL_COLUMNS = ("label", "tns_type", "type")
#: Columns giving the number of detections of an alert (the replay protocol's N), in order of
#: preference.
DETECTION_COLUMNS = ("ndethist", "n_detections")


def train_model(
    features_df: pd.DataFrame,
    extractor_config: Mapping,
    recipe: Recipe | None = None,
    *,
    type_map: TypeMap | None = None,
    random_state: int | np.random.Generator | None = 42,
    sample_ids: Iterable[str] | None = None,
    label_column: str | None = None,
    parent: str | None = None,
    lineage: Mapping | None = None,
    metrics: Mapping | None = None,
    survey: str | None = None,
    bands: Sequence[str] | None = None,
    n_jobs: int = 1,
) -> Model:
    """Fit the forest of ``recipe`` (default: :class:`Recipe`'s defaults) on a labelled feature
    table and return it as a :class:`Model` with its card.

    Rows need the model's features (order from ``extractor_config``), a label column (``label`` as
    1/0/-1 or bool, or type strings in ``label``/``tns_type``/``type`` mapped by ``type_map``) and
    ideally ``object_id``/``alert_id``. Unlabelled rows and rows whose features failed (an
    ``ok``/``passed`` column that is False, or non-finite values) are left out. ``sample_ids``
    restricts training to rows whose ``alert_id`` or ``object_id`` is listed (e.g. an
    active-learning run's queried ids). Held-out predictions give honest training metrics and, with
    ``recipe.calibrate``, the calibration map: out-of-bag predictions when each object has one row,
    else ``recipe.cv_folds`` folds split by object (``GroupKFold``; out-of-bag would be optimistic
    there because other alerts of the same object sit in the bag). The final forest uses every row.

    From the recipe: ``object_weights`` weighs each row by 1 / (rows of its object), so that an
    object replayed at many detections counts as much as one seen once; ``class_weight="balanced"``
    reweighs the classes. ``gate`` (``"none"`` or ``"rise"``, :mod:`earlyia.features.gates`):
    scoring gives 0 to rows the gate rejects (flat, noisy-constant, fading light curves).
    ``train_rows``: ``"all"`` learns from every usable row; ``"gate"`` only from the rows the gate
    accepts, i.e. the ones the model will ever score (on ELAsTiCC: the same efficiency-purity curve,
    with each fixed threshold further along it). ``selection``: keyword arguments of
    ``earlyia.select.select_early`` that scoring with this model applies (default: its defaults).
    ``calibrate="evidence"`` (:func:`earlyia.model.heldout.held_out_evidence`): probabilities
    calibrated per evidence stratum (``evidence_feature``, positive detections) on held-out original
    alerts, operating curves that move to any prevalence, and the evidence from which the model can
    flag. A ``view`` column marks rows that only train (augmented copies, generated impostors: any
    value but 0); the recipe's ``augmentation`` (what made them) goes into the card. The recipe's
    ``extractor`` and ``impostors`` are :func:`train_recipe`'s business.

    ``survey`` and ``bands``: the survey of the training data and the bands the features read
    (default: inferred from the extractor, :func:`earlyia.model.survey.card_survey`); scoring
    another survey's alerts is refused.
    """
    recipe = Recipe() if recipe is None else recipe
    if not isinstance(recipe, Recipe):
        raise InputError(
            f"recipe must be an earlyia.model.recipe.Recipe, got {type(recipe).__name__}"
        )
    type_map = type_map or TypeMap()
    names = feature_names_of(extractor_config)
    gate_entry = gate_spec(recipe.gate, names)
    missing = [n for n in names if n not in features_df.columns]
    if missing:
        raise FeatureMismatchError(
            f"the feature table lacks feature column(s) {missing} of extractor "
            f"{extractor_name(extractor_config)}"
        )
    rows = training_rows(
        features_df,
        names,
        recipe,
        gate_entry,
        type_map,
        sample_ids=sample_ids,
        label_column=label_column,
    )
    seed = (
        int(random_state.integers(2**31 - 1))
        if isinstance(random_state, np.random.Generator)
        else random_state
    )
    forest = fit_forest(rows, recipe, seed, n_jobs)
    held = held_out(rows, recipe, forest)
    fit = calibrate(rows, recipe, forest, held, seed, names, metrics)
    card = model_card(
        rows,
        recipe,
        forest,
        fit,
        names,
        extractor_config,
        type_map,
        gate_entry,
        parent=parent,
        lineage=lineage,
        survey=survey,
        bands=bands,
    )
    model = Model(forest.ensemble, card, fit.calibration)
    keep = [
        c
        for c in (*TRAINING_ROW_KEYS, *names)
        if c in rows.df.columns and c not in ("label", "view")
    ]
    table = rows.df[keep].reset_index(drop=True).copy()
    table["label"] = rows.y.astype(np.int8)
    table["view"] = rows.view
    model.training_rows = (
        table  # what the forest learned from, for the registry (never written into the model file)
    )
    return model


# ---------------------------------------------------------------------------- 1. rows and labels
@dataclass
class TrainingRows:
    """The usable labelled rows a forest learns from (features clipped to float32's range)."""

    df: pd.DataFrame
    X: np.ndarray
    y: np.ndarray  # POSITIVE / NEGATIVE
    view: np.ndarray  # 0: an original alert; anything else: a row that only trains
    label_column: str
    n_gate_rejected: int
    groups: np.ndarray | None  # the object of each row
    weights: np.ndarray | None  # 1 / (rows of its object) with object weights

    @property
    def positive(self) -> np.ndarray:
        return self.y == POSITIVE

    @property
    def repeated(self) -> bool:
        """Some object has several rows (out-of-bag predictions are then optimistic)."""
        return self.groups is not None and len(set(self.groups)) < len(self.groups)

    def detections(self) -> np.ndarray | None:
        """The number of detections of each row's alert, or None when the table has no such
        column."""
        col = next((c for c in DETECTION_COLUMNS if c in self.df.columns), None)
        return None if col is None else pd.to_numeric(self.df[col], errors="coerce").to_numpy(float)


def training_rows(
    features_df: pd.DataFrame,
    names: Sequence[str],
    recipe: Recipe,
    gate_entry: dict | None,
    type_map: TypeMap,
    *,
    sample_ids: Iterable[str] | None = None,
    label_column: str | None = None,
) -> TrainingRows:
    """The rows of ``features_df`` the forest learns from: the sampled ones, labelled, with
    finite features that did not fail, and with ``train_rows="gate"`` only those the gate
    accepts; both classes needed."""
    df = features_df
    if sample_ids is not None:
        wanted = {str(i) for i in sample_ids}
        keep = np.zeros(len(df), bool)
        for col in ("alert_id", "object_id"):
            if col in df.columns:
                keep |= df[col].astype(str).isin(wanted).to_numpy()
        if not keep.any():
            raise InputError(
                f"none of the {len(wanted)} requested sample ids is an alert_id or object_id "
                "of the feature table"
            )
        df = df[keep]
    y, label_col = _labels(df, type_map, label_column)
    X = df[list(names)].to_numpy(np.float64)
    usable = (y != UNLABELLED) & np.isfinite(X).all(axis=1)
    for col in ("ok", "valid", "passed"):
        if col in df.columns:
            usable &= df[col].fillna(False).to_numpy(bool)
    n_rejected = 0
    if recipe.train_rows == "gate":
        accepted = apply_gate(gate_entry, X, names)
        n_rejected = int((usable & ~accepted).sum())
        usable &= accepted
    X, y, df = X[usable], y[usable], df[usable]
    view = (
        pd.to_numeric(df["view"], errors="coerce").fillna(0).to_numpy(np.int64)
        if "view" in df.columns
        else np.zeros(len(df), np.int64)
    )
    f32 = float(np.finfo(np.float32).max)
    X = np.clip(
        X, -f32, f32
    )  # scikit-learn works in float32; beyond its range a value routes like the largest one
    n_pos = int((y == POSITIVE).sum())
    n_neg = int((y == NEGATIVE).sum())
    if n_pos == 0 or n_neg == 0:
        raise InputError(
            f"training needs both classes: {n_pos} positive and {n_neg} negative usable rows "
            f"(positive class: {type_map.describe()})"
        )
    groups = df["object_id"].astype(str).to_numpy() if "object_id" in df.columns else None
    weights = None
    if recipe.object_weights:
        if groups is None:
            raise InputError("object_weights needs an object_id column in the feature table")
        weights = 1.0 / pd.Series(groups).map(pd.Series(groups).value_counts()).to_numpy(float)
    return TrainingRows(df, X, y, view, label_col, n_rejected, groups, weights)


# ---------------------------------------------------------------------------- 2. the forest
@dataclass
class Forest:
    """The fitted forest, its flat ensemble, its out-of-bag P(positive) and how to make another
    like it."""

    make: Callable[[], Any]  # an unfitted forest of the same settings (for held-out folds)
    params: dict[str, Any]  # what the card records
    ensemble: TreeEnsemble
    oob: np.ndarray


def fit_forest(rows: TrainingRows, recipe: Recipe, seed: int | None, n_jobs: int = 1) -> Forest:
    """The recipe's forest fitted on every row (bootstrap, out-of-bag predictions kept)."""
    Cls = RandomForestClassifier if recipe.classifier == "rf" else ExtraTreesClassifier
    params = {
        "n_estimators": recipe.n_estimators,
        "random_state": seed,
        "max_depth": recipe.max_depth,
        "min_samples_leaf": recipe.min_samples_leaf,
        "class_weight": recipe.class_weight,
    }
    forest = Cls(**params, bootstrap=True, oob_score=True, n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*(out-of-bag|OOB).*"
        )  # tiny forests: some rows have no OOB trees
        warnings.filterwarnings("ignore", message="invalid value encountered")
        forest.fit(rows.X, rows.positive, sample_weight=rows.weights)
    oob = forest.oob_decision_function_[:, list(forest.classes_).index(True)]
    return Forest(
        lambda: Cls(**params, bootstrap=True, n_jobs=n_jobs),
        params,
        TreeEnsemble.from_sklearn(forest, positive_class=True),
        oob,
    )


# ---------------------------------------------------------------------------- 3. held-out
# predictions
@dataclass
class HeldOut:
    """Held-out P(positive) of each row (NaN where none) and where it comes from: ``oob`` or
    ``grouped_cv``."""

    p: np.ndarray
    source: str


def held_out(rows: TrainingRows, recipe: Recipe, forest: Forest) -> HeldOut:
    """Out-of-bag predictions when each object has one row; with several rows per object,
    out-of-bag rows of an object whose other alerts were in the bag are not unseen: honest ones
    come from folds split by object (a calibration by evidence makes its own held-out folds)."""
    if rows.repeated and recipe.cv_folds >= 2 and recipe.calibrate != "evidence":
        return HeldOut(
            grouped_out_of_fold(
                forest.make, rows.X, rows.positive, rows.groups, recipe.cv_folds, rows.weights
            ),
            "grouped_cv",
        )
    return HeldOut(forest.oob, "oob")


# ---------------------------------------------------------------------------- 4. calibration and
# held-out metrics
@dataclass
class Calibration:
    """A model's calibration map and what its card records of held-out scores."""

    calibration: dict[str, np.ndarray] | None
    metrics: dict[str, Any]
    operating_points: list[dict]
    held_out: str  # where the calibration's held-out predictions came from
    evidence: dict | None = None
    curves: list[dict] | None = None


def calibrate(
    rows: TrainingRows,
    recipe: Recipe,
    forest: Forest,
    held: HeldOut,
    seed: int | None,
    names: Sequence[str],
    metrics: Mapping | None = None,
) -> Calibration:
    """The recipe's calibration fitted on held-out predictions, with the held-out metrics and
    operating points (``metrics``: more entries for the card's metrics)."""
    if recipe.calibrate == "evidence":
        return _evidence_calibration(rows, recipe, forest, seed, names, metrics)
    has = np.isfinite(held.p)
    calibration = None
    if recipe.calibrate:
        if has.sum() < 10:
            raise InputError(
                "calibration needs held-out predictions for at least 10 rows; got "
                f"{int(has.sum())} (more trees or rows)"
            )
        calibration = fit_calibration(held.p[has], rows.positive[has], recipe.calibrate)
    yb = rows.positive
    has_oob = np.isfinite(forest.oob)
    all_metrics: dict[str, Any] = {
        "oob": card_metrics(yb[has_oob], apply_calibration(forest.oob[has_oob], calibration))
    }
    if rows.repeated:
        all_metrics["oob"]["note"] = "optimistic: other rows of the same objects were in the bag"
    if held.source == "grouped_cv":
        all_metrics["grouped_cv"] = {
            **card_metrics(yb[has], apply_calibration(held.p[has], calibration)),
            "folds": int(min(recipe.cv_folds, len(set(rows.groups)))),
        }
    if metrics:
        all_metrics.update(dict(metrics))
    ops: list[dict] = []
    det = rows.detections()
    if (
        (held.source == "grouped_cv" or not rows.repeated)
        and rows.groups is not None
        and det is not None
        and has.any()
    ):
        ok = has & np.isfinite(det)
        source = (
            "grouped out-of-fold scores"
            if held.source == "grouped_cv"
            else "out-of-bag scores (one row per object)"
        )
        ops = operating_points(
            rows.groups[ok],
            det[ok],
            yb[ok],
            apply_calibration(held.p[ok], calibration),
            estimated_on=source,
        )
    return Calibration(calibration, all_metrics, ops, held.source)


def _evidence_calibration(
    rows: TrainingRows,
    recipe: Recipe,
    forest: Forest,
    seed: int | None,
    names: Sequence[str],
    metrics: Mapping | None,
) -> Calibration:
    if rows.groups is None:
        raise InputError(
            "calibrate='evidence' needs an object_id column (folds are split by object)"
        )
    det = rows.detections()
    if det is None:
        raise InputError(
            "calibrate='evidence' needs the number of detections of each alert (ndethist or "
            "n_detections)"
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(out-of-bag|OOB).*")
        fit = held_out_evidence(
            forest.make,
            rows.X,
            rows.positive,
            rows.groups,
            rows.weights,
            rows.view,
            det,
            names,
            evidence_feature=recipe.evidence_feature,
            folds=recipe.cv_folds,
            seed=seed if isinstance(seed, int) else 0,
        )
    evidence = fit["evidence"]
    held_rows, cross = fit["calibrated_held_out"]
    all_metrics = {
        "grouped_cv": {
            **card_metrics(rows.positive[held_rows], cross),
            "folds": evidence["folds"],
            "note": "per alert, original labelled alerts, cross-fitted calibration",
        }
    }
    if metrics:
        all_metrics.update(dict(metrics))
    return Calibration(
        fit["calibration"],
        all_metrics,
        fit["operating_points"],
        "grouped_cv",
        evidence,
        fit["curves"],
    )


# ---------------------------------------------------------------------------- 5. the card
def model_card(
    rows: TrainingRows,
    recipe: Recipe,
    forest: Forest,
    fit: Calibration,
    names: Sequence[str],
    extractor_config: Mapping,
    type_map: TypeMap,
    gate_entry: dict | None,
    *,
    parent: str | None = None,
    lineage: Mapping | None = None,
    survey: str | None = None,
    bands: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The card of a model trained on ``rows`` (see ``docs/scoring.md`` for its keys)."""
    df = rows.df

    def ids(col: str) -> list[str]:
        return df[col].astype(str).tolist() if col in df.columns else []

    original = rows.view == 0
    card = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "extractor": dict(extractor_config),
        "features": list(names),
        "positive_class": sorted(type_map.positive_set()),
        "type_map": type_map.config(),
        "classifier": {
            "kind": recipe.classifier,
            "params": forest.params,
            "bootstrap": True,
            "input_dtype": "float32",
            "object_weights": recipe.object_weights,
        },
        "training": {
            "n_samples": len(rows.y),
            "n_positive": int((rows.y == POSITIVE).sum()),
            "n_negative": int((rows.y == NEGATIVE).sum()),
            "n_objects": int(df.loc[original, "object_id"].nunique())
            if "object_id" in df.columns
            else None,
            "n_training_only_rows": int((~original).sum()),
            "label_column": rows.label_column,
            "rows": recipe.train_rows,
            "n_gate_rejected": rows.n_gate_rejected,
            "object_ids": [o for o, keep in zip(ids("object_id"), original, strict=False) if keep],
            "alert_ids": [a for a, keep in zip(ids("alert_id"), original, strict=False) if keep],
            "labels": rows.y[original].astype(int).tolist(),
        },
        "metrics": fit.metrics,
        "calibration": {
            "method": recipe.calibrate,
            "fitted_on": (
                "held-out original alerts, per evidence stratum"
                if recipe.calibrate == "evidence"
                else "grouped out-of-fold probabilities (folds by object)"
                if fit.held_out == "grouped_cv"
                else "out-of-bag probabilities"
            ),
        }
        if recipe.calibrate
        else None,
        "versions": versions(),
        "parent": parent,
        "lineage": dict(lineage or {}),
        "selection": dict(recipe.selection) if recipe.selection else None,
        "gate": gate_entry,
        "operating_points": fit.operating_points,
    }
    if fit.evidence is not None:
        card["evidence"] = fit.evidence
        card["operating_curves"] = fit.curves
    if recipe.augmentation:
        card["augmentation"] = dict(recipe.augmentation)
    card["survey"], card["bands"] = card_survey(
        {**card, "survey": survey, "bands": list(bands) if bands else None}
    )
    return card


def _labels(
    df: pd.DataFrame, type_map: TypeMap, label_column: str | None
) -> tuple[np.ndarray, str]:
    cols = [label_column] if label_column else [c for c in LABEL_COLUMNS if c in df.columns]
    if not cols or cols[0] not in df.columns:
        raise InputError(
            "the feature table has no label column (looked for "
            f"{list((label_column and [label_column]) or LABEL_COLUMNS)})"
        )
    col = cols[0]
    s = df[col]
    if pd.api.types.is_bool_dtype(s):
        return np.where(s.to_numpy(bool), POSITIVE, NEGATIVE).astype(np.int8), col
    if pd.api.types.is_numeric_dtype(s):
        v = pd.to_numeric(s).fillna(UNLABELLED).to_numpy()
        bad = ~np.isin(v, (POSITIVE, NEGATIVE, UNLABELLED))
        if bad.any():
            raise InputError(
                f"numeric label column {col!r} must hold 1 (positive), 0 (negative) or -1 "
                f"(unlabelled); found {sorted(set(v[bad]))[:5]}"
            )
        return v.astype(np.int8), col
    return type_map.encode(s.tolist()), col


# ---------------------------------------------------------------------------- from light curves, by
# recipe
def train_recipe(
    data: LightCurves | pd.DataFrame,
    recipe: str = "auto",
    *,
    meta: Mapping[str, Any] | None = None,
    type_map: TypeMap | None = None,
    overrides: Mapping[str, Any] | None = None,
    random_state: int = 42,
    n_jobs: int = 1,
    sample_ids: Iterable[str] | None = None,
    label_column: str | None = None,
    parent: str | None = None,
    lineage: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Model:
    """Train a model the way recipe ``recipe`` says, from labelled light curves or from a feature
    table.

    ``data``: a :class:`~earlyia.io.table.LightCurves` with a ``label`` column (the recipe's
    extractor runs on every replayed alert, plus augmented copies when the recipe has an
    augmentation), or a feature table (``meta``: its metadata from
    :func:`earlyia.features.io.read_features`; no augmentation is possible). ``overrides``: recipe
    settings to change (:meth:`Recipe.replace`; None values are left out, as an option not given).
    ``progress``: a callable receiving one line per step (e.g. ``print``).
    """
    say = progress or (lambda _line: None)
    type_map = type_map or TypeMap()
    lineage = dict(lineage or {})
    changes = {k: v for k, v in (overrides or {}).items() if v is not None}
    augmentation = None
    if isinstance(data, LightCurves):
        lc = data
        other = bool(lc.survey) and str(lc.survey).upper() != "ZTF"
        base_name = "early" if recipe == "auto" and not other else recipe
        name, rec = recipe_for(
            RECIPES.get(base_name, RECIPES["early"]).extractor, base_name, survey=lc.survey
        )
        rec = rec.replace(**changes)
        extractor = get_extractor(rec.extractor)
        if "label" not in lc.objects.columns or lc.objects["label"].isna().all():
            raise InputError(
                "the light curves carry no labels (a 'label' column of types, e.g. from a "
                "labels CSV)"
            )
        known = np.flatnonzero(type_map.encode(lc.objects["label"].to_numpy(object)) >= 0)
        if len(known) == 0:
            raise InputError(
                f"no labelled object among the {lc.n_objects} light curves ({type_map.describe()})"
            )
        lc = lc.take(known)
        if rec.augmentation is None:
            df = extractor.transform(lc, per="auto")
        else:
            aug = Augmentation.from_card(rec.augmentation)
            say(
                f"{lc.n_objects} labelled light curves: replaying detections "
                f"{aug.min_detections}-{aug.max_detections} "
                f"and {aug.copies} augmented cop{'y' if aug.copies == 1 else 'ies'} of each"
            )
            df = training_table(lc, extractor, aug, random_state=random_state)
            augmentation = {**aug.to_card(), "seed": int(random_state)}
            say(f"  {len(df)} alerts with features")
        extractor_config, survey, data_bands = extractor.config(), lc.survey, list(lc.bands)
    else:
        if meta is None:
            raise InputError(
                "a feature table needs its metadata (earlyia.features.io.read_features)"
            )
        df = data
        extractor_config, survey, data_bands = (
            meta["extractor"],
            meta.get("survey"),
            meta.get("bands"),
        )
        name, rec = recipe_for(extractor_config, recipe, survey=survey)
        rec = rec.replace(**changes)
        if rec.calibrate == "evidence" and rec.augmentation is not None:
            say(
                "note: trained from a feature table, without augmentation; give the light "
                "curves to train on augmented copies"
            )
    lineage["recipe"] = name
    if rec.impostors and str(survey or "ZTF").upper() == "ZTF":
        extra = impostor_features(
            extractor_config,
            rec.impostors,
            random_state=random_state,
            replay_from=1 if augmentation else None,
        )
        if augmentation is not None:
            extra["view"] = -1  # generated: they train; they are not objects the model is judged on
        if sample_ids is not None:
            sample_ids = [*sample_ids, *extra["object_id"].astype(str).unique()]
        df = pd.concat([df, extra], ignore_index=True)
        lineage["impostors"] = {
            "n_per_kind": rec.impostors,
            "seed": int(random_state),
            "rows": len(extra),
            "generator": "earlyia.sim.impostors",
        }
    say(
        f"training {rec.n_estimators} trees on {len(df)} rows (recipe {name}"
        + (f", calibration by {rec.calibrate}" if rec.calibrate else "")
        + "), then held-out folds by object"
    )
    return train_model(
        df,
        extractor_config,
        rec.replace(
            augmentation=augmentation
        ),  # the card records the augmentation that made the rows, if any
        type_map=type_map,
        random_state=random_state,
        sample_ids=sample_ids,
        label_column=label_column,
        parent=parent,
        lineage=lineage,
        n_jobs=n_jobs,
        survey=survey or None,
        bands=None if (extractor_config.get("params") or {}).get("bands") else data_bands,
    )


def training_table(
    lc: LightCurves, extractor, augmentation: Augmentation, *, random_state=None
) -> pd.DataFrame:
    """The feature table a model learns from: every view of
    :meth:`earlyia.augment.Augmentation.views` of ``lc``.

    One row per replayed alert: ``object_id`` (the original object in every view), ``alert_id``
    (``<object>_<k>``, with ``~<view>`` for augmented copies), ``view``, ``ndethist`` (detections so
    far, the protocol's N), ``n_detections`` (detections in the history the alert carries),
    ``label`` (when ``lc.objects`` has it), ``valid``, ``reason``, then ``extractor.names``.
    """
    names = list(extractor.names)
    parts = []
    for view, seg in augmentation.views(lc, random_state):
        X, ok, why = extractor.extract_lc(
            seg.lc, seg.starts, seg.ends, object_index=seg.object_index
        )
        oid = seg.lc.objects["object_id"].astype(str).to_numpy(object)[seg.object_index]
        suffix = "" if view == 0 else f"~{view}"
        cum = np.concatenate([[0], np.cumsum(seg.lc.detected, dtype=np.int64)])
        cols: dict[str, Any] = {
            "object_id": oid,
            "alert_id": np.array(
                [f"{o}_{k}{suffix}" for o, k in zip(oid, seg.ndethist, strict=True)], dtype=object
            ),
            "view": np.full(len(oid), view, np.int64),
            "ndethist": seg.ndethist.astype(np.int64),
            "n_detections": (cum[seg.ends] - cum[seg.starts]).astype(np.int64),
        }
        if "label" in seg.lc.objects.columns:
            cols["label"] = seg.lc.objects["label"].to_numpy(object)[seg.object_index]
        cols["valid"] = np.asarray(ok, bool)
        cols["reason"] = np.asarray(why, dtype=object)
        frame = pd.DataFrame(cols)
        parts.append(
            pd.concat([frame, pd.DataFrame(np.asarray(X, np.float64), columns=names)], axis=1)
        )
    return pd.concat(parts, ignore_index=True)
