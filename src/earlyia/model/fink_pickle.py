"""Load Fink's published random forests (sha256-pinned scikit-learn pickles) as
:class:`TreeEnsemble`.

Unpickling runs code, so this is the ONLY place earlyia calls the pickle machinery, and only for
the exact files listed in :data:`PINNED_SHA256` (Fink's models shipped in fink-science 7.4.0; see
the PROVENANCE.md of the shared ``anchor_models_fink`` folder). The file is decompressed (xz),
hashed, refused unless the hash is pinned, and then read with a restricted unpickler that can
build only numpy arrays and placeholder objects for the few scikit-learn classes a forest
contains. The fitted trees' node arrays are captured from ``Tree.__setstate__`` and flattened into
a :class:`~earlyia.model.trees.TreeEnsemble`; no scikit-learn object is ever reconstructed, so
these old pickles load with any scikit-learn version (or none).
"""

from __future__ import annotations

import hashlib
import io
import lzma
import pickle
from pathlib import Path

import numpy as np

from earlyia.errors import DataNotFoundError, IntegrityError, ModelError
from earlyia.model.trees import TreeEnsemble

#: sha256 of the DECOMPRESSED pickles (anchor_models_fink/sha256sums.txt) -> file name.
PINNED_SHA256 = {
    digest: name
    for name, digest in (
        (
            "default-model_sigmoid.obj",
            "a3aa6d8c6259db80f2036108aa80e6f99026adee2bc9843618776e9ed89e9074",
        ),
        (
            "default-model_sigmoid_elasticc.obj",
            "196a3b6ea3b9afd13ba8b7573e536045dad89cfdb97f729e1d15b08bbea7f373",
        ),
        (
            "elasticc_rainbow_earlyIa_nometa.pkl",
            "4d47d168439da516d6f0cb86dad05d76bf1891a6eed9664494ad9d3758b851ad",
        ),
        (
            "model_20241122_wlimits.pkl",
            "810e85b0a735cc58aa12844e7eee532002afc994f3d06d4bca081a29f6bec03a",
        ),
    )
}
#: Feature names of Fink's ZTF sigmoid forests (the pickles store them as ``feature_names_in_``).
FINK_SIGMOID_FEATURES = (
    "a_g",
    "b_g",
    "c_g",
    "snratio_g",
    "mse_g",
    "nrise_g",
    "a_r",
    "b_r",
    "c_r",
    "snratio_r",
    "mse_r",
    "nrise_r",
)


class _Stub:
    """Stand-in for any allowed scikit-learn class: keeps the pickled state as a dict."""

    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        self.__dict__.update(state if isinstance(state, dict) else {"_state": state})


class _TreeShim:
    """Stand-in for ``sklearn.tree._tree.Tree``: captures the node record array and the values."""

    def __init__(self, *args):
        self._args = args

    def __setstate__(self, state):
        if not isinstance(state, dict) or "nodes" not in state or "values" not in state:
            raise ModelError("unexpected Tree state in the pickle (no 'nodes'/'values')")
        self.nodes = state["nodes"]
        self.values = np.asarray(state["values"], dtype=np.float64)
        self.n_features = int(self._args[0]) if self._args else -1


