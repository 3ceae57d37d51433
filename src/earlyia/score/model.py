"""Model artifacts: one file that carries a forest and everything needed to use it safely.

A model file is a zip holding ``card.json`` (what the model is: feature extractor config and
feature order, positive class, training ids and labels, metrics, versions, lineage) and
``trees.npz`` (the flat tree arrays of :class:`~earlyia.score.trees.TreeEnsemble`), plus
``calibration.npz`` when the probabilities are calibrated. Loading runs no code: JSON and
``numpy.load(..., allow_pickle=False)`` only. A sha256 over the card and every array is recorded
in the card and checked on load, so a modified or corrupted file is refused
(:class:`~earlyia.errors.IntegrityError`), and :meth:`Model.check_features` refuses features
computed differently from training (:class:`~earlyia.errors.FeatureMismatchError`).

The training ids are the "prohibited list": objects a model was trained on are never reported
as discoveries by that model.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from earlyia.errors import DataNotFoundError, FeatureMismatchError, InputError, IntegrityError, ModelError
from earlyia.labels import NEGATIVE, POSITIVE, UNLABELLED, TypeMap
from earlyia.metrics import binary_metrics
from earlyia.score.trees import TreeEnsemble

FORMAT = "earlyia.model/1"
CARD = "card.json"
TREES = "trees.npz"
CALIBRATION = "calibration.npz"
_MEMBERS = (CARD, TREES, CALIBRATION)
CALIBRATION_METHODS = ("isotonic", "sigmoid", "evidence")
CLASSIFIERS = ("rf", "extratrees")
#: which labelled rows train the forest: every usable one, or only those the gate lets the model score
TRAIN_ROWS = ("all", "gate")
#: Columns of a feature table that are never features.
ID_COLUMNS = (
    "object_id",
    "alert_id",
    "objectId",
    "candid",
    "mjd",
    "ok",
    "valid",
    "passed",
    "reason",
    "label",
    "type",
    "tns_type",
    "source",
    "row",
)
#: Identity and protocol columns kept with the features in a model's training rows (``Model.training_rows``).
TRAINING_ROW_KEYS = ("object_id", "alert_id", "view", "ndethist", "n_detections", "label")
#: Label columns looked for, in this order, when the caller names none.
LABEL_COLUMNS = ("label", "tns_type", "type")


# ---------------------------------------------------------------------------- helpers
def _jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars and arrays, tuples, paths become int/float/list/str)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [_jsonable(v) for v in seq]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        value = float(value)
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN; a missing metric is null
    if isinstance(value, Path):
        return str(value)
    return value


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def content_hash(card: Mapping, arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over the card (without its ``hash`` entry) and every array (name, dtype, shape, bytes)."""
    h = hashlib.sha256(FORMAT.encode() + b"\n")
    h.update(_canonical_json({k: v for k, v in card.items() if k != "hash"}))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        le = a.dtype.newbyteorder("<") if a.dtype.byteorder not in ("|", "=") else a.dtype
        a = a.astype(le, copy=False)
        h.update(f"\n{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def versions() -> dict[str, str]:
    """Versions of the packages that decide what a model computes."""
    import scipy
    import sklearn

    from earlyia import __version__

    return {
        "earlyia": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
    }


def feature_names_of(extractor_config: Mapping) -> list[str]:
    """Feature order of an extractor config: the extractor's ``names`` (or the config's own list)."""
    for key in ("names", "features", "feature_names"):
        if isinstance(extractor_config.get(key), (list, tuple)):
            return [str(n) for n in extractor_config[key]]
    try:
        from earlyia.features import get_extractor
    except ImportError as exc:
        raise ModelError("extractor config lists no feature names and earlyia.features.get_extractor is unavailable") from exc
    return [str(n) for n in get_extractor(dict(extractor_config)).names]


def extractor_name(config: Mapping) -> str:
    """The extractor's registered name in a config (``{"extractor": name, "params": ..., "names": ...}``)."""
    return str(config.get("extractor", config.get("name", "?")))


def _feature_mismatch(expected: Sequence[str], got: Sequence[str]) -> str | None:
    """A message saying which feature differs, or None when the lists are equal."""
    expected, got = list(expected), list(got)
    if expected == got:
        return None
    missing = [n for n in expected if n not in got]
    extra = [n for n in got if n not in expected]
    parts = []
    if missing:
        parts.append(f"missing feature(s) {missing[:10]}")
    if extra:
        parts.append(f"unexpected feature(s) {extra[:10]}")
    if not parts:
        for i, (a, b) in enumerate(zip(expected, got, strict=False)):
            if a != b:
                parts.append(f"feature {i} is {b!r} in the input but {a!r} in the model (same names, different order)")
                break
    return "; ".join(parts)


# ---------------------------------------------------------------------------- calibration
def apply_calibration(p: np.ndarray, calibration: Mapping[str, np.ndarray] | None) -> np.ndarray:
    """Calibrated probabilities: ``p`` mapped by a map from :func:`fit_calibration` (``p`` unchanged when None)."""
    return _apply_calibration(p, calibration)


def _apply_calibration(
    p: np.ndarray, calibration: Mapping[str, np.ndarray] | None, evidence: np.ndarray | None = None
) -> np.ndarray:
    if not calibration:
        return p
    kind = str(np.asarray(calibration["method"]).reshape(-1)[0])
    if kind == "evidence":
        from earlyia.score.evidence import EvidenceCalibration

        if evidence is None:
            raise ModelError("this model's calibration depends on the evidence of each row: score it with its features")
        return EvidenceCalibration.from_arrays(calibration).apply(p, evidence)
    if kind == "isotonic":
        return np.interp(p, calibration["x"], calibration["y"])
    if kind == "sigmoid":
        a, b = (float(v) for v in calibration["ab"])
        return 1.0 / (1.0 + np.exp(a * p + b))
    raise ModelError(f"unknown calibration method {kind!r}; expected one of {CALIBRATION_METHODS}")


def _calibration_method(calibration: Mapping[str, np.ndarray], where: str) -> str:
    m = np.asarray(calibration.get("method", np.array([])))
    if m.dtype.kind not in "US" or m.size != 1 or str(m.reshape(-1)[0]) not in CALIBRATION_METHODS:
        raise ModelError(f"{where}: member {CALIBRATION} names no known calibration method (one of {CALIBRATION_METHODS})")
    return str(m.reshape(-1)[0])


def check_calibration(calibration: Mapping[str, np.ndarray], features: Sequence[str], where: str) -> None:
    """Refuse a calibration map that could give anything but a probability (:class:`ModelError` naming ``where``).

    ``isotonic``: knots ``x, y`` finite, never decreasing, ``y`` in [0, 1]; ``sigmoid``: two finite numbers ``a, b``;
    ``evidence``: :meth:`EvidenceCalibration.from_arrays` checks, and its feature is one of ``features``.
    """
    method = _calibration_method(calibration, where)
    expected = {"isotonic": {"method", "x", "y"}, "sigmoid": {"method", "ab"}}.get(method)
    if expected is not None and set(calibration) != expected:
        raise ModelError(f"{where}: a {method} calibration holds arrays {sorted(expected)}, not {sorted(calibration)}")
    if method == "evidence":
        from earlyia.score.evidence import EvidenceCalibration

        try:
            cal = EvidenceCalibration.from_arrays(calibration)
        except ModelError as exc:
            raise ModelError(f"{where}: {exc}") from exc
        if cal.feature not in features:
            raise ModelError(f"{where}: the calibration reads feature {cal.feature!r}, which the model does not have")
        return
    arrays = {k: np.asarray(v) for k, v in calibration.items() if k != "method"}
    for name, a in arrays.items():
        if a.ndim != 1 or a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)):
            raise ModelError(f"{where}: calibration array {name!r} must be a vector of finite numbers")
    if method == "sigmoid":
        if len(arrays["ab"]) != 2:
            raise ModelError(f"{where}: a sigmoid calibration holds two numbers a, b; got {len(arrays['ab'])}")
        return
    x, y = arrays["x"], arrays["y"]
    if len(x) == 0 or len(x) != len(y):
        raise ModelError(f"{where}: isotonic calibration knots x ({len(x)}) and y ({len(y)}) must be as many, at least one")
    if (np.diff(x) < 0).any() or (np.diff(y) < 0).any():
        raise ModelError(f"{where}: isotonic calibration knots are not monotone (x and y must never decrease)")
    if y.min() < 0.0 or y.max() > 1.0:
        raise ModelError(f"{where}: isotonic calibration probabilities outside [0, 1]")


