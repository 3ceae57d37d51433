"""The training recipe: every setting checked by name when a recipe is made, the named recipes,
the card round trip, and a model's card giving back the recipe that trained it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from earlyia.augment import Augmentation
from earlyia.errors import ConfigError, InputError
from earlyia.model.artifact import jsonable
from earlyia.model.recipe import RECIPES, Recipe, recipe_for
from earlyia.model.training import train_model

NAMES = ["f_a", "f_b", "early_n_det"]
CONFIG = {"extractor": "toy", "names": NAMES}


def _table(n_obj: int = 60, per: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pos = rng.random(n_obj) < 0.4
    rows = []
    for i in range(n_obj):
        for k in range(1, per + 1):
            rows.append(
                {
                    "object_id": f"o{i}",
                    "alert_id": f"o{i}_{k}",
                    "ndethist": k,
                    "label": int(pos[i]),
                    "f_a": rng.normal(1.5 * pos[i]),
                    "f_b": rng.normal(),
                    "early_n_det": float(k),
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("n_estimators", 0),
        ("n_estimators", 2.5),
        ("n_estimators", True),
        ("classifier", "svm"),
        ("max_depth", 0),
        ("min_samples_leaf", -1),
        ("class_weight", "heavy"),
        ("object_weights", "yes"),
        ("calibrate", "magic"),
        ("selection", "loose"),
        ("selection", {"rule": "strict"}),
        ("gate", "fall"),
        ("train_rows", "accepted"),
        ("cv_folds", -1),
        ("augmentation", {"copies": -2}),
        ("evidence_feature", ""),
        ("impostors", -5),
        ("extractor", {"params": {}}),
    ],
)
def test_a_bad_setting_is_refused_by_name(setting, value):
    with pytest.raises(ConfigError, match=f"recipe setting {setting}"):
        Recipe(**{setting: value})
    with pytest.raises(ConfigError, match=f"recipe setting {setting}"):
        RECIPES["early"].replace(**{setting: value})


def test_unknown_settings_and_inconsistent_ones_are_refused():
    with pytest.raises(ConfigError, match=r"unknown recipe setting.*'n_trees'"):
        Recipe().replace(n_trees=10)
    with pytest.raises(ConfigError, match=r"unknown recipe setting.*'trees'"):
        Recipe.from_card({"trees": 10})
    with pytest.raises(ConfigError, match="train_rows='gate' needs a gate"):
        Recipe(train_rows="gate")
    with pytest.raises(ConfigError, match="unknown training recipe 'best'"):
        Recipe.named("best")
    with pytest.raises(ConfigError, match="augment_copies"):
        RECIPES["early"].replace(augment_copies=-1)


def test_the_named_recipes():
    early, fink, lsst = Recipe.named("early"), Recipe.named("fink"), Recipe.named("lsst")
    assert early is RECIPES["early"] and set(RECIPES) == {"early", "fink", "lsst"}
    assert (
        early.n_estimators,
        early.min_samples_leaf,
        early.class_weight,
        early.object_weights,
    ) == (300, 5, "balanced", True)
    assert (
        early.calibrate == "evidence"
        and early.impostors == 100
        and early.gate == "none"
        and early.train_rows == "all"
    )
    assert early.selection == {"min_points_per_band": 0, "require_rising": False}
    assert early.extractor["extractor"] == "early" and early.augmentation == jsonable(
        Augmentation().to_card()
    )
    assert fink == Recipe(
        extractor={"extractor": "sigmoid", "params": {"mode": "fink"}}
    )  # Fink's: plain full-depth forests
    assert (lsst.gate, lsst.train_rows, lsst.selection, lsst.n_estimators) == (
        "rise",
        "gate",
        {"rule": "none"},
        1000,
    )
    # the automatic choice
    assert recipe_for({"extractor": "early"}) == ("early", early)
    assert recipe_for({"extractor": "sigmoid"})[0] == "fink"
    name, auto = recipe_for({"extractor": "sigmoid_lsst", "names": ["a"]}, survey="LSST")
    assert (
        name == "lsst" and auto == lsst.replace(gate="none") and auto.train_rows == "all"
    )  # no rise statistics: no gate


def test_replace_keeps_the_rest_and_the_augmentation_copies():
    early = RECIPES["early"]
    small = early.replace(n_estimators=20, augment_copies=0)
    assert (
        small.n_estimators == 20
        and small.augmentation["copies"] == 0
        and early.augmentation["copies"] != 0
    )
    assert {
        k: v for k, v in small.to_card().items() if k not in ("n_estimators", "augmentation")
    } == {k: v for k, v in early.to_card().items() if k not in ("n_estimators", "augmentation")}
    assert RECIPES["fink"].replace(augment_copies=3).augmentation is None  # nothing to copy
    assert (
        RECIPES["lsst"].replace(gate="none").train_rows == "all"
    )  # gate rows mean nothing without a gate
    assert Recipe(class_weight="none", calibrate="none") == Recipe()  # the command line's "none"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_card_round_trip(name):
    recipe = RECIPES[name].replace(max_depth=7, cv_folds=3)
    card = recipe.to_card()
    assert set(card) == set(Recipe.settings())
    assert Recipe.from_card(card) == recipe and Recipe.from_card(card).to_card() == card
    # an entry written before a setting existed takes its default
    assert Recipe.from_card({k: v for k, v in card.items() if k != "evidence_feature"}) == recipe


def test_a_model_card_gives_back_its_recipe_and_a_retrain_reproduces_it():
    recipe = Recipe(
        n_estimators=12,
        min_samples_leaf=2,
        class_weight="balanced",
        object_weights=True,
        max_depth=6,
        classifier="extratrees",
        calibrate="isotonic",
        selection={"rule": "none"},
        cv_folds=3,
    )
    df = _table()
    parent = train_model(df, CONFIG, recipe, random_state=1)
    params = parent.card["classifier"]["params"]
    assert (params["n_estimators"], params["min_samples_leaf"], params["max_depth"]) == (12, 2, 6)
    got = Recipe.of_model(parent.card)
    assert got == recipe.replace(
        extractor=CONFIG, cv_folds=Recipe().cv_folds
    )  # the folds asked for are not recorded
    # card -> recipe -> card: a model trained with the recipe read from a card has the same recipe
    # in its card
    child = train_model(_table(seed=3), CONFIG, got, random_state=2, parent=parent.hash)
    assert Recipe.of_model(child.card) == got
    for key in ("selection", "gate"):
        assert child.card[key] == parent.card[key]
    assert (
        child.card["calibration"]["method"] == "isotonic"
        and child.card["classifier"]["kind"] == "extratrees"
    )
    assert {k: v for k, v in child.card["classifier"]["params"].items() if k != "random_state"} == {
        k: v for k, v in params.items() if k != "random_state"
    }


def test_a_calibration_by_evidence_and_its_feature_come_back_from_the_card():
    recipe = Recipe(
        n_estimators=8,
        calibrate="evidence",
        cv_folds=3,
        evidence_feature="early_n_det",
        augmentation={**Augmentation(copies=1).to_card(), "seed": 4},
    )
    model = train_model(_table(), CONFIG, recipe, random_state=0)
    assert (
        model.card["evidence"]["feature"] == "early_n_det"
        and model.card["augmentation"]["seed"] == 4
    )
    assert Recipe.of_model(model.card) == recipe.replace(
        extractor=CONFIG, cv_folds=Recipe().cv_folds
    )


def test_train_model_takes_a_recipe():
    with pytest.raises(InputError, match=r"recipe must be an earlyia\.model\.recipe\.Recipe"):
        train_model(_table(), CONFIG, {"n_estimators": 5})
