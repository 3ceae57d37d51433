"""Folds by object: no object on both sides, stratified, reproducible, and the rows follow their
object."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from earlyia.folds import fold_of_rows, object_folds


@given(st.lists(st.booleans(), min_size=10, max_size=80), st.integers(2, 5), st.integers(0, 10))
def test_object_folds_partition_the_objects(labels, k, seed):
    labels = np.array(labels)
    if min(labels.sum(), (~labels).sum()) < k:
        return  # stratification needs k of each class
    folds = list(object_folds(labels, k, seed))
    assert len(folds) == k
    held = np.concatenate([te for _, te in folds])
    assert sorted(held) == list(range(len(labels)))  # every object held out exactly once
    for tr, te in folds:
        assert not set(tr) & set(te)
        # stratified: each fold holds its share of positives, to one object
        assert abs(labels[te].sum() - labels.sum() / k) <= 1.0 + 1e-9
    again = list(object_folds(labels, k, seed))
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again, strict=True))


def test_rows_take_their_objects_fold_and_other_objects_train_everywhere():
    rng = np.random.default_rng(3)
    objects = np.array([f"o{i:02d}" for i in range(30)])
    labels = np.arange(30) % 3 == 0
    rows = rng.integers(0, 30, 400)
    groups, y = objects[rows], labels[rows]
    extra = np.array(["impostor"] * 7)
    groups = np.concatenate([groups, extra])
    y = np.concatenate([y, np.zeros(7, bool)])
    evaluated = np.concatenate([np.ones(400, bool), np.zeros(7, bool)])
    fold = fold_of_rows(groups, y, 3, seed=1, rows=evaluated)
    assert (fold[~evaluated] == -1).all()
    # a slow reference: the fold of each object from object_folds over the sorted object ids
    present = np.unique(groups[evaluated])
    obj_label = np.array([y[groups == o][0] for o in present])
    want = {}
    for j, (_tr, te) in enumerate(object_folds(obj_label, 3, 1)):
        for i in te:
            want[present[i]] = j
    assert [want[g] for g in groups[evaluated]] == fold[evaluated].tolist()


def test_fewer_than_two_folds_is_refused():
    with pytest.raises(ValueError, match="n_folds"):
        list(object_folds(np.array([True, False]), 1, 0))