def fit_calibration(p: np.ndarray, y: np.ndarray, method: str) -> dict[str, np.ndarray]:
    """Calibration map from raw probabilities ``p`` to P(positive), stored as plain arrays.

    ``isotonic``: the step points of an isotonic regression (applied by linear interpolation,
    clipped at the ends, which is what scikit-learn's ``IsotonicRegression`` does).
    ``sigmoid``: Platt's ``1 / (1 + exp(a p + b))``.
    """
    p = np.asarray(p, np.float64)
    y = np.asarray(y).astype(np.float64)
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return {"method": np.array("isotonic"), "x": iso.X_thresholds_.astype(np.float64), "y": iso.y_thresholds_.astype(np.float64)}
    if method == "sigmoid":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1e6).fit(p[:, None], y.astype(int))
        # P = 1 / (1 + exp(-(w p + c)))  =>  a = -w, b = -c
        return {"method": np.array("sigmoid"), "ab": np.array([-lr.coef_[0, 0], -lr.intercept_[0]], np.float64)}
    raise InputError(f"calibrate must be one of {CALIBRATION_METHODS} or None, got {method!r}")


# ---------------------------------------------------------------------------- metrics
def card_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """What a card records of held-out scores: accuracy, efficiency, purity and FoM (:mod:`earlyia.metrics`, NaN
    where undefined), with the counts and the threshold."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, np.float64)
    m = binary_metrics(y, p, threshold=threshold, undefined=float("nan"))
    pred = p > threshold
    return {
        "accuracy": m["accuracy"] if len(y) else float("nan"),
        "efficiency": m["efficiency"],
        "purity": m["purity"],
        "fom": m["fom"],
        "tp": int((pred & y).sum()),
        "fp": int((pred & ~y).sum()),
        "n": len(y),
        "threshold": threshold,
    }


# ---------------------------------------------------------------------------- the model
class Model:
    """A trained classifier with its card: load, check features, predict.

    Build with :func:`train_model`, :meth:`Model.load` or :meth:`Model.from_fink`; the card is a
    plain dict (see ``docs/scoring.md`` for its keys).
    """

    def __init__(self, ensemble: TreeEnsemble, card: Mapping, calibration: Mapping[str, np.ndarray] | None = None):
        self.training_rows: pd.DataFrame | None = None  # set by train_model; not part of the model file
        self.ensemble = ensemble
        self.calibration = dict(calibration) if calibration else None
        card = _jsonable(dict(card))
        card["format"] = FORMAT
        card["n_features"] = int(ensemble.n_features)
        card["n_trees"] = int(ensemble.n_trees)
        if len(card.get("features", [])) != ensemble.n_features:
            raise ModelError(f"the card lists {len(card.get('features', []))} features but the trees use {ensemble.n_features}")
        card["hash"] = content_hash(card, self._arrays())
        self.card = card

    # -------------------------------------------------------------- identity
    @property
    def hash(self) -> str:
        return self.card["hash"]

    def version_note(self) -> str | None:
        """A note when this model was trained by another earlyia release, whose extractors may compute slightly
        different feature values (e.g. a changed fitter); None when the versions match or were not recorded."""
        from earlyia import __version__

        trained = (self.card.get("versions") or {}).get("earlyia")
        if not trained or trained == __version__:
            return None
        return (
            f"model {self.hash[:12]} was trained with earlyia {trained}, this is earlyia {__version__}: feature values "
            "can differ between releases (see CHANGELOG.md); re-extract the features and re-train to be exact"
        )

    @property
    def features(self) -> list[str]:
        return list(self.card["features"])

    @property
    def extractor_config(self) -> dict:
        return dict(self.card["extractor"])

    @property
    def type_map(self) -> TypeMap:
        return TypeMap.from_config(self.card.get("type_map", {}))

    def prohibited_object_ids(self) -> frozenset[str]:
        """Objects used in training: never reported as discoveries by this model."""
        return frozenset(str(i) for i in self.card.get("training", {}).get("object_ids", []))

    def operating_thresholds(self) -> dict[int, float]:
        """Max detections N -> the card's threshold for purity >= its target within N (NaN when none reached it)."""
        ops = self.card.get("operating_points") or []
        return {int(o["max_detections"]): float("nan") if o.get("threshold") is None else float(o["threshold"]) for o in ops}

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"trees/{k}": v for k, v in self.ensemble.arrays().items()}
        if self.calibration:
            arrays.update({f"calibration/{k}": np.asarray(v) for k, v in self.calibration.items()})
        return arrays

    def summary(self) -> dict:
        """The card without the long lists (training ids): what ``models show`` and score files carry."""
        s = {k: v for k, v in self.card.items() if k != "training"}
        t = self.card.get("training", {})
        s["training"] = {k: v for k, v in t.items() if not isinstance(v, list)}
        return s

    def __repr__(self) -> str:
        c = self.card
        name = extractor_name(c["extractor"])
        return f"Model(extractor={name!r}, n_features={c['n_features']}, n_trees={c['n_trees']}, hash={self.hash[:12]})"

    # -------------------------------------------------------------- use
    def check_features(self, names: Sequence[str]) -> None:
        """Raise :class:`FeatureMismatchError` naming the differing feature unless ``names`` equals the model's."""
        msg = _feature_mismatch(self.features, list(names))
        if msg:
            raise FeatureMismatchError(
                f"features do not match the model {self.hash[:12]} (extractor {extractor_name(self.card['extractor'])}): {msg}"
            )

    def check_extractor(self, config: Mapping) -> None:
        """Raise :class:`FeatureMismatchError` naming the differing setting unless ``config`` equals the model's extractor config."""
        mine = _jsonable(dict(self.card["extractor"]))
        theirs = _jsonable(dict(config))
        if mine == theirs:
            return
        keys = sorted(set(mine) | set(theirs))
        diff = [f"{k}: model {mine.get(k)!r} vs input {theirs.get(k)!r}" for k in keys if mine.get(k) != theirs.get(k)]
        raise FeatureMismatchError(
            f"features were computed with another extractor configuration than model {self.hash[:12]}: " + "; ".join(diff[:5])
        )

    def predict_proba(self, X: np.ndarray | pd.DataFrame) -> np.ndarray:
        """``(n, 2)`` calibrated probabilities of (other, positive class).

        A DataFrame is matched by column name (extra columns such as ids are ignored; a missing
        feature raises); an array must already be in the model's feature order.
        """
        if isinstance(X, pd.DataFrame):
            missing = [n for n in self.features if n not in X.columns]
            if missing:
                self.check_features([c for c in X.columns if c not in ID_COLUMNS])
            X = X[self.features].to_numpy(np.float64)
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != self.ensemble.n_features:
            raise FeatureMismatchError(
                f"X has shape {X.shape}; model {self.hash[:12]} expects {self.ensemble.n_features} features {self.features}"
            )
        if len(X) == 0:
            return np.zeros((0, 2))
        if self.card.get("classifier", {}).get("input_dtype") == "float32":
            # scikit-learn compares features in float32: the same rounding gives the same leaves
            with np.errstate(over="ignore"):
                X = X.astype(np.float32).astype(np.float64)
        p = self.ensemble.predict_proba(X)[:, 1]
        p = _apply_calibration(p, self.calibration, self._evidence(X))
        return np.column_stack([1.0 - p, p])

    # -------------------------------------------------------------- evidence and operating points
    def evidence_calibration(self):
        """The :class:`~earlyia.score.evidence.EvidenceCalibration` of this model, or None."""
        if not self.calibration or str(np.asarray(self.calibration["method"]).reshape(-1)[0]) != "evidence":
            return None
        from earlyia.score.evidence import EvidenceCalibration

        return EvidenceCalibration.from_arrays(self.calibration)

    def _evidence(self, X: np.ndarray) -> np.ndarray | None:
        cal = self.evidence_calibration()
        if cal is None:
            return None
        if cal.feature not in self.features:
            raise ModelError(f"the calibration reads feature {cal.feature!r}, which the model does not have")
        return X[:, self.features.index(cal.feature)]

    def evidence(self, X: np.ndarray) -> np.ndarray | None:
        """The evidence (positive detections) of each row of ``X`` (model feature order) when the calibration uses it."""
        return self._evidence(np.asarray(X, np.float64))

    @property
    def prevalence(self) -> float | None:
        """Fraction of positive objects the calibration was fitted on (scores are probabilities at this prevalence)."""
        ev = (self.card.get("evidence") or {}).get("prevalence")
        return None if ev is None else float(ev)

    def operating_curves(self) -> dict[int, Any]:
        """Max detections N -> the held-out :class:`~earlyia.score.evidence.OperatingCurve` the card records."""
        from earlyia.score.evidence import OperatingCurve

        return {int(c["max_detections"]): OperatingCurve.from_card(c) for c in self.card.get("operating_curves") or []}

    def threshold(self, max_detections: int = 20, min_purity: float = 0.8, prevalence: float | None = None) -> dict[str, float]:
        """The score threshold for purity >= ``min_purity`` within ``max_detections`` at ``prevalence``
        (default: the training prevalence), with the efficiency and purity expected there
        (:func:`earlyia.score.evidence.card_threshold`)."""
        from earlyia.score.evidence import card_threshold

        return card_threshold(self.card, max_detections, min_purity, prevalence)

    # -------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        """Write the model file atomically (readers never see a half-written model)."""
        from earlyia.io.table import atomic_write

        path = Path(path)
        card_bytes = json.dumps(self.card, indent=1, sort_keys=True, allow_nan=False).encode()
        trees = _npz_bytes(self.ensemble.arrays())
        calib = _npz_bytes(self.calibration) if self.calibration else None

        def write(tmp: str) -> None:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
                zf.writestr(CARD, card_bytes)
                zf.writestr(TREES, trees)
                if calib is not None:
                    zf.writestr(CALIBRATION, calib)

        atomic_write(path, write)
        return path

    @classmethod
    def load(cls, path: str | Path, *, max_bytes: int | None = None) -> Model:
        """Read and verify a model file (no code runs: JSON and numpy arrays without pickle).

        Nothing in the file is trusted (:mod:`earlyia.score.modelfile`): at most ``max_bytes`` are decompressed
        (or the environment variable ``EARLYIA_MODEL_MAX_BYTES``; by default 200 times the file's size, at
        least 64 MiB and at most 1 GiB: :func:`~earlyia.score.modelfile.budget_for`), every declared size and
        ``.npy`` header is checked before anything is allocated, the content hash must match, the trees must
        be proper trees with probabilities at their nodes (:meth:`TreeEnsemble.validate`), and the calibration
        map and the card's operating curves must be finite, monotone and hold probabilities. Raises
        :class:`DataNotFoundError`, or :class:`ModelError` / :class:`IntegrityError` naming the file and what
        is wrong.
        """
        from earlyia.score import modelfile

        path = Path(path)
        modelfile.max_model_bytes(max_bytes)  # a bad limit is refused first
        if not path.exists():
            raise DataNotFoundError(f"{path}: model file not found")
        if not path.is_file():
            raise ModelError(f"{path}: not a regular file")
        if not zipfile.is_zipfile(path):
            hint = " (a Fink pickle? use Model.from_fink)" if path.suffix in (".xz", ".obj", ".pkl") else ""
            raise ModelError(f"{path}: not an earlyia model file (not a zip archive){hint}")
        size = path.stat().st_size
        limit, why = modelfile.budget_for(size, max_bytes)
        if size > limit:
            raise IntegrityError(f"{path}: {size:,} bytes, beyond the {limit:,}-byte limit on model files "
                                 f"(set {modelfile.MAX_BYTES_ENV} or pass max_bytes to load a larger model you trust)")
        budget = modelfile.Budget(limit, why)
        raw = modelfile.read_zip(path, budget, str(path), card=CARD, card_limit=modelfile.card_limit(limit))
        names = list(raw)
        if any(n not in _MEMBERS for n in names) or CARD not in names or TREES not in names:
            raise IntegrityError(
                f"{path}: unexpected members {names}; an earlyia model holds exactly {list(_MEMBERS[:2])} (+ {CALIBRATION})"
            )
        card = modelfile.parse_card(raw.pop(CARD), str(path))
        if card.get("format") != FORMAT:
            raise ModelError(f"{path}: unsupported model format {card.get('format')!r}; this earlyia reads {FORMAT}")
        trees = modelfile.read_npz(raw.pop(TREES), budget, f"{path}: member {TREES}")
        calib = modelfile.read_npz(raw.pop(CALIBRATION), budget, f"{path}: member {CALIBRATION}") if CALIBRATION in raw else None
        arrays = {f"trees/{k}": v for k, v in trees.items()}
        if calib:
            arrays.update({f"calibration/{k}": v for k, v in calib.items()})
        recorded = card.get("hash")
        actual = content_hash(card, arrays)
        if recorded != actual:
            raise IntegrityError(
                f"{path}: content hash {actual[:16]}... differs from the recorded {str(recorded)[:16]}...: "
                "the model file was modified or corrupted; re-train or restore it"
            )
        # the hash only says the file is what its writer wrote: what the writer wrote is checked next
        unknown = sorted(set(trees) - set(TreeEnsemble.ARRAYS))
        if unknown:
            raise ModelError(f"{path}: member {TREES} holds unknown arrays {unknown}")
        method = _calibration_method(calib, str(path)) if calib is not None else None
        modelfile.check_card(card, str(path), calibration_method=method)
        try:
            ensemble = TreeEnsemble.from_arrays(trees, card["n_features"])
        except ModelError as exc:
            raise ModelError(f"{path}: member {TREES}: {exc}") from exc
        if calib is not None:
            check_calibration(calib, card["features"], f"{path}: member {CALIBRATION}")
        model = cls(ensemble, card, calib)
        if model.hash != recorded:  # normalisation changed the card: should never happen
            raise IntegrityError(f"{path}: card does not round-trip; refusing a hand-edited model")
        return model

    @classmethod
    def from_fink(cls, path: str | Path, *, extractor_config: Mapping | None = None) -> Model:
        """Fink's production early-SN-Ia forest (sha256-pinned pickle) as a Model with the fink sigmoid extractor."""
        from earlyia.compat.fink_pickle import load_fink_model

        ensemble = load_fink_model(path)
        if extractor_config is None:
            extractor_config = fink_extractor_config()
        raw = Path(path).read_bytes()
        card = {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "extractor": dict(extractor_config),
            "features": feature_names_of(extractor_config),
            "positive_class": ["SN Ia"],
            "type_map": TypeMap().config(),
            "classifier": {
                "kind": "rf",
                "source": "fink",
                "input_dtype": "float32",
                "file": Path(path).name,
                "file_sha256": hashlib.sha256(raw).hexdigest(),
            },
            "training": {
                "n_samples": None,
                "object_ids": [],
                "alert_ids": [],
                "labels": [],
                "note": "Fink's training ids are not published; its prohibited list is empty here",
            },
            "metrics": {},
            "calibration": None,
            "versions": versions(),
            "parent": None,
            "selection": {"rule": "fink"},
            "survey": "ZTF",
            "bands": ["g", "r"],
        }
        return cls(ensemble, card)


