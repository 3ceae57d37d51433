"""Tree ensembles as flat arrays: one format for our forests, scikit-learn forests and Fink's
models.

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

    #: Names of the arrays (:meth:`arrays`, the members of a model file's ``trees.npz``).
    ARRAYS = ("feature", "threshold", "left", "right", "value", "roots")

    @property
    def n_trees(self) -> int:
        return len(self.roots)

    def validate(self) -> None:
        """Refuse arrays that are not a forest of proper binary trees whose nodes hold
        probabilities.

        Why: a model file comes from anywhere, and the compiled loop of :meth:`predict_proba` trusts
        the arrays (no bounds checks): a child index out of range reads foreign memory, a cycle
        never ends, a leaf value of 7.5 or NaN gives scores no threshold means anything for. Checked
        here (vectorised, in a few passes over the arrays): every array one-dimensional and of the
        same length; a leaf has ``feature == -1`` and children ``-1``, an internal node a feature in
        ``[0, n_features)``, a finite threshold and two children inside the arrays; every value in
        [0, 1]; at least one tree, every root inside the arrays; and from the roots every node is
        reached exactly once (no cycle, no node shared by two parents or two trees, no node outside
        every tree).
        """
        arrays = self.arrays()
        for name, a in arrays.items():
            if a.ndim != 1:
                raise ModelError(
                    f"tree array {name!r} has shape {a.shape}; tree arrays are one-dimensional"
                )
        n = len(self.feature)
        lengths = {name: len(a) for name, a in arrays.items() if name != "roots"}
        if len(set(lengths.values())) != 1:
            raise ModelError(
                f"tree arrays have different lengths {lengths}; each holds one entry per node"
            )
        if n > np.iinfo(np.int32).max:
            raise ModelError(f"{n} nodes: more than 32-bit child indices can address")
        if self.n_features < 1:
            raise ModelError(
                f"the ensemble declares {self.n_features} features; a forest needs at least one"
            )
        if len(self.roots) == 0:
            raise ModelError("the ensemble has no trees")
        leaf = self.feature == -1
        internal = self.feature >= 0
        _refuse(
            ~(leaf | internal),
            "node {i} has feature {v}: -1 marks a leaf, 0 and above a split",
            self.feature,
        )
        _refuse(
            internal & (self.feature >= self.n_features),
            f"node {{i}} splits on feature {{v}}, beyond the model's {self.n_features} features",
            self.feature,
        )
        for name, child in (("left", self.left), ("right", self.right)):
            _refuse(
                internal & ((child < 0) | (child >= n)),
                f"node {{i}} points to {name} child {{v}}, outside the {n} tree nodes",
                child,
            )
            _refuse(
                leaf & (child != -1),
                f"leaf node {{i}} has a {name} child {{v}}; a leaf's children are -1",
                child,
            )
        with np.errstate(invalid="ignore"):
            _refuse(
                internal & ~np.isfinite(self.threshold),
                "node {i} has threshold {v}; split thresholds are finite",
                self.threshold,
            )
            _refuse(
                ~((self.value >= 0.0) & (self.value <= 1.0)),
                "node {i} holds value {v}; a node's value is a probability in [0, 1]",
                self.value,
            )
        _refuse(
            (self.roots < 0) | (self.roots >= n),
            f"tree {{i}} has root {{v}}, outside the {n} tree nodes",
            self.roots,
        )
        problem = _structure_problem(self.feature, self.left, self.right, self.roots)
        if problem:
            raise ModelError(problem)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``(n, 2)`` probabilities of (negative, positive), like scikit-learn."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise FeatureMismatchError(
                f"X has shape {X.shape}; the ensemble expects {self.n_features} features"
            )
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
        """An ensemble from its flat arrays, validated (:meth:`validate`); index arrays must hold
        integers that fit the stored dtype, the others real numbers."""
        missing = [k for k in _DTYPES if k not in arrays]
        if missing:
            raise ModelError(f"tree arrays {missing} are missing")
        out = {}
        for name, dtype in _DTYPES.items():
            a = np.asarray(arrays[name])
            kinds = "iu" if np.dtype(dtype).kind == "i" else "iuf"
            if a.dtype.kind not in kinds:
                raise ModelError(
                    f"tree array {name!r} has dtype {a.dtype}; expected "
                    f"{'integers' if kinds == 'iu' else 'real numbers'}"
                )
            if kinds == "iu" and a.size:
                info = np.iinfo(dtype)
                lo, hi = int(a.min()), int(a.max())
                if lo < info.min or hi > info.max:
                    raise ModelError(
                        f"tree array {name!r} holds {lo if lo < info.min else hi}, beyond "
                        f"{np.dtype(dtype)}"
                    )
            out[name] = np.asarray(a, dtype)
        ens = cls(**out, n_features=int(n_features))
        ens.validate()
        return ens

    @classmethod
    def from_sklearn(cls, forest, positive_class=True) -> TreeEnsemble:
        """Flatten a fitted scikit-learn tree ensemble classifier (RandomForest/ExtraTrees)."""
        classes = list(forest.classes_)
        if positive_class not in classes:
            raise ModelError(
                f"positive class {positive_class!r} not among the model's classes {classes}"
            )
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


#: Stored dtype of each tree array.
_DTYPES = {
    "feature": np.int32,
    "threshold": np.float64,
    "left": np.int32,
    "right": np.int32,
    "value": np.float64,
    "roots": np.int64,
}


def _refuse(bad: np.ndarray, message: str, values: np.ndarray) -> None:
    """Raise ModelError with ``message`` about the first index where ``bad`` holds (``{i}``, its
    value ``{v}``)."""
    if bad.any():
        i = int(np.argmax(bad))
        raise ModelError(message.format(i=i, v=values[i]))


def _structure_problem(
    feature: np.ndarray, left: np.ndarray, right: np.ndarray, roots: np.ndarray
) -> str | None:
    """Why the nodes do not form proper trees, or None: every node must be a root or the child of
    exactly one internal node, and climbing from any node by parents must end at a root (no cycle).

    Vectorised. Once every node has exactly one parent (or is a root), a forest whose children all
    come after their parent (as scikit-learn and earlyia write them) has no cycle: climbing by
    parents lowers the index, so it ends, at a node without a parent, a root. Otherwise parents are
    climbed by pointer doubling (``parent = parent[parent]``), so the roots are reached after
    log2(depth) passes over the arrays. Child and root indices must already be in range.
    """
    n = len(feature)
    internal = np.flatnonzero(feature >= 0)
    kids_l, kids_r = left[internal], right[internal]
    times = np.bincount(np.concatenate([kids_l, kids_r, roots]), minlength=n)
    if (times > 1).any():
        i = int(np.argmax(times > 1))
        return (
            f"node {i} is reached {int(times[i])} times (as a root or a child): a cycle, or "
            "a node shared by two "
            "parents or two trees; not a tree"
        )
    if (times == 0).any():
        return f"node {int(np.argmax(times == 0))} belongs to no tree (neither a root nor a child)"
    if (kids_l > internal).all() and (kids_r > internal).all():
        return None
    parent = np.arange(n, dtype=np.int64)  # a root is its own parent
    parent[kids_l] = internal
    parent[kids_r] = internal
    for _ in range(n.bit_length() + 1):
        up = parent[parent]
        if np.array_equal(up, parent):
            break
        parent = up
    is_root = np.zeros(n, bool)
    is_root[roots] = True
    lost = ~is_root[parent]
    if lost.any():
        return f"node {int(np.argmax(lost))} lies on a cycle that no root reaches: not a tree"
    return None


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
