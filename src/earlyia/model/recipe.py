"""Training recipes: every setting that decides how a model is trained, in one object.

A :class:`Recipe` holds the forest (``n_estimators``, ``classifier``, ``max_depth``,
``min_samples_leaf``, ``class_weight``, ``object_weights``), the rows it learns from
(``train_rows``, ``impostors``, ``augmentation``, ``extractor``), how its held-out estimates and
calibration are made (``cv_folds``, ``calibrate``, ``evidence_feature``) and what scoring with it
applies (``selection``, ``gate``). It is checked when it is made: a bad setting is refused by name
(:class:`~earlyia.errors.ConfigError`), before any training starts.

Why named recipes: the early model and Fink's configuration need different forests. The ``early``
recipe: leaves of >= 5 rows, balanced classes, every object weighing the same whatever its number of
replayed alerts, generated flat / fading / noisy-constant impostors as negatives (so they never
score high), and a selection that lets the model judge young light curves itself (no per-band
minimum, no rising cut; the SIMBAD and ``ndethist`` cuts stay). Trained from light curves, it uses
the stream-robust early features (:data:`earlyia.features.early.STREAM_PARAMS`), learns from
augmented copies of every labelled light curve replayed from its first detection
(:class:`earlyia.augment.Augmentation`), and calibrates its probabilities per evidence stratum with
operating curves that move to any prevalence (:mod:`earlyia.model.calibration`). The ``fink`` recipe
is Fink's production setting (full-depth trees, no weights, Fink's cuts). The ``lsst`` recipe is the
ELAsTiCC classifier's, and the automatic choice for any table of another survey than ZTF: full-depth
trees, every alert scored (SIMBAD and ``ndethist`` cuts do not apply to LSST alerts), and the rise
gate, which scores flat, noisy-constant and fading light curves 0 (the ZTF impostor generator does
not apply).

A model card records what its recipe decided (forest parameters, selection, gate, training rows,
calibration, augmentation, impostors); :meth:`Recipe.of_model` reads it back, so that a retrain of
the live loop changes the labels, not the recipe: a candidate that silently lost its parent's gate
or selection would score alerts its parent never scored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from earlyia.augment import Augmentation
from earlyia.errors import ConfigError
from earlyia.features.early import STREAM_PARAMS
from earlyia.features.gates import GATE_KINDS, rise_prefix
from earlyia.model.artifact import jsonable
from earlyia.model.calibration import CALIBRATION_METHODS
from earlyia.select import SELECTION_RULES

#: Forests a recipe can train.
CLASSIFIERS = ("rf", "extratrees")
#: Which labelled rows train the forest: every usable one, or only those the gate lets the model
#: score.
TRAIN_ROWS = ("all", "gate")
#: Class weights scikit-learn's forests know (None: every row weighs the same).
CLASS_WEIGHTS = (None, "balanced", "balanced_subsample")
#: A pseudo-setting of :meth:`Recipe.replace`: the number of augmented copies of each light curve.
AUGMENT_COPIES = "augment_copies"


def _count(name: str, value: Any, minimum: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or int(value) != value
        or value < minimum
    ):
        raise ConfigError(
            f"recipe setting {name} must be a whole number >= {minimum}, got {value!r}"
        )
    return int(value)


def _mapping(name: str, value: Any) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"recipe setting {name} must be a mapping or None, got {type(value).__name__} {value!r}"
        )
    return jsonable(dict(value))


@dataclass(frozen=True)
class Recipe:
    """Every setting of a training run (see the module docstring); the defaults are plain
    full-depth forests without weights, calibration, selection or gate. Make one with
    :meth:`named`, :func:`recipe_for`, :meth:`replace`, :meth:`from_card` or :meth:`of_model`."""

    n_estimators: int = 1000
    classifier: str = "rf"
    max_depth: int | None = None
    min_samples_leaf: int = 1
    class_weight: str | None = None
    object_weights: bool = False
    calibrate: str | None = None
    selection: Mapping[str, Any] | None = None
    gate: str = "none"
    train_rows: str = "all"
    cv_folds: int = 5
    augmentation: Mapping[str, Any] | None = None
    evidence_feature: str = "early_n_det"
    impostors: int = 0
    extractor: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("n_estimators", _count("n_estimators", self.n_estimators, 1))
        if self.classifier not in CLASSIFIERS:
            raise ConfigError(
                f"recipe setting classifier must be one of {CLASSIFIERS}, got {self.classifier!r}"
            )
        if self.max_depth is not None:
            put("max_depth", _count("max_depth", self.max_depth, 1))
        put("min_samples_leaf", _count("min_samples_leaf", self.min_samples_leaf, 1))
        put("class_weight", None if self.class_weight == "none" else self.class_weight)
        if self.class_weight not in CLASS_WEIGHTS:
            raise ConfigError(
                "recipe setting class_weight must be None, 'balanced' or "
                f"'balanced_subsample', got {self.class_weight!r}"
            )
        if not isinstance(self.object_weights, bool):
            raise ConfigError(
                f"recipe setting object_weights must be True or False, got {self.object_weights!r}"
            )
        put("calibrate", None if self.calibrate == "none" else self.calibrate)
        if self.calibrate not in (None, *CALIBRATION_METHODS):
            raise ConfigError(
                f"recipe setting calibrate must be one of {CALIBRATION_METHODS} or None, got "
                f"{self.calibrate!r}"
            )
        put("selection", _mapping("selection", self.selection) or None)
        rule = (self.selection or {}).get("rule", "early")
        if rule not in SELECTION_RULES:
            raise ConfigError(
                f"recipe setting selection names rule {rule!r}; expected one of {SELECTION_RULES}"
            )
        if self.gate not in ("none", *GATE_KINDS):
            raise ConfigError(
                f"recipe setting gate must be one of {['none', *GATE_KINDS]}, got {self.gate!r}"
            )
        if self.train_rows not in TRAIN_ROWS:
            raise ConfigError(
                f"recipe setting train_rows must be one of {TRAIN_ROWS}, got {self.train_rows!r}"
            )
        if self.train_rows == "gate" and self.gate == "none":
            raise ConfigError(
                "recipe setting train_rows='gate' needs a gate (gate='rise'): without one "
                "every row is scored"
            )
        put("cv_folds", _count("cv_folds", self.cv_folds, 0))
        put("augmentation", _mapping("augmentation", self.augmentation))
        if self.augmentation is not None:
            try:
                Augmentation.from_card(self.augmentation)
            except ConfigError as exc:
                raise ConfigError(f"recipe setting augmentation: {exc}") from exc
        if not isinstance(self.evidence_feature, str) or not self.evidence_feature:
            raise ConfigError(
                "recipe setting evidence_feature must name a feature, got "
                f"{self.evidence_feature!r}"
            )
        put("impostors", _count("impostors", self.impostors, 0))
        put("extractor", _mapping("extractor", self.extractor))
        if self.extractor is not None and not isinstance(
            self.extractor.get("extractor", self.extractor.get("name")), str
        ):
            raise ConfigError(
                "recipe setting extractor must name an extractor ({'extractor': name, "
                f"'params': ...}}), got {self.extractor!r}"
            )

    # -------------------------------------------------------------- making recipes
    @classmethod
    def named(cls, name: str) -> Recipe:
        """The recipe called ``name`` (:data:`RECIPES`)."""
        if name not in RECIPES:
            raise ConfigError(f"unknown training recipe {name!r}; choose from {['auto', *RECIPES]}")
        return RECIPES[name]

    @classmethod
    def settings(cls) -> tuple[str, ...]:
        """The names of every setting."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> Recipe:
        """This recipe with ``changes`` (checked like a new recipe; an unknown setting is refused by
        name).

        ``augment_copies=N`` sets the number of augmented copies (when the recipe augments); turning
        the gate off (``gate="none"``) without saying which rows train also trains on every row,
        since gate rows mean nothing then.
        """
        unknown = sorted(set(changes) - {*self.settings(), AUGMENT_COPIES})
        if unknown:
            raise ConfigError(
                f"unknown recipe setting(s) {unknown}; settings: "
                f"{[*self.settings(), AUGMENT_COPIES]}"
            )
        changes = dict(changes)
        if AUGMENT_COPIES in changes:
            copies = _count(AUGMENT_COPIES, changes.pop(AUGMENT_COPIES), 0)
            base = changes.get("augmentation", self.augmentation)
            if base is not None:
                changes["augmentation"] = {**base, "copies": copies}
        if changes.get("gate") == "none" and "train_rows" not in changes:
            changes["train_rows"] = "all"
        return dataclasses.replace(self, **changes)

    # -------------------------------------------------------------- cards
    def to_card(self) -> dict[str, Any]:
        """Every setting as plain JSON (what a model's lineage records as ``recipe_settings``)."""
        return jsonable({name: getattr(self, name) for name in self.settings()})

    @classmethod
    def from_card(cls, entry: Mapping[str, Any]) -> Recipe:
        """The recipe of :meth:`to_card`'s entry; a setting the entry lacks takes its default
        (entries written before it existed), an unknown one is refused by name."""
        if not isinstance(entry, Mapping):
            raise ConfigError(
                f"a recipe entry is a mapping of settings, got {type(entry).__name__}"
            )
        unknown = sorted(set(entry) - set(cls.settings()))
        if unknown:
            raise ConfigError(
                f"unknown recipe setting(s) {unknown} in the entry; settings: "
                f"{list(cls.settings())}"
            )
        return cls(**entry)

    @classmethod
    def of_model(cls, card: Mapping[str, Any]) -> Recipe:
        """The recipe that trained the model of ``card``, as far as the card records it: forest,
        selection, gate, training rows, calibration and its evidence feature, augmentation,
        impostors, extractor. The number of folds is not recorded (only the folds the objects
        allowed): it keeps its default."""
        clf = card.get("classifier") or {}
        params = clf.get("params") or {}
        out: dict[str, Any] = {
            k: params[k] for k in ("max_depth", "min_samples_leaf", "class_weight") if k in params
        }
        n_trees = params.get("n_estimators", card.get("n_trees"))
        if n_trees is not None:
            out["n_estimators"] = n_trees
        if clf.get("kind") in CLASSIFIERS:
            out["classifier"] = clf["kind"]
        if "object_weights" in clf:
            out["object_weights"] = bool(clf["object_weights"])
        out["selection"] = card.get("selection") or None
        gate = card.get("gate")
        out["gate"] = gate["kind"] if gate else "none"
        out["train_rows"] = (card.get("training") or {}).get("rows", "all")
        out["calibrate"] = (card.get("calibration") or {}).get("method")
        if (card.get("evidence") or {}).get("feature"):
            out["evidence_feature"] = card["evidence"]["feature"]
        out["augmentation"] = card.get("augmentation")
        out["impostors"] = ((card.get("lineage") or {}).get("impostors") or {}).get("n_per_kind", 0)
        out["extractor"] = card.get("extractor")
        return cls(**out)


