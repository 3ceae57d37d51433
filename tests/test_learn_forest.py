"""FastForest: the incrementally updated forest equals a refit from scratch, exactly."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score

import earlyia.learn.forest as forest_module
from earlyia.errors import ConfigError, InputError, ModelError
from earlyia.learn.forest import FastForest, resolve_max_features
from earlyia.learn.strategies import binary_entropy


def _assert_same_forest(a: FastForest, b: FastForest):
    ea, eb = a.to_ensemble().arrays(), b.to_ensemble().arrays()
    for k in ea:
        np.testing.assert_array_equal(ea[k], eb[k], err_msg=k)


def _grow(n, k, n_start, seed, ties, after_each=None):
    """A random 7-tree FastForest started on a few rows, then grown row by row; returns what the
    tests compare."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k))
    if ties:  # many repeated values, like features that fail and get a default value
        X = np.round(X)
    y = rng.random(n) < 0.4
    keys = rng.permutation(1000)[:n]
    order = rng.permutation(n)
    n_start = min(n_start, n)
    start, rest = order[:n_start], order[n_start:]
    inc = FastForest(n_estimators=7, random_state=seed % 97).fit(
        X[start], y[start], sample_keys=keys[start]
    )
    Xs = rng.normal(size=(50, k))
    inc.register_scored(Xs)
    for i in rest:
        inc.add_sample(keys[i], X[i], y[i])
        if after_each is not None:
            after_each(inc, Xs)
    return rng, X, y, keys, inc, Xs


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(4, 40),
    k=st.integers(1, 5),
    n_start=st.integers(1, 10),
    seed=st.integers(0, 2**31),
    ties=st.booleans(),
)
def test_incremental_equals_refit(n, k, n_start, seed, ties):
    rng, X, y, keys, inc, Xs = _grow(n, k, n_start, seed, ties)
    perm = rng.permutation(n)  # the refit sees the rows in another order
    ref = FastForest(n_estimators=7, random_state=seed % 97).fit(
        X[perm], y[perm], sample_keys=keys[perm]
    )
    _assert_same_forest(inc, ref)
    # the maintained predictions equal a fresh prediction of the same forest, exactly
    p, v, h = ref.committee_summary(Xs)
    np.testing.assert_array_equal(inc.scored_proba(), p)
    np.testing.assert_array_equal(inc.scored_votes(), v)
    np.testing.assert_array_equal(inc.scored_member_entropy(), h)
    np.testing.assert_allclose(inc.predict_proba(Xs)[:, 1], p, atol=1e-12)
    inc.release_scored()
    assert inc.scored_proba().shape == (0,)
    np.testing.assert_allclose(inc.predict_proba(Xs)[:, 1], p, atol=1e-12)


def _assert_scored_consistent(ff: FastForest, Xs: np.ndarray):
    """The maintained sums equal a fresh walk of every tree, exactly (fixed-point integer sums)."""
    p, v, h = ff.committee_summary(Xs.copy())  # a copy: a fresh walk, not the maintained sums
    np.testing.assert_array_equal(ff.scored_proba(), p)
    np.testing.assert_array_equal(ff.scored_votes(), v)
    np.testing.assert_array_equal(ff.scored_member_entropy(), h)


def test_rebuild_of_subtree_without_scored_rows_regression():
    """Regression: a leaf reached by no scored row was rebuilt into a split whose children reused
    freed nodes; they kept the segments of the nodes they used to be (here the one scored row's
    [0, 1)), so the next rebuild above them removed leaf values from rows they never had
    (maintained P = -1.0, fresh P = 0.0). Minimal case: 1 tree, 1 scored row, 12 rows."""
    X = np.array(
        [
            [1, 1],
            [2, 0],
            [-1, 0],
            [0, 0],
            [1, 1],
            [0, -1],
            [0, -2],
            [0, 1],
            [1, 1],
            [-1, 1],
            [1, 0],
            [0, -2],
        ],
        float,
    )
    y = np.array([0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0], bool)
    Xs = np.array([[0.45040473, 0.75625726]])
    ff = FastForest(n_estimators=1, random_state=651).fit(X[:1], y[:1]).register_scored(Xs)
    for i in range(1, len(X)):
        ff.add_sample(i, X[i], y[i])
        _assert_scored_consistent(ff, Xs)
    _assert_same_forest(ff, FastForest(n_estimators=1, random_state=651).fit(X, y))


@pytest.mark.parametrize("n, k, n_start, seed, ties", [(26, 3, 1, 1251, True)])
def test_incremental_scored_counterexample(n, k, n_start, seed, ties):
    """The Hypothesis counterexample of the regression above, checked after every added row."""
    _grow(n, k, n_start, seed, ties, after_each=_assert_scored_consistent)


