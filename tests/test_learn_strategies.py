"""Template tests every registered strategy must pass (parametrised over the registry)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from earlyia.errors import ConfigError, InputError
from earlyia.learn import run_active_learning
from earlyia.learn.forest import FastForest
from earlyia.learn.strategies import (
    STRATEGIES,
    BootstrapCommittee,
    PoolPredictions,
    binary_entropy,
    committee_summary,
    get_strategy,
    select_top,
)

NAMES = sorted(STRATEGIES)


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = X[:, 0] + 0.8 * rng.normal(size=n) > 0.3
    return X, y


@pytest.fixture(scope="module")
def fitted():
    X, y = _data()
    return RandomForestClassifier(n_estimators=15, random_state=0).fit(X[:60], y[:60]), X[60:]


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_indices_and_shapes(name, fitted):
    clf, X_pool = fitted
    s = get_strategy(name)
    a, sa = s(clf, X_pool, n_instances=5, random_state=7)
    b, sb = s(clf, X_pool, n_instances=5, random_state=7)
    np.testing.assert_array_equal(sa, sb)
    np.testing.assert_array_equal(a, b)
    assert sa.shape == (len(X_pool),) and sa.dtype == np.float64
    assert len(a) == 5 and len(np.unique(a)) == 5
    assert a.min() >= 0 and a.max() < len(X_pool)


@pytest.mark.parametrize("name", NAMES)
def test_excluded_budget_and_small_pool(name, fitted):
    clf, X_pool = fitted
    s = get_strategy(name)
    rng = np.random.default_rng(3)
    exclude = rng.random(len(X_pool)) < 0.5
    idx, _ = s(clf, X_pool, n_instances=20, random_state=1, exclude=exclude)
    assert len(idx) == 20 and not exclude[idx].any()
    cost = rng.uniform(0.5, 3.0, len(X_pool))
    idx, _ = s(clf, X_pool, n_instances=50, random_state=1, cost=cost, budget=4.0)
    assert 1 <= len(idx) <= 50 and cost[idx].sum() <= 4.0 + 1e-9
    small = X_pool[:3]
    idx, sc = s(clf, small, n_instances=3, random_state=1)
    assert sorted(idx.tolist()) == [0, 1, 2] and sc.shape == (3,)
    with pytest.raises(ConfigError, match=r"pool size \(3 candidates\), got 10"):
        s(clf, small, n_instances=10, random_state=1)


@pytest.mark.parametrize("name", NAMES)
def test_cached_predictions_give_the_same_choice(name):
    """The strategy sees the same numbers through PoolPredictions as through the forest itself."""
    X, y = _data()
    ff = FastForest(n_estimators=20, random_state=2).fit(X[:50], y[:50])
    X_pool = X[50:]
    ff.register_scored(X_pool)
    cached = PoolPredictions(
        X_pool, ff.scored_proba(), ff.scored_votes(), ff.scored_member_entropy()
    )
    a, sa = get_strategy(name)(ff, X_pool, n_instances=4, random_state=5)
    b, sb = get_strategy(name)(cached, X_pool, n_instances=4, random_state=5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(sa, sb, atol=1e-12)
    with pytest.raises(InputError, match="pool array"):
        cached.predict_proba(X_pool.copy())


@pytest.mark.parametrize("name", NAMES)
def test_loop_never_requeries(name):
    X, y = _data(300, seed=4)
    res = run_active_learning(
        X,
        y,
        strategy=name,
        classifier=FastForest(n_estimators=10, random_state=0),
        n_loops=6,
        batch_size=3,
        random_state=11,
    )
    rows = res.training_indices()
    assert len(np.unique(rows)) == len(rows) == 10 + 18
    assert not np.isin(np.concatenate(res.queried), res.initial).any()


def test_uncertainty_order_and_committee():
    X, y = _data()
    clf = RandomForestClassifier(n_estimators=30, random_state=0).fit(X[:80], y[:80])
    p = clf.predict_proba(X)[:, 1]
    idx, _ = get_strategy("uncertainty")(clf, X, n_instances=10, random_state=0)
    assert np.abs(p[idx] - 0.5).max() <= np.sort(np.abs(p - 0.5))[9] + 1e-12
    mean_p, votes, h = committee_summary(clf, X)
    trees = np.stack([t.predict_proba(X)[:, 1] for t in clf.estimators_])
    np.testing.assert_allclose(mean_p, p, atol=1e-12)
    np.testing.assert_allclose(votes, (trees > 0.5).mean(0))
    np.testing.assert_allclose(h, binary_entropy(trees).mean(0))
    bc = BootstrapCommittee(LogisticRegression(), n_members=5, random_state=0).fit(X[:80], y[:80])
    assert len(bc.estimators_) == 5 and committee_summary(bc, X)[0].shape == (len(X),)
    with pytest.raises(InputError, match="BootstrapCommittee"):
        committee_summary(LogisticRegression().fit(X[:80], y[:80]), X)


def test_diverse_batch_is_not_near_duplicates():
    X, y = _data()
    clf = RandomForestClassifier(n_estimators=30, random_state=0).fit(X[:80], y[:80])
    # many exact duplicates of the most uncertain row: a diverse batch takes it at most once
    p = clf.predict_proba(X)[:, 1]
    j = int(np.argmin(np.abs(p - 0.5)))
    X_pool = np.vstack([np.repeat(X[j : j + 1], 30, axis=0), X[80:]])
    idx, _ = get_strategy("diverse_uncertainty")(clf, X_pool, n_instances=5, random_state=0)
    assert (idx < 30).sum() <= 1
    idx_u, _ = get_strategy("uncertainty")(clf, X_pool, n_instances=5, random_state=0)
    assert (idx_u < 30).sum() >= 3  # plain uncertainty happily takes the copies


def test_select_top_errors_and_registry():
    with pytest.raises(ConfigError):
        select_top(np.ones(3), 0)
    with pytest.raises(InputError, match="cost"):
        select_top(np.ones(3), 1, cost=np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ConfigError, match="unknown strategy"):
        get_strategy("nope")


class _FixedProba:
    """A 'classifier' whose P(positive) for pool row i is p[i] (X_pool holds the row numbers)."""

    classes_ = np.array([False, True])

    def __init__(self, p):
        self.p = np.asarray(p, np.float64)

    def predict_proba(self, X):
        p = self.p[np.asarray(X, np.int64)[:, 0]]
        return np.column_stack([1.0 - p, p])


@settings(max_examples=60, deadline=None)
@given(
    votes=st.lists(st.integers(0, 50), min_size=3, max_size=60),
    k=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_binary_uncertainty_family_picks_the_same_levels(votes, k, seed):
    """For two classes, entropy, margin and least confident rank the pool like |p - 0.5|: with
    forest-like probabilities (vote fractions, many exact ties) each picks rows of the same
    uncertainty levels, so their active-learning runs are uncertainty sampling up to the
    tie-break (why the README runs only one of them)."""
    p = np.asarray(votes, np.float64) / 50.0
    X = np.arange(len(p))[:, None]
    clf = _FixedProba(p)
    k = min(k, len(p))
    level = np.round(np.abs(p - 0.5), 9)
    ref, _ = get_strategy("uncertainty")(clf, X, n_instances=k, random_state=seed)
    for name in ("entropy", "margin", "least_confident"):
        idx, _ = get_strategy(name)(clf, X, n_instances=k, random_state=seed)
        assert sorted(level[idx]) == sorted(level[ref]), name
