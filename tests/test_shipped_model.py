"""The shipped default model: installed with the package, small, and built by the current recipe
from the shared data.

Rebuilding it takes minutes, so the test compares what the card records (the resolved recipe, the
extractor, the augmentation, the sha256 of every training file) with what the recipe and the data
give now; when it fails, run ``python scripts/build_default_model.py`` and commit the new model.
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest

from conftest import shared
from earlyia.augment import Augmentation
from earlyia.features import get_extractor
from earlyia.model.artifact import Model, jsonable
from earlyia.model.recipe import RECIPES, Recipe
from earlyia.model.shipped import (
    SEED,
    SIZE,
    default_model_path,
    shipped_recipe,
    training_data_hash,
    training_files,
)

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 2_000_000


@pytest.fixture(scope="module")
def shipped() -> Model:
    return Model.load(default_model_path())  # also verifies its content hash


def test_the_model_is_package_data_and_small():
    path = default_model_path()
    assert path.stat().st_size <= MAX_BYTES, f"{path.stat().st_size} bytes"
    package = ROOT / "src" / "earlyia"
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["earlyia"]
    rel = path.resolve().relative_to(package.resolve()).as_posix()
    assert any(fnmatch.fnmatch(rel, p) for p in patterns), (rel, patterns)


def test_card_matches_the_current_recipe(shipped, monkeypatch):
    card = shipped.card
    lineage = card["lineage"]
    rec = shipped_recipe()
    assert lineage["recipe"] == "early" and lineage["size_overrides"] == SIZE
    assert set(SIZE) <= {
        "n_estimators",
        "min_samples_leaf",
    }  # only the size differs from the recipe
    assert rec == RECIPES["early"].replace(**SIZE)
    # the recorded settings (a setting recorded by no build takes its default) are the recipe's now
    assert Recipe.from_card(lineage["recipe_settings"]) == rec, (
        "the early recipe changed: rebuild the shipped model"
    )
    # what the forest was really trained with agrees with those settings: the card gives the recipe
    # back
    params = card["classifier"]["params"]
    assert (
        card["n_trees"] == params["n_estimators"] == SIZE["n_estimators"]
        and params["random_state"] == SEED
    )
    augmentation = jsonable({**Augmentation.from_card(rec.augmentation).to_card(), "seed": SEED})
    extractor = get_extractor(rec.extractor)
    assert card["extractor"] == jsonable(extractor.config()) and card["features"] == list(
        extractor.names
    )
    assert Recipe.of_model(card) == rec.replace(
        augmentation=augmentation, extractor=card["extractor"]
    )
    assert card["selection"] == rec.selection and card["gate"] is None and rec.gate == "none"
    assert (
        card["calibration"]["method"] == rec.calibrate
        and lineage["impostors"]["n_per_kind"] == rec.impostors
    )
    assert (card["survey"], card["bands"]) == ("ZTF", ["g", "r"])
    # the comparison can fail: a recipe changed since the build is caught
    monkeypatch.setitem(RECIPES, "early", RECIPES["early"].replace(impostors=rec.impostors + 1))
    assert Recipe.from_card(lineage["recipe_settings"]) != shipped_recipe()


def test_card_records_the_shared_training_data(shipped):
    labels = shared("ztf_fink_tns_labelled/objects.csv")
    root = labels.parents[1]
    now = training_data_hash(training_files(root), root)
    recorded = shipped.card["lineage"]["training_data"]
    assert recorded["files"] == now["files"], (
        "the shared training data changed: rebuild the shipped model"
    )
    assert recorded["sha256"] == now["sha256"]
    assert shipped.card["training"]["n_objects"] > 1000