def fink_extractor_config() -> dict:
    """The extractor config of Fink's production sigmoid features (H2's ``fink`` mode)."""
    from earlyia.errors import ConfigError
    from earlyia.features import get_extractor

    try:
        return dict(get_extractor("sigmoid", mode="fink").config())
    except ConfigError as exc:
        raise ModelError(f"no 'fink' sigmoid extractor is available in earlyia.features ({exc})") from exc


# ---------------------------------------------------------------------------- training
def _grouped_out_of_fold(
    Cls, params: dict, X: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, n_jobs: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """P(positive) of each row from a forest that saw none of its object's rows (NaN when a fold lacks a class)."""
    from sklearn.model_selection import GroupKFold

    out = np.full(len(y), np.nan)
    k = min(int(folds), len(set(groups)))
    for train, test in GroupKFold(n_splits=k).split(X, y, groups):
        if y[train].all() or not y[train].any():
            continue
        w = None if weights is None else weights[train]
        f = Cls(**params, bootstrap=True, n_jobs=n_jobs).fit(X[train], y[train], sample_weight=w)
        out[test] = f.predict_proba(X[test])[:, list(f.classes_).index(True)]
    return out


#: (max detections, min purity) of the operating points a card records (the replay protocol's goals).
OPERATING_POINTS = ((10, 0.8), (20, 0.8))


def operating_points(
    object_ids: np.ndarray,
    detections: np.ndarray,
    positive: np.ndarray,
    score: np.ndarray,
    targets=OPERATING_POINTS,
    estimated_on: str = "held-out scores",
) -> list[dict]:
    """Thresholds reaching each target purity with the replay protocol (``earlyia.evaluate``) on held-out scores.

    Why: a deployed model needs a threshold for "purity >= 0.8 within N detections"; reading it off the
    scores of the objects one evaluates is optimistic, so the card carries one chosen on the training
    objects' grouped out-of-fold scores, and a later test on new objects can apply it blind.
    """
    from earlyia.evaluate import evaluate_early

    frame = pd.DataFrame(
        {
            "object_id": np.asarray(object_ids).astype(str),
            "ndethist": np.asarray(detections, float),
            "label": np.where(np.asarray(positive, bool), "positive", "negative"),
            "score": np.asarray(score, float),
        }
    )
    if not frame["label"].eq("positive").any():
        return []
    rep = evaluate_early(frame, max_detections=sorted({n for n, _ in targets}), type_map=TypeMap(positive=("positive",)))
    out = []
    for n, purity in targets:
        best = rep.best_at_purity(n, purity)
        out.append(
            {"max_detections": int(n), "min_purity": float(purity), **{k: float(v) for k, v in best.items()},
             "estimated_on": f"{estimated_on} of the training objects (replay protocol)"}
        )
    return out


def _labels(df: pd.DataFrame, type_map: TypeMap, label_column: str | None) -> tuple[np.ndarray, str]:
    cols = [label_column] if label_column else [c for c in LABEL_COLUMNS if c in df.columns]
    if not cols or cols[0] not in df.columns:
        raise InputError(f"the feature table has no label column (looked for {list((label_column and [label_column]) or LABEL_COLUMNS)})")
    col = cols[0]
    s = df[col]
    if pd.api.types.is_bool_dtype(s):
        return np.where(s.to_numpy(bool), POSITIVE, NEGATIVE).astype(np.int8), col
    if pd.api.types.is_numeric_dtype(s):
        v = pd.to_numeric(s).fillna(UNLABELLED).to_numpy()
        bad = ~np.isin(v, (POSITIVE, NEGATIVE, UNLABELLED))
        if bad.any():
            raise InputError(
                f"numeric label column {col!r} must hold 1 (positive), 0 (negative) or -1 (unlabelled); found {sorted(set(v[bad]))[:5]}"
            )
        return v.astype(np.int8), col
    return type_map.encode(s.tolist()), col


def training_settings(card: Mapping) -> dict[str, Any]:
    """The :func:`train_model` keyword arguments that trained the model of ``card`` (forest settings,
    selection, gate, training rows, calibration).

    Why: a retrain of the live loop must change the labels, not the recipe; a candidate that silently
    lost its parent's gate or selection would score alerts its parent never scored.
    """
    clf = card.get("classifier") or {}
    params = clf.get("params") or {}
    out: dict[str, Any] = {k: params[k] for k in ("max_depth", "min_samples_leaf", "class_weight") if k in params}
    if clf.get("kind") in CLASSIFIERS:
        out["classifier"] = clf["kind"]
    if "object_weights" in clf:
        out["object_weights"] = bool(clf["object_weights"])
    if card.get("selection"):
        out["selection"] = dict(card["selection"])
    gate = card.get("gate")
    out["gate"] = gate["kind"] if gate else "none"
    out["train_rows"] = (card.get("training") or {}).get("rows", "all")
    if card.get("calibration"):
        out["calibrate"] = card["calibration"].get("method")
    return out


def train_model(
    features_df: pd.DataFrame,
    extractor_config: Mapping,
    *,
    type_map: TypeMap | None = None,
    n_estimators: int = 1000,
    random_state: int | np.random.Generator | None = 42,
    classifier: str = "rf",
    calibrate: str | None = None,
    sample_ids: Iterable[str] | None = None,
    label_column: str | None = None,
    max_depth: int | None = None,
    min_samples_leaf: int = 1,
    class_weight: str | None = None,
    object_weights: bool = False,
    parent: str | None = None,
    metrics: Mapping | None = None,
    lineage: Mapping | None = None,
    selection: Mapping | None = None,
    gate: str = "none",
    train_rows: str = "all",
    cv_folds: int = 5,
    n_jobs: int = 1,
    augmentation: Mapping | None = None,
    evidence_feature: str = "early_n_det",
    survey: str | None = None,
    bands: Sequence[str] | None = None,
) -> Model:
    """Fit a forest on a labelled feature table and return it as a :class:`Model` with its card.

    Rows need the model's features (order from ``extractor_config``), a label column (``label``
    as 1/0/-1 or bool, or type strings in ``label``/``tns_type``/``type`` mapped by ``type_map``)
    and ideally ``object_id``/``alert_id``. Unlabelled rows and rows whose features failed (an
    ``ok``/``passed`` column that is False, or non-finite values) are left out. ``sample_ids``
    restricts training to rows whose ``alert_id`` or ``object_id`` is listed (e.g. an active-learning
    run's queried ids). ``selection``: keyword arguments of ``earlyia.select.select_early`` that
    scoring with this model applies (default: its defaults). Held-out predictions give honest training
    metrics and, with ``calibrate``, the calibration map: out-of-bag predictions when each object has one
    row, else ``cv_folds`` folds split by object (``GroupKFold``; out-of-bag would be optimistic there
    because other alerts of the same object sit in the bag). The final forest uses every row.
    ``object_weights`` weighs each row by 1 / (rows of its object), so that an object replayed at many
    detections counts as much as one seen once; ``class_weight="balanced"`` reweighs the classes.
    ``gate`` (``"none"`` or ``"rise"``, :mod:`earlyia.features.gates`): scoring gives 0 to rows the gate
    rejects (flat, noisy-constant, fading light curves). ``train_rows``: ``"all"`` learns from every usable
    row; ``"gate"`` only from the rows the gate accepts, i.e. the ones the model will ever score (on
    ELAsTiCC: the same efficiency-purity curve, with each fixed threshold further along it, README issue 6).

    ``calibrate="evidence"`` (:mod:`earlyia.score.training`): probabilities calibrated per evidence stratum
    (``evidence_feature``, positive detections) on held-out original alerts, operating curves that move to any
    prevalence, and the evidence from which the model can flag. A ``view`` column marks rows that only train
    (augmented copies, generated impostors: any value but 0); ``augmentation`` (what made them) goes into the card.
    ``survey`` and ``bands``: the survey of the training data and the bands the features read (default: inferred
    from the extractor, :func:`earlyia.score.survey.card_survey`); scoring another survey's alerts is refused.
    """
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    type_map = type_map or TypeMap()
    if classifier not in CLASSIFIERS:
        raise InputError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
    if calibrate not in (None, *CALIBRATION_METHODS):
        raise InputError(f"calibrate must be one of {CALIBRATION_METHODS} or None, got {calibrate!r}")
    if n_estimators < 1:
        raise InputError(f"n_estimators must be >= 1, got {n_estimators}")
    names = feature_names_of(extractor_config)
    from earlyia.features.gates import gate_spec

    gate_entry = gate_spec(gate, names)
    if train_rows not in TRAIN_ROWS:
        raise InputError(f"train_rows must be one of {TRAIN_ROWS}, got {train_rows!r}")
    if train_rows == "gate" and gate_entry is None:
        raise InputError("train_rows='gate' needs a gate (gate='rise'): without one every row is scored")
    missing = [n for n in names if n not in features_df.columns]
    if missing:
        raise FeatureMismatchError(f"the feature table lacks feature column(s) {missing} of extractor {extractor_name(extractor_config)}")
    df = features_df
    if sample_ids is not None:
        wanted = {str(i) for i in sample_ids}
        keep = np.zeros(len(df), bool)
        for col in ("alert_id", "object_id"):
            if col in df.columns:
                keep |= df[col].astype(str).isin(wanted).to_numpy()
        if not keep.any():
            raise InputError(f"none of the {len(wanted)} requested sample ids is an alert_id or object_id of the feature table")
        df = df[keep]
    y, label_col = _labels(df, type_map, label_column)
    X = df[names].to_numpy(np.float64)
    usable = (y != UNLABELLED) & np.isfinite(X).all(axis=1)
    for col in ("ok", "valid", "passed"):
        if col in df.columns:
            usable &= df[col].fillna(False).to_numpy(bool)
    n_rejected = 0
    if train_rows == "gate":
        from earlyia.features.gates import apply_gate

        accepted = apply_gate(gate_entry, X, names)
        n_rejected = int((usable & ~accepted).sum())
        usable &= accepted
    X, y, df = X[usable], y[usable], df[usable]
    view = pd.to_numeric(df["view"], errors="coerce").fillna(0).to_numpy(np.int64) if "view" in df.columns else np.zeros(len(df), np.int64)
    f32 = float(np.finfo(np.float32).max)
    X = np.clip(X, -f32, f32)  # scikit-learn works in float32; beyond its range a value routes like the largest one
    n_pos = int((y == POSITIVE).sum())
    n_neg = int((y == NEGATIVE).sum())
    if n_pos == 0 or n_neg == 0:
        raise InputError(
            f"training needs both classes: {n_pos} positive and {n_neg} negative usable rows (positive class: {type_map.describe()})"
        )
    seed = random_state
    if isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(2**31 - 1))
    Cls = RandomForestClassifier if classifier == "rf" else ExtraTreesClassifier
    if class_weight not in (None, "balanced", "balanced_subsample"):
        raise InputError(f"class_weight must be None, 'balanced' or 'balanced_subsample', got {class_weight!r}")
    params = {
        "n_estimators": int(n_estimators),
        "random_state": seed,
        "max_depth": max_depth,
        "min_samples_leaf": min_samples_leaf,
        "class_weight": class_weight,
    }
    forest = Cls(**params, bootstrap=True, oob_score=True, n_jobs=n_jobs)
    groups = df["object_id"].astype(str).to_numpy() if "object_id" in df.columns else None
    weights = None
    if object_weights:
        if groups is None:
            raise InputError("object_weights needs an object_id column in the feature table")
        counts = pd.Series(groups).map(pd.Series(groups).value_counts()).to_numpy(float)
        weights = 1.0 / counts
    yb = y == POSITIVE
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(out-of-bag|OOB).*")  # tiny forests: some rows have no OOB trees
        warnings.filterwarnings("ignore", message="invalid value encountered")
        forest.fit(X, yb, sample_weight=weights)
    ensemble = TreeEnsemble.from_sklearn(forest, positive_class=True)
    oob = forest.oob_decision_function_[:, list(forest.classes_).index(True)]
    # Out-of-bag rows of an object whose other alerts were in the bag are not unseen: with several rows
    # per object, honest held-out predictions come from folds split by object instead.
    repeated = groups is not None and len(set(groups)) < len(groups)
    held, held_name = oob, "oob"
    if repeated and cv_folds >= 2 and calibrate != "evidence":  # the evidence fit makes its own held-out folds
        held = _grouped_out_of_fold(Cls, params, X, yb, groups, cv_folds, n_jobs, weights)
        held_name = "grouped_cv"
    has = np.isfinite(held)
    calibration = None
    evidence_entry, curves = None, []
    if calibrate == "evidence":
        from earlyia.score.training import held_out_evidence

        if groups is None:
            raise InputError("calibrate='evidence' needs an object_id column (folds are split by object)")
        det_col = next((c for c in ("ndethist", "n_detections") if c in df.columns), None)
        if det_col is None:
            raise InputError("calibrate='evidence' needs the number of detections of each alert (ndethist or n_detections)")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(out-of-bag|OOB).*")
            fit = held_out_evidence(
                lambda: Cls(**params, bootstrap=True, n_jobs=n_jobs), X, yb, groups, weights, view,
                pd.to_numeric(df[det_col], errors="coerce").to_numpy(float), names,
                evidence_feature=evidence_feature, folds=cv_folds, seed=seed if isinstance(seed, int) else 0,
            )
        calibration = fit["calibration"]
        evidence_entry, curves = fit["evidence"], fit["curves"]
        rows, cross = fit["calibrated_held_out"]
        all_metrics = {"grouped_cv": {**card_metrics(yb[rows], cross), "folds": evidence_entry["folds"],
                                      "note": "per alert, original labelled alerts, cross-fitted calibration"}}
        if metrics:
            all_metrics.update(dict(metrics))
        ops = fit["operating_points"]
        held_name = "grouped_cv"
    elif calibrate:
        if has.sum() < 10:
            raise InputError(f"calibration needs held-out predictions for at least 10 rows; got {int(has.sum())} (more trees or rows)")
        calibration = fit_calibration(held[has], yb[has], calibrate)
    if calibrate != "evidence":
        all_metrics, ops = _plain_metrics(oob, held, held_name, has, yb, calibration, repeated, cv_folds, groups, metrics, df)

    def ids(col: str) -> list[str]:
        return df[col].astype(str).tolist() if col in df.columns else []

    original = view == 0
    card = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "extractor": dict(extractor_config),
        "features": names,
        "positive_class": sorted(type_map.positive_set()),
        "type_map": type_map.config(),
        "classifier": {
            "kind": classifier, "params": params, "bootstrap": True, "input_dtype": "float32", "object_weights": bool(object_weights),
        },
        "training": {
            "n_samples": len(y),
            "n_positive": n_pos,
            "n_negative": n_neg,
            "n_objects": int(df.loc[original, "object_id"].nunique()) if "object_id" in df.columns else None,
            "n_training_only_rows": int((~original).sum()),
            "label_column": label_col,
            "rows": train_rows,
            "n_gate_rejected": n_rejected,
            "object_ids": [o for o, keep in zip(ids("object_id"), original, strict=False) if keep],
            "alert_ids": [a for a, keep in zip(ids("alert_id"), original, strict=False) if keep],
            "labels": y[original].astype(int).tolist(),
        },
        "metrics": all_metrics,
        "calibration": {
            "method": calibrate,
            "fitted_on": (
                "held-out original alerts, per evidence stratum" if calibrate == "evidence"
                else "grouped out-of-fold probabilities (folds by object)" if held_name == "grouped_cv" else "out-of-bag probabilities"
            ),
        }
        if calibrate
        else None,
        "versions": versions(),
        "parent": parent,
        "lineage": dict(lineage or {}),
        "selection": dict(selection) if selection else None,
        "gate": gate_entry,
        "operating_points": ops,
    }
    if evidence_entry is not None:
        card["evidence"] = evidence_entry
        card["operating_curves"] = curves
    if augmentation:
        card["augmentation"] = dict(augmentation)
    from earlyia.score.survey import card_survey

    card["survey"], card["bands"] = card_survey({**card, "survey": survey, "bands": list(bands) if bands else None})
    model = Model(ensemble, card, calibration)
    keep = [c for c in (*TRAINING_ROW_KEYS, *names) if c in df.columns and c not in ("label", "view")]
    rows = df[keep].reset_index(drop=True).copy()
    rows["label"] = y.astype(np.int8)
    rows["view"] = view
    model.training_rows = rows  # what the forest learned from, for the registry (never written into the model file)
    return model


