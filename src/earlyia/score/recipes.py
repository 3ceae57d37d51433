"""Training recipes: the defaults of ``earlyia train`` for each kind of feature table.

Why: the early model and Fink's configuration need different forests. The ``early`` recipe: leaves of
>= 5 rows, balanced classes, every object weighing the same whatever its number of replayed alerts,
generated flat / fading / noisy-constant impostors as negatives (so they never score high), and a
selection that lets the model judge young light curves itself (no per-band minimum, no rising cut; the
SIMBAD and ``ndethist`` cuts stay). Trained from light curves, it uses the stream-robust early features
(:data:`earlyia.features.early.STREAM_PARAMS`), learns from augmented copies of every labelled light
curve replayed from its first detection (:class:`earlyia.augment.Augmentation`), and calibrates its
probabilities per evidence stratum with operating curves that move to any prevalence
(:mod:`earlyia.score.evidence`).
The ``fink`` recipe is Fink's production setting (full-depth trees, no weights, Fink's cuts).
The ``lsst`` recipe is the ELAsTiCC classifier's (README, issue 6), and the automatic choice for any table of
another survey than ZTF: full-depth trees, every alert scored (SIMBAD and ``ndethist`` cuts do not apply to
LSST alerts), and the rise gate, which scores flat, noisy-constant and fading light curves 0 (the ZTF impostor
generator does not apply).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from earlyia.augment import Augmentation
from earlyia.errors import ConfigError
from earlyia.features.early import STREAM_PARAMS
from earlyia.features.gates import rise_prefix

RECIPES: dict[str, dict[str, Any]] = {
    "early": {
        "min_samples_leaf": 5,
        "class_weight": "balanced",
        "object_weights": True,
        "impostors": 100,
        "selection": {"min_points_per_band": 0, "require_rising": False},
        "gate": "none",
        "train_rows": "all",
        "extractor": {"extractor": "early", "params": dict(STREAM_PARAMS)},
        "augmentation": Augmentation().to_card(),
        "calibrate": "evidence",
        "n_estimators": 300,
    },
    "fink": {
        "min_samples_leaf": 1,
        "class_weight": None,
        "object_weights": False,
        "impostors": 0,
        "selection": None,
        "gate": "none",
        "train_rows": "all",
        "extractor": {"extractor": "sigmoid", "params": {"mode": "fink"}},
        "augmentation": None,
        "calibrate": None,
        "n_estimators": 1000,
    },
    "lsst": {
        "min_samples_leaf": 1,
        "class_weight": None,
        "object_weights": False,
        "impostors": 0,
        "selection": {"rule": "none"},
        "gate": "rise",
        "train_rows": "gate",
        "extractor": {"extractor": "lsst_early", "params": {}},
        "augmentation": None,
        "calibrate": None,
        "n_estimators": 1000,
    },
}
#: the recipe ``auto`` picks for each extractor on ZTF tables (others: ``fink``); any other survey gets ``lsst``
AUTO = {"early": "early", "lsst_early": "lsst"}


def recipe_for(extractor_config: Mapping, name: str = "auto", survey: str | None = None) -> tuple[str, dict[str, Any]]:
    """The recipe ``name``, or with ``"auto"`` the one that suits the feature table.

    ``auto``: ``lsst`` whenever the table's ``survey`` is known and not ZTF, whatever the extractor (the ZTF
    recipes select with Fink's ZTF cuts, ``ndethist`` and SIMBAD, and the ``fink`` one with g and r points,
    which LSST alerts do not have: a Rainbow model trained on ELAsTiCC scored none of them); otherwise
    :data:`AUTO` by extractor, else ``fink``. An automatic ``lsst`` recipe on features without Rainbow's rise
    statistics (``sigmoid_lsst``, ``early``) gets no gate, since the gate could not be evaluated.
    """
    auto = name == "auto"
    if auto:
        other_survey = bool(survey) and str(survey).upper() != "ZTF"
        name = "lsst" if other_survey else AUTO.get(str(extractor_config.get("extractor", "")), "fink")
    if name not in RECIPES:
        raise ConfigError(f"unknown training recipe {name!r}; choose from {['auto', *RECIPES]}")
    recipe = dict(RECIPES[name])
    if auto and recipe["gate"] != "none" and rise_prefix(extractor_config.get("names", ())) is None:
        recipe["gate"] = "none"
        recipe["train_rows"] = "all"
    return name, recipe


#: Recipe keys a caller may override (:func:`train_recipe`'s ``overrides``), besides ``augment_copies``.
OVERRIDABLE = ("min_samples_leaf", "class_weight", "object_weights", "impostors", "selection", "gate", "train_rows",
               "calibrate", "n_estimators")


def resolve(recipe: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``recipe`` with every non-None override applied (unknown keys refused)."""
    out = dict(recipe)
    for key, value in (overrides or {}).items():
        if key not in (*OVERRIDABLE, "augment_copies"):
            raise ConfigError(f"unknown recipe setting {key!r}; settings: {[*OVERRIDABLE, 'augment_copies']}")
        if value is None:
            continue
        if key == "augment_copies":
            if int(value) < 0:
                raise ConfigError(f"augment_copies must be >= 0, got {value}")
            if out.get("augmentation") is not None:
                out["augmentation"] = {**out["augmentation"], "copies": int(value)}
            continue
        out[key] = value
    if out.get("gate") == "none" and (overrides or {}).get("train_rows") is None:
        out["train_rows"] = "all"  # "gate" rows mean nothing once the gate is off
    if int(out.get("impostors") or 0) < 0:
        raise ConfigError(f"impostors must be >= 0, got {out['impostors']}")
    if int(out.get("n_estimators") or 1) < 1:
        raise ConfigError(f"n_estimators must be >= 1, got {out['n_estimators']}")
    return out


