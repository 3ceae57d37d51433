"""Tree ensembles as flat arrays: one format for our forests, scikit-learn forests and Fink's models.

A :class:`TreeEnsemble` is plain numeric arrays (no code), so it is safe to store and fast to
evaluate with one compiled loop. Convention (scikit-learn's): at an internal node go left when
``x[feature] <= threshold``; a leaf has ``feature == -1`` and ``value`` = the probability of the
positive class; the ensemble's probability is the mean over trees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from earlyia.errors import FeatureMismatchError, ModelError


@dataclass(frozen=True)
class TreeEnsemble:
    feature: np.ndarray  # int32 per node, -1 at leaves
    threshold: np.ndarray  # float64 per node
    left: np.ndarray  # int32 absolute index of the left child, -1 at leaves
    right: np.ndarray  # int32 absolute index of the right child, -1 at leaves
    value: np.ndarray  # float64 per node: P(positive) of the training samples reaching it
    roots: np.ndarray  # int64 node index of each tree's root
    n_features: int

    @property
    def n_trees(self) -> int:
        return len(self.roots)

    def validate(self) -> None:
        """Refuse arrays that would index out of bounds (e.g. a corrupted file)."""
        n = len(self.feature)
        arrays = (self.threshold, self.left, self.right, self.value)
        if any(len(a) != n for a in arrays):
            raise ModelError("tree arrays have different lengths")
        internal = self.feature >= 0
        if (self.feature[internal] >= self.n_features).any():
            raise ModelError("a node splits on a feature beyond n_features")
        for child in (self.left, self.right):
            if ((child[internal] < 0) | (child[internal] >= n)).any():
                raise ModelError("a node points to a child outside the tree arrays")
        if len(self.roots) and ((self.roots < 0) | (self.roots >= n)).any():
            raise ModelError("a tree root is outside the tree arrays")

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``(n, 2)`` probabilities of (negative, positive), like scikit-learn."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise FeatureMismatchError(f"X has shape {X.shape}; the ensemble expects {self.n_features} features")
        p = _predict(X, self.feature, self.threshold, self.left, self.right, self.value, self.roots)
        return np.column_stack([1.0 - p, p])

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "feature": self.feature,
            "threshold": self.threshold,
            "left": self.left,
            "right": self.right,
            "value": self.value,
            "roots": self.roots,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_features: int) -> TreeEnsemble:
        ens = cls(
            feature=np.asarray(arrays["feature"], np.int32),
            threshold=np.asarray(arrays["threshold"], np.float64),
            left=np.asarray(arrays["left"], np.int32),
            right=np.asarray(arrays["right"], np.int32),
            value=np.asarray(arrays["value"], np.float64),
            roots=np.asarray(arrays["roots"], np.int64),
            n_features=int(n_features),
        )
        ens.validate()
        return ens

    @classmethod
    def from_sklearn(cls, forest, positive_class=True) -> TreeEnsemble:
        """Flatten a fitted scikit-learn tree ensemble classifier (RandomForest/ExtraTrees)."""
        classes = list(forest.classes_)
        if positive_class not in classes:
            raise ModelError(f"positive class {positive_class!r} not among the model's classes {classes}")
        k = classes.index(positive_class)
        feats, thrs, lefts, rights, values, roots = [], [], [], [], [], []
        base = 0
        for est in forest.estimators_:
            t = est.tree_
            roots.append(base)
            leaf = t.children_left < 0
            feats.append(np.where(leaf, -1, t.feature).astype(np.int32))
            thrs.append(t.threshold.astype(np.float64))
            lefts.append(np.where(leaf, -1, t.children_left + base).astype(np.int32))
            rights.append(np.where(leaf, -1, t.children_right + base).astype(np.int32))
            v = t.value[:, 0, :].astype(np.float64)
            values.append(v[:, k] / v.sum(axis=1))
            base += t.node_count
        return cls(
            feature=np.concatenate(feats),
            threshold=np.concatenate(thrs),
            left=np.concatenate(lefts),
            right=np.concatenate(rights),
            value=np.concatenate(values),
            roots=np.asarray(roots, np.int64),
            n_features=int(forest.n_features_in_),
        )


@numba.njit(cache=True, nogil=True)
def _predict(X, feature, threshold, left, right, value, roots):
    n = X.shape[0]
    out = np.zeros(n)
    for r in range(roots.shape[0]):
        root = roots[r]
        for i in range(n):
            node = root
            while feature[node] >= 0:
                if X[i, feature[node]] <= threshold[node]:
                    node = left[node]
                else:
                    node = right[node]
            out[i] += value[node]
    if roots.shape[0] > 0:
        out /= roots.shape[0]
    return out