_SKLEARN_STUBS = {
    ("sklearn.ensemble._forest", "RandomForestClassifier"),
    ("sklearn.ensemble.forest", "RandomForestClassifier"),
    ("sklearn.tree._classes", "DecisionTreeClassifier"),
    ("sklearn.tree.tree", "DecisionTreeClassifier"),
}
_TREE_CLASSES = {("sklearn.tree._tree", "Tree")}
_NUMPY = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._mt19937", "MT19937"),
    ("numpy.random.mtrand", "RandomState"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _TREE_CLASSES:
            return _TreeShim
        if (module, name) in _SKLEARN_STUBS:
            return _Stub
        if (module, name) in _NUMPY:
            return _NUMPY_IMPL[name]
        raise ModelError(
            f"refusing to load {module}.{name}: not part of a scikit-learn random forest"
        )


def _reconstruct(cls, shape, dtype):
    if cls is not np.ndarray:
        raise ModelError("refusing to reconstruct a non-ndarray object")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise ModelError("refusing an object-dtype numpy scalar")
    return np.frombuffer(data, dtype=dtype, count=1)[0] if data is not None else dtype.type()


_NUMPY_IMPL = {
    "ndarray": np.ndarray,
    "dtype": np.dtype,
    "_reconstruct": _reconstruct,
    "scalar": _scalar,
    # the forest's random state is irrelevant for prediction: keep it as an inert stub
    "__randomstate_ctor": _Stub,
    "__bit_generator_ctor": _Stub,
    "MT19937": _Stub,
    "RandomState": _Stub,
}


def _read_pinned(path: Path) -> tuple[bytes, str]:
    if not path.exists():
        raise DataNotFoundError(f"{path}: Fink model file not found")
    raw = path.read_bytes()
    if path.suffix == ".xz" or raw[:6] == b"\xfd7zXZ\x00":
        try:
            raw = lzma.decompress(raw)
        except lzma.LZMAError as exc:
            raise IntegrityError(f"{path}: not a valid xz file ({exc})") from exc
    digest = hashlib.sha256(raw).hexdigest()
    if digest not in PINNED_SHA256:
        raise IntegrityError(
            f"{path}: sha256 {digest} is not one of the pinned Fink models "
            f"{sorted(PINNED_SHA256.values())}; "
            "refusing to unpickle it (pickles run code)"
        )
    return raw, PINNED_SHA256[digest]


def load_fink_model(path: str | Path, positive_class=True) -> TreeEnsemble:
    """A pinned Fink random forest as a :class:`TreeEnsemble` (P of ``positive_class``; Fink: True =
    SN Ia).

    Raises :class:`IntegrityError` for any file whose decompressed sha256 is not pinned, and
    :class:`ModelError` when the pinned pickle does not hold a forest of trees.
    """
    path = Path(path)
    raw, _name = _read_pinned(path)
    try:
        forest = _RestrictedUnpickler(io.BytesIO(raw)).load()
    except (pickle.UnpicklingError, AttributeError, EOFError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read the pinned pickle: {exc}") from exc
    state = getattr(forest, "__dict__", {})
    estimators = state.get("estimators_")
    classes = state.get("classes_")
    if not estimators or classes is None:
        raise ModelError(f"{path}: the pickle is not a fitted forest (no estimators_/classes_)")
    classes = list(np.asarray(classes).tolist())
    if positive_class not in classes:
        raise ModelError(
            f"{path}: positive class {positive_class!r} not among the model's classes {classes}"
        )
    k = classes.index(positive_class)
    n_features = int(state.get("n_features_in_", state.get("n_features_", -1)))
    feats, thrs, lefts, rights, values, roots = [], [], [], [], [], []
    base = 0
    for est in estimators:
        tree = getattr(est, "tree_", None)
        if not isinstance(tree, _TreeShim):
            raise ModelError(f"{path}: an estimator has no tree")
        nodes = tree.nodes
        left = np.asarray(nodes["left_child"], np.int64)
        right = np.asarray(nodes["right_child"], np.int64)
        leaf = left < 0
        v = tree.values[:, 0, :]
        total = v.sum(axis=1)
        frac = np.divide(
            v[:, k], total, out=np.zeros(len(total)), where=total > 0
        )  # counts -> class fractions
        roots.append(base)
        feats.append(np.where(leaf, -1, np.asarray(nodes["feature"], np.int64)).astype(np.int32))
        thrs.append(np.asarray(nodes["threshold"], np.float64))
        lefts.append(np.where(leaf, -1, left + base).astype(np.int32))
        rights.append(np.where(leaf, -1, right + base).astype(np.int32))
        values.append(frac)
        base += len(left)
    if n_features < 0:
        n_features = int(max(int(f.max()) for f in feats) + 1)
    return TreeEnsemble.from_arrays(
        {
            "feature": np.concatenate(feats),
            "threshold": np.concatenate(thrs),
            "left": np.concatenate(lefts),
            "right": np.concatenate(rights),
            "value": np.concatenate(values),
            "roots": np.asarray(roots, np.int64),
        },
        n_features,
    )


def fink_feature_names(path: str | Path) -> list[str] | None:
    """``feature_names_in_`` stored in a pinned Fink pickle (None when the model stores none)."""
    raw, _ = _read_pinned(Path(path))
    forest = _RestrictedUnpickler(io.BytesIO(raw)).load()
    names = getattr(forest, "__dict__", {}).get("feature_names_in_")
    return None if names is None else [str(n) for n in np.asarray(names).tolist()]


def fink_scores(
    X: np.ndarray, ensemble: TreeEnsemble, passed: np.ndarray | None = None
) -> np.ndarray:
    """Fink's early-Ia score from its 12 sigmoid features (order :data:`FINK_SIGMOID_FEATURES`).

    The score is forced to 0 when ``a_g == 0`` or ``a_r == 0`` (a band that failed) and where
    ``passed`` (Fink's cuts, see :func:`earlyia.select.fink_cuts`) is False.
    """
    X = np.asarray(X, dtype=np.float64)
    p = ensemble.predict_proba(X)[:, 1] if len(X) else np.zeros(0)
    p[(X[:, 0] == 0) | (X[:, 6] == 0)] = 0.0
    if passed is not None:
        p[~np.asarray(passed, bool)] = 0.0
    return p
