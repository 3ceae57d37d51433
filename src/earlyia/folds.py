"""Cross-validation folds that never split an object: one definition for training, scripts and
benchmarks.

Every alert of an object lands in the same fold (an object seen in training would make its other
alerts look easy), and the folds are stratified on the object's label so each holds the class mix of
the whole set.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


def object_folds(
    labels: np.ndarray, n_folds: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(training, held-out) positions of objects, ``n_folds`` folds stratified on ``labels`` (one
    per object).

    The split is reproducible: the same labels, fold count and seed give the same folds.
    """
    labels = np.asarray(labels)
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    positions = np.arange(len(labels))
    yield from StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(
        positions, labels, positions
    )


def fold_of_rows(
    groups: np.ndarray, labels: np.ndarray, n_folds: int, seed: int, rows: np.ndarray | None = None
) -> np.ndarray:
    """Fold index (0 to ``n_folds`` - 1) of every row, its object's fold; objects split as
    :func:`object_folds`.

    ``groups`` is the object of each row and ``labels`` its label (constant within an object). Only
    the objects of ``rows`` (a boolean mask; all rows by default) are split; the rows of other
    objects get -1 (they train in every fold: generated impostors, augmented-only views).
    """
    groups = np.asarray(groups)
    labels = np.asarray(labels)
    rows = np.ones(len(groups), bool) if rows is None else np.asarray(rows, bool)
    objects, first = np.unique(groups[rows], return_index=True)
    object_labels = labels[rows][first]
    fold = np.full(len(objects), -1, np.int64)
    for j, (_train, test) in enumerate(object_folds(object_labels, n_folds, seed)):
        fold[test] = j
    if len(objects) == 0:
        return np.full(len(groups), -1, np.int64)
    pos = np.clip(np.searchsorted(objects, groups), 0, len(objects) - 1)
    return np.where(objects[pos] == groups, fold[pos], -1)
