"""Training recipes: the defaults of ``earlyia train`` for each kind of feature table.

Why: the early model and Fink's configuration need different forests. The ``early`` recipe is what
the replay ablation kept (README, issue 7): leaves of >= 5 rows, balanced classes, every object
weighing the same whatever its number of replayed alerts, generated flat / fading / noisy-constant
impostors as negatives (so they never score high), and a selection that lets the model judge young
light curves itself (no per-band minimum, no rising cut; the SIMBAD and ``ndethist`` cuts stay).
The ``fink`` recipe is Fink's production setting (full-depth trees, no weights, Fink's cuts).
The ``lsst`` recipe is the ELAsTiCC classifier's (README, issue 6), and the automatic choice for any table of
another survey than ZTF: full-depth trees, every alert scored (SIMBAD and ``ndethist`` cuts do not apply to
LSST alerts), and the rise gate, which scores flat, noisy-constant and fading light curves 0 (the ZTF impostor
generator does not apply).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from earlyia.errors import ConfigError
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
    },
    "fink": {
        "min_samples_leaf": 1,
        "class_weight": None,
        "object_weights": False,
        "impostors": 0,
        "selection": None,
        "gate": "none",
        "train_rows": "all",
    },
    "lsst": {
        "min_samples_leaf": 1,
        "class_weight": None,
        "object_weights": False,
        "impostors": 0,
        "selection": {"rule": "none"},
        "gate": "rise",
        "train_rows": "gate",
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