#: The named recipes.
RECIPES: dict[str, Recipe] = {
    "early": Recipe(
        n_estimators=300,
        min_samples_leaf=5,
        class_weight="balanced",
        object_weights=True,
        impostors=100,
        selection={"min_points_per_band": 0, "require_rising": False},
        extractor={"extractor": "early", "params": dict(STREAM_PARAMS)},
        augmentation=Augmentation().to_card(),
        calibrate="evidence",
    ),
    "fink": Recipe(
        n_estimators=1000, extractor={"extractor": "sigmoid", "params": {"mode": "fink"}}
    ),
    "lsst": Recipe(
        n_estimators=1000,
        selection={"rule": "none"},
        gate="rise",
        train_rows="gate",
        extractor={"extractor": "lsst_early", "params": {}},
    ),
}
#: the recipe ``auto`` picks for each extractor on ZTF tables (others: ``fink``); any other survey
#: gets ``lsst``
AUTO = {"early": "early", "lsst_early": "lsst"}


def recipe_for(
    extractor_config: Mapping, name: str = "auto", survey: str | None = None
) -> tuple[str, Recipe]:
    """The recipe ``name``, or with ``"auto"`` the one that suits the feature table: ``(name,
    recipe)``.

    ``auto``: ``lsst`` whenever the table's ``survey`` is known and not ZTF, whatever the extractor
    (the ZTF recipes select with Fink's ZTF cuts, ``ndethist`` and SIMBAD, and the ``fink`` one with
    g and r points, which LSST alerts do not have: a Rainbow model trained on ELAsTiCC scored none
    of them); otherwise :data:`AUTO` by extractor, else ``fink``. An automatic ``lsst`` recipe on
    features without Rainbow's rise statistics (``sigmoid_lsst``, ``early``) gets no gate, since the
    gate could not be evaluated.
    """
    auto = name == "auto"
    if auto:
        other_survey = bool(survey) and str(survey).upper() != "ZTF"
        name = (
            "lsst" if other_survey else AUTO.get(str(extractor_config.get("extractor", "")), "fink")
        )
    recipe = Recipe.named(name)
    if auto and recipe.gate != "none" and rise_prefix(extractor_config.get("names", ())) is None:
        recipe = recipe.replace(gate="none")
    return name, recipe
