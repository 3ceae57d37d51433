"""FastForest: a random forest for the active-learning loop (placeholder implementation: API stable).

This first version refits a scikit-learn forest when samples are added; the exact incremental
numba forest replaces it behind the same API.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier

from earlyia.learn.strategies import binary_entropy
from earlyia.score.trees import TreeEnsemble


class FastForest(ClassifierMixin, BaseEstimator):
    def __init__(self, n_estimators: int = 1000, max_features="sqrt", random_state=42):
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.random_state = random_state

    def fit(self, X, y, sample_keys=None):
        self.X_ = np.asarray(X, dtype=np.float64).copy()
        self.y_ = np.asarray(y).astype(bool).copy()
        self.keys_ = np.arange(len(self.y_)) if sample_keys is None else np.asarray(sample_keys).copy()
        self.classes_ = np.array([False, True])
        self.n_features_in_ = self.X_.shape[1]
        self._refit()
        return self

    def _refit(self):
        rf = RandomForestClassifier(self.n_estimators, max_features=self.max_features, random_state=self.random_state)
        rf.fit(self.X_, self.y_)
        self.ensemble_ = TreeEnsemble.from_sklearn(rf, positive_class=True) if len(rf.classes_) == 2 else None
        self._const = bool(rf.classes_[0])
        if getattr(self, "scored_X_", None) is not None:
            self._score()

    def to_ensemble(self) -> TreeEnsemble:
        return self.ensemble_

    def predict_proba(self, X):
        X = np.asarray(X, dtype=np.float64)
        if self.ensemble_ is None:
            p = np.full(len(X), 1.0 if self._const else 0.0)
            return np.column_stack([1 - p, p])
        return self.ensemble_.predict_proba(X)

    def predict(self, X):
        return self.predict_proba(X)[:, 1] > 0.5

    def register_scored(self, X_all):
        self.scored_X_ = np.ascontiguousarray(X_all, dtype=np.float64)
        self._score()
        return self

    def _score(self):
        self._p = self.predict_proba(self.scored_X_)[:, 1]
        self._v = (self._p > 0.5).astype(float)
        self._h = binary_entropy(self._p)

    def add_samples(self, keys, X, y):
        self.X_ = np.vstack([self.X_, np.asarray(X, dtype=np.float64).reshape(-1, self.n_features_in_)])
        self.y_ = np.concatenate([self.y_, np.asarray(y).astype(bool).ravel()])
        self.keys_ = np.concatenate([self.keys_, np.atleast_1d(keys)])
        self._refit()
        return self

    def add_sample(self, key, x, y):
        return self.add_samples([key], np.asarray(x).reshape(1, -1), [y])

    def scored_proba(self):
        return self._p.copy()

    def scored_votes(self):
        return self._v.copy()

    def scored_member_entropy(self):
        return self._h.copy()