def test_refit_keeps_registered_rows_consistent():
    """Regression: fit() on a forest with registered rows partitioned an all-zero permutation."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    y = rng.random(30) < 0.5
    Xs = rng.normal(size=(20, 3))
    ff = FastForest(n_estimators=5, random_state=0).fit(X[:10], y[:10]).register_scored(Xs)
    ff.fit(X, y)
    _assert_scored_consistent(ff, Xs)
    ff.add_samples(np.arange(30, 40), rng.normal(size=(10, 3)), rng.random(10) < 0.5)
    _assert_scored_consistent(ff, Xs)


def test_predictions_match_ensemble_and_trees():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    y = X[:, 0] + 0.5 * rng.normal(size=200) > 0
    ff = FastForest(n_estimators=25, random_state=1).fit(X, y)
    ens = ff.to_ensemble()
    ens.validate()
    Xt = rng.normal(size=(300, 6))
    np.testing.assert_allclose(ff.predict_proba(Xt), ens.predict_proba(Xt))
    # slow reference: walk every tree by hand
    F, T, L, R, V = ens.feature, ens.threshold, ens.left, ens.right, ens.value
    leaf_p = np.empty((ens.n_trees, len(Xt)))
    for t, r in enumerate(ens.roots):
        for i, x in enumerate(Xt):
            node = r
            while F[node] >= 0:
                node = L[node] if x[F[node]] <= T[node] else R[node]
            leaf_p[t, i] = V[node]
    p, v, h = ff.committee_summary(Xt)
    np.testing.assert_allclose(p, leaf_p.mean(0), atol=1e-12)
    np.testing.assert_allclose(v, (leaf_p > 0.5).mean(0))
    np.testing.assert_allclose(h, binary_entropy(leaf_p).mean(0), atol=1e-12)
    # trees are grown fully: training rows are fit (almost) perfectly
    assert (ff.predict(X) == y).mean() > 0.97


def test_probabilities_sane_vs_sklearn():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3300, 8))
    y = X[:, 0] + 0.6 * X[:, 1] + rng.normal(size=3300) > 0.8
    ff = FastForest(n_estimators=100, random_state=0).fit(X[:300], y[:300])
    rf = RandomForestClassifier(n_estimators=100, random_state=0).fit(X[:300], y[:300])
    a_ff = roc_auc_score(y[300:], ff.predict_proba(X[300:])[:, 1])
    a_rf = roc_auc_score(y[300:], rf.predict_proba(X[300:])[:, 1])
    assert abs(a_ff - a_rf) < 0.03, (a_ff, a_rf)


def test_trees_differ_and_seed_reproducible():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 5))
    y = rng.random(80) < 0.5
    a = FastForest(n_estimators=10, random_state=4).fit(X, y)
    b = FastForest(n_estimators=10, random_state=4).fit(X, y)
    c = FastForest(n_estimators=10, random_state=5).fit(X, y)
    _assert_same_forest(a, b)
    assert not np.array_equal(a.to_ensemble().feature, c.to_ensemble().feature)
    ea = a.to_ensemble()
    sizes = np.diff(np.r_[ea.roots, len(ea.feature)])
    assert len(set(sizes.tolist())) > 1  # bootstrap + feature draws make the trees differ


def test_errors_and_edge_cases():
    X = np.array([[0.0], [1.0], [2.0]])
    with pytest.raises(ModelError, match="not fitted"):
        FastForest().predict_proba(X)
    with pytest.raises(InputError, match="sample_keys"):
        FastForest(n_estimators=2).fit(X, [0, 1, 0], sample_keys=[1, 1, 2])
    ff = FastForest(n_estimators=3).fit(X, [False, True, True])
    with pytest.raises(InputError, match="already"):
        ff.add_sample(1, [5.0], True)
    with pytest.raises(InputError, match="features"):
        ff.add_samples([9], np.zeros((1, 2)), [True])
    with pytest.raises(InputError, match="boolean"):
        FastForest(n_estimators=2).fit(X, [0, 2, 1])
    with pytest.raises(ConfigError):
        resolve_max_features("cube", 4)
    one = FastForest(n_estimators=4).fit(X, [True, True, True])
    np.testing.assert_allclose(one.predict_proba(X)[:, 1], 1.0)
    assert resolve_max_features("sqrt", 12) == 3 and resolve_max_features(None, 5) == 5


def test_grows_arrays_beyond_initial_capacity():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(300, 3))
    y = rng.random(300) < 0.5  # pure noise: deep trees, many nodes
    inc = FastForest(n_estimators=5, random_state=0).fit(X[:2], y[:2])
    inc.add_samples(np.arange(2, 300), X[2:], y[2:])
    ref = FastForest(n_estimators=5, random_state=0).fit(X, y)
    _assert_same_forest(inc, ref)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), n_scored=st.integers(1, 700), committee_from=st.integers(0, 30))
def test_scored_bitsets_coarse_checkpoints(seed, n_scored, committee_from):
    """The registered rows' bitset index with prefix checkpoints far apart (block of several words,
    many tied values) keeps the maintained sums exactly equal to a fresh walk, whenever the vote
    and entropy sums start being tracked."""
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(size=(40, 3)) * 2)
    y = rng.random(40) < 0.4
    Xs = np.round(rng.normal(size=(n_scored, 3)) * 2) / 2
    with (
        pytest.MonkeyPatch.context() as mp
    ):  # a tiny memory budget: prefix checkpoints as sparse as possible
        mp.setattr(forest_module, "_PREFIX_BYTES", 1)
        ff = (
            FastForest(n_estimators=6, random_state=seed % 89).fit(X[:5], y[:5]).register_scored(Xs)
        )
    assert ff._block > 64 or n_scored < 64
    for i in range(5, 40):
        ff.add_sample(i, X[i], y[i])
        if i - 5 == committee_from:
            ff.scored_votes()  # turns on the maintenance of votes and entropies
    _assert_scored_consistent(ff, Xs)
    _assert_same_forest(ff, FastForest(n_estimators=6, random_state=seed % 89).fit(X, y))
