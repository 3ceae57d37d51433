"""The default early model shipped with earlyia: where it is, how it was built, and what it was
built from.

Why: a new user can score tonight's ZTF alerts without training first. The model is built by
``scripts/build_default_model.py`` with the current ``early`` recipe (:mod:`earlyia.model.recipe`)
on the shared labelled ZTF light curves (``ztf_fink_tns_labelled``), with fewer trees than the
recipe's so that the package stays small; :data:`SIZE` says how, and ``docs/tonight.md`` what it
costs in held-out quality. The card's ``lineage`` records the resolved recipe and the sha256 of
every training file, so a test can tell when the shipped model no longer matches the recipe or the
data and must be rebuilt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from earlyia.errors import DataNotFoundError
from earlyia.model.recipe import Recipe

#: The shipped model, inside the installed package.
PACKAGE_PATH = ("models", "early_ztf.eia")
#: Recipe settings changed from the ``early`` recipe to keep the file small (nothing else differs).
SIZE: dict[str, Any] = {"n_estimators": 90, "min_samples_leaf": 20}
#: Seed of the augmentation, the impostors, the folds and the forests.
SEED = 42
#: Folds by object of the held-out estimates (``earlyia train --cv-folds`` default).
FOLDS = 5
#: Training light curves under the shared data directory (globs, in this order) and their labels.
INPUTS = (
    "ztf_fink_tns_labelled/fink_cross_tns_*.parquet",
    "ztf_fink_tns_labelled/all_nonIa.csv.gz",
)
LABELS = "ztf_fink_tns_labelled/objects.csv"


def default_model_path() -> Path:
    """The path of the shipped model file (raises :class:`DataNotFoundError` when the install
    lacks it)."""
    ref = resources.files("earlyia").joinpath(*PACKAGE_PATH)
    path = Path(str(ref))
    if not path.is_file():
        raise DataNotFoundError(
            f"{path}: the default model is not installed; give a model file with --model"
        )
    return path


def training_files(root: str | Path) -> list[Path]:
    """The labelled light-curve files and the labels file of the shipped model, under the shared
    data ``root``."""
    root = Path(root)
    files: list[Path] = []
    for pattern in INPUTS:
        found = sorted(root.glob(pattern))
        if not found:
            raise DataNotFoundError(
                f"{root / pattern}: no training file; set EARLYIA_DATA to the shared data directory"
            )
        files += found
    labels = root / LABELS
    if not labels.is_file():
        raise DataNotFoundError(
            f"{labels}: labels file not found; set EARLYIA_DATA to the shared data directory"
        )
    return [*files, labels]


def training_data_hash(files: Iterable[str | Path], root: str | Path) -> dict[str, Any]:
    """sha256 of each file (by its path relative to ``root``) and one sha256 over all of them."""
    root = Path(root)
    per_file: dict[str, str] = {}
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(block)
        per_file[Path(f).resolve().relative_to(root.resolve()).as_posix()] = h.hexdigest()
    total = hashlib.sha256()
    for name in sorted(per_file):
        total.update(f"{name}\t{per_file[name]}\n".encode())
    return {"files": per_file, "sha256": total.hexdigest()}


def shipped_recipe(size: dict[str, Any] | None = None) -> Recipe:
    """The ``early`` recipe as it is now, with ``size`` (default :data:`SIZE`) applied and the
    shipped model's folds: for the shipped model, what it must have been built with."""
    return Recipe.named("early").replace(**(SIZE if size is None else size), cv_folds=FOLDS)
