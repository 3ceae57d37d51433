"""FastForest: an exact incremental random forest for the active-learning loop.

Fink's loop refits a 1000-tree forest on ~310 rows and predicts a ~20 000-row pool at every one of
300 loops (~4 s per loop). Adding one labelled row changes few trees and, in those, few nodes, so
this forest updates itself instead, and gives the *same* forest as a refit from scratch:

- trees are grown fully like scikit-learn's defaults (gini, ``max_features="sqrt"``, one sample per
  leaf, thresholds at midpoints between adjacent distinct values, constant features skipped);
- bootstrap by online bagging: each training row gets a Poisson(1) weight per tree that is a pure
  function of (tree seed, row key), so ~37 % of the trees do not see a new row at all;
- the features tried at a node come from a permutation drawn from (tree seed, node path), so a
  tree is a deterministic function of its weighted rows; adding a row only changes the nodes on
  its path: walking from the root, the best split is recomputed; while unchanged the walk
  descends, where it changes (or at a leaf) only that subtree is rebuilt;
- predictions on registered rows (``register_scored``) are maintained incrementally as exact
  fixed-point sums over trees (bitwise equal to a fresh walk, whatever the update history): the
  rows reaching a rebuilt subtree are a bitset (AND of the split sets above it, each one a stored
  prefix bitset of a feature's sorted order plus a few bits), and only rows whose leaf terms
  change are updated (P = 0 leaves contribute nothing; P = 1 leaves only where they appear or
  disappear). Votes and entropies are maintained from their first request.

It is also an ordinary estimator: ``FastForest(n_estimators=1000, random_state=42).fit(X, y)
.predict_proba(X)``; ``to_ensemble()`` gives a :class:`~earlyia.model.trees.TreeEnsemble`.
The bootstrap differs from scikit-learn's (Poisson weights instead of n draws with replacement),
so forests are statistically, not bitwise, equivalent to ``RandomForestClassifier``.

Incremental API used by :func:`~earlyia.learn.loop.run_active_learning`:
``fit(X, y, sample_keys=...)``, ``register_scored(X_all)``, ``add_sample(key, x, y)`` /
``add_samples(keys, X, y)``, ``scored_proba()``, ``scored_votes()``, ``scored_member_entropy()``,
``committee_summary(X)``.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from earlyia.errors import ConfigError, InputError, ModelError
from earlyia.learn import _forest_kernels as kern
from earlyia.model.trees import TreeEnsemble

_NODE_ARRAYS = ("F", "T", "L", "R", "V", "K")
#: memory budget of the scored rows' prefix bitsets (bytes); sets the checkpoint spacing
_PREFIX_BYTES = 32 * 2**20


def resolve_max_features(max_features, n_features: int) -> int:
    """Number of non-constant features tried per node (scikit-learn's conventions)."""
    if max_features is None:
        return n_features
    if max_features == "sqrt":
        return max(1, int(math.sqrt(n_features)))
    if max_features == "log2":
        return max(1, int(math.log2(n_features)))
    if isinstance(max_features, float) and 0 < max_features <= 1:
        return max(1, int(max_features * n_features))
    if isinstance(max_features, int | np.integer) and max_features >= 1:
        return min(int(max_features), n_features)
    raise ConfigError(
        "max_features must be 'sqrt', 'log2', None, an int >= 1 or a float in (0, 1]; got "
        f"{max_features!r}"
    )


class FastForest(ClassifierMixin, BaseEstimator):
    """Random forest with exact incremental updates (see the module docstring).

    Args:
        n_estimators: number of trees (Fink: 1000).
        max_features: features tried per node: ``"sqrt"`` (default, as scikit-learn), ``"log2"``,
            an int, a float fraction or ``None`` (all).
        random_state: int seed (Fink: 42) or ``None``; the tree seeds derive from it.

    Always binary: ``classes_ == [False, True]``; y is bool (True = positive) or 0/1.
    """

    def __init__(self, n_estimators: int = 1000, max_features="sqrt", random_state=42):
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y, sample_keys=None):
        """Grow every tree from scratch. ``sample_keys`` (unique ints, default 0..n-1) identify
        the rows: a row's bootstrap weights depend on its key, so fitting the same keyed rows in
        any order, or adding them one by one, gives the same forest."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        y = self._check_y(y, len(X))
        if X.ndim != 2 or len(X) == 0:
            raise InputError(f"X must be a non-empty 2-d array, got shape {X.shape}")
        if not np.isfinite(X).all():
            raise InputError("X has non-finite values; impute or drop them before fitting")
        if self.n_estimators < 1:
            raise ConfigError(f"n_estimators must be >= 1, got {self.n_estimators}")
        keys = (
            np.arange(len(X), dtype=np.int64)
            if sample_keys is None
            else np.asarray(sample_keys, dtype=np.int64)
        )
        if keys.shape != (len(X),) or len(np.unique(keys)) != len(keys):
            raise InputError("sample_keys must be one unique integer per row of X")
        self.classes_ = np.array([False, True])
        self.n_features_in_ = X.shape[1]
        self.max_features_ = resolve_max_features(self.max_features, X.shape[1])
        rng = np.random.default_rng(self.random_state)
        self.tree_seeds_ = rng.integers(
            0, np.iinfo(np.int64).max, self.n_estimators, dtype=np.int64
        ).astype(np.uint64)
        cap_s = max(16, 2 * len(X))
        self._Xtr = np.zeros((cap_s, X.shape[1]))
        self._ytr = np.zeros(cap_s, np.int8)
        self._W = np.zeros((self.n_estimators, cap_s), np.uint8)
        self._n_s = 0
        self._key_index: dict[int, int] = {}
        self._store(keys, X, y)
        self._alloc_nodes(max(1024, self.n_estimators * (int(1.3 * len(X)) + 3)))
        self._roots = np.zeros(self.n_estimators, np.int64)
        old = getattr(self, "_Xs_src", None)
        self._set_scored(
            old if old is not None and old.shape[1] == X.shape[1] else np.zeros((0, X.shape[1]))
        )
        t = 0
        while t < self.n_estimators:
            t = kern.fit_trees(t, *self._train_args(), *self._tree_args(), *self._scored_args())
            if t < self.n_estimators:
                self._grow_nodes()
        self._ensemble = None
        #: counters of the incremental updates (see ``_forest_kernels.add_sample``)
        self.stats_ = np.zeros(9, np.int64)
        return self

    def _check_y(self, y, n: int) -> np.ndarray:
        y = np.asarray(y)
        if y.shape != (n,):
            raise InputError(f"y has shape {y.shape}; expected ({n},)")
        if y.dtype != bool and not np.isin(y, (0, 1)).all():
            raise InputError("y must be boolean (True = positive class) or 0/1")
        return y.astype(bool)

    def _store(self, keys, X, y) -> None:
        n_new = len(keys)
        for k in keys.tolist():
            if k in self._key_index:
                raise InputError(f"sample key {k} is already in the training set")
        need = self._n_s + n_new
        if need > len(self._ytr):
            cap = max(need, 2 * len(self._ytr))
            self._Xtr = np.vstack([self._Xtr, np.zeros((cap - len(self._Xtr), self._Xtr.shape[1]))])
            self._ytr = np.concatenate([self._ytr, np.zeros(cap - len(self._ytr), np.int8)])
            W = np.zeros((self.n_estimators, cap), np.uint8)
            W[:, : self._n_s] = self._W[:, : self._n_s]
            self._W = W
        a = self._n_s
        self._Xtr[a:need] = X
        self._ytr[a:need] = y
        kern.draw_weights(self.tree_seeds_, keys, self._W, a)
        for i, k in enumerate(keys.tolist()):
            self._key_index[k] = a + i
        self._n_s = need

    def _alloc_nodes(self, cap: int) -> None:
        self._F = np.full(cap, -1, np.int64)
        self._T = np.zeros(cap)
        self._L = np.full(cap, -1, np.int64)
        self._R = np.full(cap, -1, np.int64)
        self._V = np.zeros(cap)
        self._K = np.zeros(cap, np.uint64)
        self._free = np.zeros(cap, np.int64)
        self._meta = np.zeros(2, np.int64)

    def _grow_nodes(self) -> None:
        old = len(self._F)
        cap = 2 * old
        for name in _NODE_ARRAYS:
            a = getattr(self, "_" + name)
            b = np.zeros(cap, a.dtype)
            b[:old] = a
            setattr(self, "_" + name, b)
        free = np.zeros(cap, np.int64)
        free[:old] = self._free
        self._free = free

    def _train_args(self):
        # rows of the training set sorted by each feature (k, n_s): lets big nodes skip sorting
        gorder = np.ascontiguousarray(np.argsort(self._Xtr[: self._n_s], axis=0, kind="stable").T)
        return (
            self._Xtr,
            self._ytr,
            self._W,
            self._n_s,
            gorder,
            self.tree_seeds_,
            self.max_features_,
        )

    def _tree_args(self):
        return (
            self._roots,
            self._F,
            self._T,
            self._L,
            self._R,
            self._V,
            self._K,
            self._free,
            self._meta,
        )

    def _scored_args(self):
        return (
            self._svals,
            self._sord,
            self._pref,
            self._full,
            self._block,
            self._sp,
            self._sv,
            self._sh,
            self._track,
        )

    def _set_scored(self, X_all: np.ndarray) -> None:
        self._Xs_src = X_all
        n, k = X_all.shape
        nw = (n + 63) // 64
        # prefix bitsets every `block` rows of each feature's sorted order: k * (n / block) * nw
        # words
        block = 64 * max(1, math.ceil(k * (n / 64 + 1) * nw * 8 / _PREFIX_BYTES))
        self._block = block
        self._svals, self._sord, self._pref, self._full = kern.scored_index(
            np.ascontiguousarray(X_all.T), block
        )
        # fixed-point sums over trees (kern.FX_SCALE): exact integers, independent of the update
        # history
        self._sp = np.zeros(n, np.int64)
        self._sv = np.zeros(n, np.int64)
        self._sh = np.zeros(n, np.int64)
        self._track = (
            False  # votes and entropies are maintained once asked for (committee strategies)
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "_roots"):
            raise ModelError("this FastForest is not fitted yet: call fit(X, y) first")

    # ------------------------------------------------------------------ incremental API
    def register_scored(self, X_all) -> FastForest:
        """Register rows whose predictions are kept up to date by every ``add_sample``."""
        self._check_fitted()
        X_all = np.ascontiguousarray(X_all, dtype=np.float64)
        if X_all.ndim != 2 or X_all.shape[1] != self.n_features_in_:
            raise InputError(f"X_all has shape {X_all.shape}; expected (n, {self.n_features_in_})")
        if not np.isfinite(X_all).all():
            raise InputError("X_all has non-finite values")
        self._set_scored(X_all)
        self._assign(True, False)
        return self

    def _assign(self, do_p: bool, do_c: bool) -> None:
        kern.assign_all(
            self._roots,
            self._F,
            self._T,
            self._L,
            self._R,
            self._V,
            self._svals,
            self._sord,
            self._pref,
            self._full,
            self._block,
            self._sp,
            self._sv,
            self._sh,
            do_p,
            do_c,
        )

    def refresh_scored(self) -> FastForest:
        """Recompute the maintained sums from scratch (a consistency reset: the sums are exact
        integers, so the result equals what was maintained)."""
        self._check_fitted()
        self._assign(True, self._track)
        return self

    def release_scored(self) -> FastForest:
        """Forget the registered rows (their index: sorted columns and prefix bitsets, <= ~50
        MB)."""
        self._check_fitted()
        self._set_scored(np.zeros((0, self.n_features_in_)))
        return self

    def add_sample(self, key: int, x, y) -> FastForest:
        """Add one labelled row (``key`` unique, e.g. its row index in X_all); exact update."""
        return self.add_samples(
            np.array([key]), np.asarray(x, dtype=np.float64).reshape(1, -1), np.array([y])
        )

    def add_samples(self, keys, X, y) -> FastForest:
        """Add labelled rows one after the other (the result does not depend on their order)."""
        self._check_fitted()
        keys = np.asarray(keys, dtype=np.int64).ravel()
        X = np.ascontiguousarray(X, dtype=np.float64).reshape(len(keys), -1)
        if X.shape[1] != self.n_features_in_:
            raise InputError(f"X has {X.shape[1]} features; the forest has {self.n_features_in_}")
        if not np.isfinite(X).all():
            raise InputError("X has non-finite values")
        y = self._check_y(np.asarray(y).ravel(), len(keys))
        if len(np.unique(keys)) != len(keys):
            raise InputError("keys must be unique")
        for i in range(len(keys)):
            self._store(keys[i : i + 1], X[i : i + 1], y[i : i + 1])
            j = self._n_s - 1
            t = 0
            while t < self.n_estimators:
                t = kern.add_sample(
                    t, j, *self._train_args(), *self._tree_args(), *self._scored_args(), self.stats_
                )
                if t < self.n_estimators:
                    self._grow_nodes()
        self._ensemble = None
        return self

    def scored_proba(self) -> np.ndarray:
        """P(positive) of every registered row (mean over trees of the leaf probability)."""
        return self._from_fixed(self._sp)

    def _from_fixed(self, s: np.ndarray) -> np.ndarray:
        return s * (1.0 / kern.FX_SCALE) / self.n_estimators

    def _start_tracking(self) -> None:
        if not self._track:
            self._assign(False, True)
            self._track = True

    def scored_votes(self) -> np.ndarray:
        """Fraction of trees voting positive (leaf probability > 0.5) for every registered row.

        The first call turns on the maintenance of the vote and entropy sums, so a strategy that
        never asks for them does not pay for them."""
        self._start_tracking()
        return self._sv / self.n_estimators

    def scored_member_entropy(self) -> np.ndarray:
        """Mean over trees of the binary entropy (nats) of the leaf probability, per registered
        row."""
        self._start_tracking()
        return self._from_fixed(self._sh)

    @property
    def n_samples_(self) -> int:
        return self._n_s

    @property
    def sample_keys_(self) -> np.ndarray:
        keys = np.empty(self._n_s, np.int64)
        for k, i in self._key_index.items():
            keys[i] = k
        return keys

    # ------------------------------------------------------------------ estimator API
    def to_ensemble(self) -> TreeEnsemble:
        """The forest as a :class:`TreeEnsemble` (trees in depth-first pre-order)."""
        self._check_fitted()
        if getattr(self, "_ensemble", None) is None:
            n_live = int(self._meta[0] - self._meta[1])
            f, t, left, right, v, roots = kern.export(
                self._roots, self._F, self._T, self._L, self._R, self._V, n_live
            )
            self._ensemble = TreeEnsemble.from_arrays(
                {
                    "feature": f,
                    "threshold": t,
                    "left": left,
                    "right": right,
                    "value": v,
                    "roots": roots,
                },
                self.n_features_in_,
            )
        return self._ensemble

    def predict_proba(self, X) -> np.ndarray:
        return self.to_ensemble().predict_proba(X)

    def predict(self, X) -> np.ndarray:
        return self.predict_proba(X)[:, 1] > 0.5

    def committee_summary(self, X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean_p, vote_fraction, mean_tree_entropy)``: the trees are the bootstrap committee."""
        self._check_fitted()
        if X is getattr(self, "_Xs_src", None) and len(X):
            return self.scored_proba(), self.scored_votes(), self.scored_member_entropy()
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise InputError(f"X has shape {X.shape}; expected (n, {self.n_features_in_})")
        sp, sv, sh = kern.summary(X, self._roots, self._F, self._T, self._L, self._R, self._V)
        return self._from_fixed(sp), sv / self.n_estimators, self._from_fixed(sh)