def train_recipe(
    data,
    recipe: str = "auto",
    *,
    meta: Mapping[str, Any] | None = None,
    type_map=None,
    overrides: Mapping[str, Any] | None = None,
    random_state: int = 42,
    n_jobs: int = 1,
    cv_folds: int = 5,
    sample_ids=None,
    label_column: str | None = None,
    classifier: str = "rf",
    max_depth: int | None = None,
    parent: str | None = None,
    lineage: Mapping[str, Any] | None = None,
    progress=None,
):
    """Train a model the way recipe ``recipe`` says, from labelled light curves or from a feature table.

    ``data``: a :class:`~earlyia.io.table.LightCurves` with a ``label`` column (the recipe's extractor runs on
    every replayed alert, plus augmented copies when the recipe has an augmentation), or a feature table
    (``meta``: its metadata from :func:`earlyia.features.io.read_features`; no augmentation is possible).
    ``overrides``: recipe settings to change (:data:`OVERRIDABLE`, ``augment_copies``). ``progress``: a
    callable receiving one line per step (e.g. ``print``).
    """
    import numpy as np
    import pandas as pd

    from earlyia.errors import InputError
    from earlyia.io.table import LightCurves
    from earlyia.labels import TypeMap
    from earlyia.score.model import train_model
    from earlyia.score.training import training_table

    say = progress or (lambda _line: None)
    type_map = type_map or TypeMap()
    lineage = dict(lineage or {})
    augmentation = None
    if isinstance(data, LightCurves):
        lc = data
        other = bool(lc.survey) and str(lc.survey).upper() != "ZTF"
        base_name = "early" if recipe == "auto" and not other else recipe
        name, rec = recipe_for(RECIPES.get(base_name, RECIPES["early"])["extractor"], base_name, survey=lc.survey)
        rec = resolve(rec, overrides)
        from earlyia.features import get_extractor

        extractor = get_extractor(rec["extractor"])
        if "label" not in lc.objects.columns or lc.objects["label"].isna().all():
            raise InputError("the light curves carry no labels (a 'label' column of types, e.g. from a labels CSV)")
        known = np.flatnonzero(type_map.encode(lc.objects["label"].to_numpy(object)) >= 0)
        if len(known) == 0:
            raise InputError(f"no labelled object among the {lc.n_objects} light curves ({type_map.describe()})")
        lc = lc.take(known)
        if rec.get("augmentation") is None:
            df = extractor.transform(lc, per="auto")
        else:
            aug = Augmentation.from_card(rec["augmentation"])
            say(f"{lc.n_objects} labelled light curves: replaying detections {aug.min_detections}-{aug.max_detections} "
                f"and {aug.copies} augmented cop{'y' if aug.copies == 1 else 'ies'} of each")
            df = training_table(lc, extractor, aug, random_state=random_state)
            augmentation = {**aug.to_card(), "seed": int(random_state)}
            say(f"  {len(df)} alerts with features")
        extractor_config, survey, data_bands = extractor.config(), lc.survey, list(lc.bands)
    else:
        if meta is None:
            raise InputError("a feature table needs its metadata (earlyia.features.io.read_features)")
        df = data
        extractor_config, survey, data_bands = meta["extractor"], meta.get("survey"), meta.get("bands")
        name, rec = recipe_for(extractor_config, recipe, survey=survey)
        rec = resolve(rec, overrides)
    lineage["recipe"] = name
    n_imp = int(rec.get("impostors") or 0)
    if n_imp and str(survey or "ZTF").upper() == "ZTF":
        from earlyia.sim.impostors import impostor_features

        extra = impostor_features(extractor_config, n_imp, random_state=random_state, replay_from=1 if augmentation else None)
        if augmentation is not None:
            extra["view"] = -1  # generated: they train; they are not objects the model is judged on
        if sample_ids is not None:
            sample_ids = [*sample_ids, *extra["object_id"].astype(str).unique()]
        df = pd.concat([df, extra], ignore_index=True)
        lineage["impostors"] = {"n_per_kind": n_imp, "seed": int(random_state), "rows": len(extra), "generator": "earlyia.sim.impostors"}
    from_table = not isinstance(data, LightCurves)
    if rec.get("calibrate") == "evidence" and from_table and rec.get("augmentation") is not None:
        say("note: trained from a feature table, without augmentation; give the light curves to train on augmented copies")
    say(f"training {rec['n_estimators']} trees on {len(df)} rows (recipe {name}"
        + (f", calibration by {rec['calibrate']}" if rec.get("calibrate") else "") + "), then held-out folds by object")
    class_weight = rec.get("class_weight")
    return train_model(
        df,
        extractor_config,
        type_map=type_map,
        n_estimators=int(rec["n_estimators"]),
        random_state=random_state,
        classifier=classifier,
        calibrate=None if rec.get("calibrate") in (None, "none") else rec["calibrate"],
        sample_ids=sample_ids,
        label_column=label_column,
        max_depth=max_depth,
        min_samples_leaf=int(rec["min_samples_leaf"]),
        class_weight=None if class_weight == "none" else class_weight,
        object_weights=bool(rec["object_weights"]),
        selection=dict(rec["selection"]) if rec.get("selection") else None,
        gate=rec["gate"],
        train_rows=rec["train_rows"],
        parent=parent,
        lineage=lineage,
        cv_folds=cv_folds,
        n_jobs=n_jobs,
        augmentation=augmentation,
        survey=survey or None,
        bands=None if (extractor_config.get("params") or {}).get("bands") else data_bands,
    )
