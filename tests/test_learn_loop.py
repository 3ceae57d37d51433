"""The loop, its two protocols and the result object."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier

from earlyia.errors import ConfigError, InputError
from earlyia.learn import (
    ALResult,
    FastForest,
    Protocol,
    fink,
    get_protocol,
    honest,
    run_active_learning,
)
from earlyia.metrics import METRIC_NAMES, binary_metrics


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = X[:, 0] + 0.7 * rng.normal(size=n) > 0.6
    groups = np.arange(n) // 4
    nd = rng.integers(3, 9, n)
    return X, y, groups, nd


def test_fink_protocol_split():
    _, y, _, _ = _data()
    s = fink().split(y, random_state=3)
    assert len(s.initial) == 10 and y[s.initial].sum() == 5 and s.test is None
    assert len(np.intersect1d(s.initial, s.pool)) == 0 and len(s.initial) + len(s.pool) == len(y)
    np.testing.assert_array_equal(s.initial, fink().split(y, random_state=3).initial)


def test_honest_protocol_split_by_object():
    _, y, groups, _ = _data()
    s = honest(test_fraction=0.3).split(y, groups, random_state=1)
    assert not np.isin(groups[s.test], groups[np.r_[s.initial, s.pool]]).any()
    assert 0.25 < len(s.test) / len(y) < 0.35
    with pytest.raises(InputError, match="groups"):
        honest().split(y, groups[:-1])
    with pytest.raises(ConfigError):
        Protocol(name="other")
    with pytest.raises(InputError, match="positive"):
        fink().split(np.zeros(20, bool))


def test_honest_loop_never_queries_test_and_records_protocol():
    X, y, groups, nd = _data()
    res = run_active_learning(
        X,
        y,
        protocol="honest",
        groups=groups,
        n_detections=nd,
        n_loops=8,
        batch_size=2,
        classifier=FastForest(n_estimators=10, random_state=0),
        random_state=2,
        ids=groups * 10,
    )
    assert isinstance(res, ALResult) and res.protocol == "honest"
    assert not np.isin(res.training_indices(), res.test).any()
    assert not np.isin(groups[res.training_indices()], groups[res.test]).any()
    assert list(res.metrics["loop"]) == list(range(9))
    assert list(res.metrics["n_labels"]) == [10 + 2 * i for i in range(9)]
    assert set(METRIC_NAMES) <= set(res.metrics.columns)
    assert (res.metrics["n"] == len(res.test)).all()  # fixed test set
    np.testing.assert_array_equal(res.queried_ids[0], groups[res.queried[0]] * 10)
    # final metrics are the metrics of the stored final probabilities
    m = binary_metrics(y[res.final_test], res.final_proba)
    assert m["fom"] == pytest.approx(res.final()["fom"])
    assert set(res.early_metrics["n_detections"]) == set(nd[res.test].tolist())
    assert res.config["protocol"]["name"] == "honest" and res.config["batch_size"] == 2


def test_fink_test_is_the_complement():
    X, y, _, _ = _data()
    res = run_active_learning(
        X, y, n_loops=5, classifier=FastForest(n_estimators=5, random_state=0), random_state=0
    )
    assert list(res.metrics["n"]) == [len(y) - 10 - i for i in range(6)]
    assert res.config["protocol"]["name"] == "fink" and res.test is None
    # the final forest is usable as an estimator and was trained on exactly the labelled rows
    ref = FastForest(n_estimators=5, random_state=0).fit(
        X[res.training_indices()], y[res.training_indices()], sample_keys=res.training_indices()
    )
    np.testing.assert_allclose(res.classifier.predict_proba(X), ref.predict_proba(X), atol=1e-12)


def test_incremental_path_equals_generic_path():
    """Same forest either way: FastForest refit every loop (generic) vs updated (incremental)."""
    X, y, _, _ = _data(300)
    kw = dict(strategy="uncertainty", n_loops=12, random_state=5)
    fast = run_active_learning(X, y, classifier=FastForest(n_estimators=15, random_state=1), **kw)
    assert fast.config["incremental"]
    slow = run_active_learning(
        X, y, classifier=_NoIncremental(n_estimators=15, random_state=1), **kw
    )
    assert not slow.config["incremental"]
    for a, b in zip(fast.queried, slow.queried, strict=True):
        np.testing.assert_array_equal(a, b)
    cols = ["accuracy", "efficiency", "purity", "fom", "roc_auc"]
    np.testing.assert_allclose(
        fast.metrics[cols].to_numpy(), slow.metrics[cols].to_numpy(), atol=1e-9
    )


class _NoIncremental(ClassifierMixin, BaseEstimator):
    """A FastForest seen only through fit/predict_proba (keys = positions in the training
    subset)."""

    def __init__(self, n_estimators=15, random_state=1):
        self.n_estimators = n_estimators
        self.random_state = random_state

    def fit(self, X, y):
        self.inner_ = FastForest(self.n_estimators, random_state=self.random_state).fit(
            X, y, sample_keys=self._keys(X)
        )
        self.classes_ = self.inner_.classes_
        return self

    def _keys(self, X):
        # the loop's incremental path keys rows by their index in the full X
        return np.array([_ROW_OF[tuple(r)] for r in X])

    def predict_proba(self, X):
        return self.inner_.predict_proba(X)


X0, _, _, _ = _data(300)
_ROW_OF = {tuple(r): i for i, r in enumerate(X0)}


def test_generic_classifier_and_seed_reproducibility():
    X, y, _, _ = _data(300)
    kw = dict(
        strategy="bald",
        n_loops=4,
        batch_size=2,
        classifier=RandomForestClassifier(n_estimators=10, random_state=0),
    )
    a = run_active_learning(X, y, random_state=9, **kw)
    b = run_active_learning(X, y, random_state=9, **kw)
    np.testing.assert_array_equal(a.training_indices(), b.training_indices())
    assert a.config["classifier"] == "RandomForestClassifier" and not a.config["incremental"]


def test_budget_and_errors():
    X, y, _, _ = _data(300)
    cost = np.where(X[:, 1] > 0, 1.0, 3.0)
    res = run_active_learning(
        X,
        y,
        strategy="uncertainty_per_cost",
        cost=cost,
        budget=3.0,
        n_loops=5,
        batch_size=3,
        classifier=FastForest(n_estimators=5),
        random_state=0,
    )
    for q in res.queried:
        assert cost[q].sum() <= 3.0
    assert res.metrics["cost_spent"].iloc[-1] == pytest.approx(
        sum(cost[q].sum() for q in res.queried)
    )
    with pytest.raises(InputError, match="y has shape"):
        run_active_learning(X, y[:-1])
    with pytest.raises(InputError, match="non-finite"):
        run_active_learning(np.where(X > 2, np.nan, X), y)
    with pytest.raises(ConfigError, match="unknown strategy"):
        run_active_learning(X, y, strategy="x", n_loops=1)
    assert get_protocol("fink", n_loops=3).n_loops == 3