def _plain_metrics(oob, held, held_name, has, yb, calibration, repeated, cv_folds, groups, metrics, df):
    """Metrics and operating points of a model calibrated (or not) without evidence strata."""
    has_oob = np.isfinite(oob)
    all_metrics = {"oob": card_metrics(yb[has_oob], _apply_calibration(oob[has_oob], calibration))}
    if repeated:
        all_metrics["oob"]["note"] = "optimistic: other rows of the same objects were in the bag"
    if held_name == "grouped_cv":
        all_metrics["grouped_cv"] = {
            **card_metrics(yb[has], _apply_calibration(held[has], calibration)),
            "folds": int(min(cv_folds, len(set(groups)))),
        }
    if metrics:
        all_metrics.update(dict(metrics))
    ops: list[dict] = []
    det_col = next((c for c in ("ndethist", "n_detections") if c in df.columns), None)
    if (held_name == "grouped_cv" or not repeated) and groups is not None and det_col is not None and has.any():
        det = pd.to_numeric(df[det_col], errors="coerce").to_numpy(float)
        ok = has & np.isfinite(det)
        source = "grouped out-of-fold scores" if held_name == "grouped_cv" else "out-of-bag scores (one row per object)"
        ops = operating_points(groups[ok], det[ok], yb[ok], _apply_calibration(held[ok], calibration), estimated_on=source)

    return all_metrics, ops
