"""Model artifacts: one file that carries a forest and everything needed to use it safely.

A model file is a zip holding ``card.json`` (what the model is: feature extractor config and
feature order, positive class, training ids and labels, metrics, versions, lineage) and
``trees.npz`` (the flat tree arrays of :class:`~earlyia.model.trees.TreeEnsemble`), plus
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
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from earlyia import __version__
from earlyia.errors import (
    ConfigError,
    DataNotFoundError,
    FeatureMismatchError,
    IntegrityError,
    ModelError,
)
from earlyia.features import get_extractor
from earlyia.io.table import atomic_write
from earlyia.labels import TypeMap
from earlyia.model import modelfile
from earlyia.model.calibration import (
    EvidenceCalibration,
    apply_calibration,
    calibration_method,
    check_calibration,
)
from earlyia.model.fink_pickle import load_fink_model
from earlyia.model.operating import OperatingCurve, card_threshold
from earlyia.model.trees import TreeEnsemble

FORMAT = "earlyia.model/1"
CARD = "card.json"
TREES = "trees.npz"
CALIBRATION = "calibration.npz"
_MEMBERS = (CARD, TREES, CALIBRATION)
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


# ---------------------------------------------------------------------------- helpers
def jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars and arrays, tuples, paths become int/float/list/str)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v) for v in seq]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
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
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def content_hash(card: Mapping, arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over the card (without its ``hash`` entry) and every array (name, dtype, shape,
    bytes)."""
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
    return {
        "earlyia": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": package_version("scipy"),
        "scikit-learn": package_version("scikit-learn"),
        "pandas": pd.__version__,
    }


def feature_names_of(extractor_config: Mapping) -> list[str]:
    """Feature order of an extractor config: the extractor's ``names`` (or the config's own
    list)."""
    for key in ("names", "features", "feature_names"):
        if isinstance(extractor_config.get(key), (list, tuple)):
            return [str(n) for n in extractor_config[key]]
    return [str(n) for n in get_extractor(dict(extractor_config)).names]


def extractor_name(config: Mapping) -> str:
    """The extractor's registered name in a config (``{"extractor": name, "params": ..., "names":
    ...}``)."""
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
                parts.append(
                    f"feature {i} is {b!r} in the input but {a!r} in the model (same names, "
                    "different order)"
                )
                break
    return "; ".join(parts)


# ---------------------------------------------------------------------------- the model
class Model:
    """A trained classifier with its card: load, check features, predict.

    Build with :func:`earlyia.model.training.train_model`, :meth:`Model.load` or
    :meth:`Model.from_fink`; the card is a plain dict (see ``docs/scoring.md`` for its keys).
    """

    def __init__(
        self,
        ensemble: TreeEnsemble,
        card: Mapping,
        calibration: Mapping[str, np.ndarray] | None = None,
    ):
        self.training_rows: pd.DataFrame | None = (
            None  # set by train_model (earlyia.model.training); not part of the model file
        )
        self.ensemble = ensemble
        self.calibration = dict(calibration) if calibration else None
        card = jsonable(dict(card))
        card["format"] = FORMAT
        card["n_features"] = int(ensemble.n_features)
        card["n_trees"] = int(ensemble.n_trees)
        if len(card.get("features", [])) != ensemble.n_features:
            raise ModelError(
                f"the card lists {len(card.get('features', []))} features but the trees use "
                f"{ensemble.n_features}"
            )
        card["hash"] = content_hash(card, self._arrays())
        self.card = card

    # -------------------------------------------------------------- identity
    @property
    def hash(self) -> str:
        return self.card["hash"]

    def version_note(self) -> str | None:
        """A note when this model was trained by another earlyia release, whose extractors may
        compute slightly different feature values (e.g. a changed fitter); None when the versions
        match or were not recorded."""
        trained = (self.card.get("versions") or {}).get("earlyia")
        if not trained or trained == __version__:
            return None
        return (
            f"model {self.hash[:12]} was trained with earlyia {trained}, this is earlyia "
            f"{__version__}: feature values "
            "can differ between releases (see CHANGELOG.md); re-extract the features and "
            "re-train to be exact"
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
        """Max detections N -> the card's threshold for purity >= its target within N (NaN when
        none reached it)."""
        ops = self.card.get("operating_points") or []
        return {
            int(o["max_detections"]): float("nan")
            if o.get("threshold") is None
            else float(o["threshold"])
            for o in ops
        }

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"trees/{k}": v for k, v in self.ensemble.arrays().items()}
        if self.calibration:
            arrays.update({f"calibration/{k}": np.asarray(v) for k, v in self.calibration.items()})
        return arrays

    def summary(self) -> dict:
        """The card without the long lists (training ids): what ``models show`` and score files
        carry."""
        s = {k: v for k, v in self.card.items() if k != "training"}
        t = self.card.get("training", {})
        s["training"] = {k: v for k, v in t.items() if not isinstance(v, list)}
        return s

    def __repr__(self) -> str:
        c = self.card
        name = extractor_name(c["extractor"])
        return (
            f"Model(extractor={name!r}, n_features={c['n_features']}, n_trees={c['n_trees']}, "
            f"hash={self.hash[:12]})"
        )

    # -------------------------------------------------------------- use
    def check_features(self, names: Sequence[str]) -> None:
        """Raise :class:`FeatureMismatchError` naming the differing feature unless ``names``
        equals the model's."""
        msg = _feature_mismatch(self.features, list(names))
        if msg:
            raise FeatureMismatchError(
                f"features do not match the model {self.hash[:12]} (extractor "
                f"{extractor_name(self.card['extractor'])}): {msg}"
            )

    def check_extractor(self, config: Mapping) -> None:
        """Raise :class:`FeatureMismatchError` naming the differing setting unless ``config``
        equals the model's extractor config."""
        mine = jsonable(dict(self.card["extractor"]))
        theirs = jsonable(dict(config))
        if mine == theirs:
            return
        keys = sorted(set(mine) | set(theirs))
        diff = [
            f"{k}: model {mine.get(k)!r} vs input {theirs.get(k)!r}"
            for k in keys
            if mine.get(k) != theirs.get(k)
        ]
        raise FeatureMismatchError(
            "features were computed with another extractor configuration than model "
            f"{self.hash[:12]}: " + "; ".join(diff[:5])
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
                f"X has shape {X.shape}; model {self.hash[:12]} expects "
                f"{self.ensemble.n_features} features {self.features}"
            )
        if len(X) == 0:
            return np.zeros((0, 2))
        if self.card.get("classifier", {}).get("input_dtype") == "float32":
            # scikit-learn compares features in float32: the same rounding gives the same leaves
            with np.errstate(over="ignore"):
                X = X.astype(np.float32).astype(np.float64)
        p = self.ensemble.predict_proba(X)[:, 1]
        p = apply_calibration(p, self.calibration, self._evidence(X))
        return np.column_stack([1.0 - p, p])

    # -------------------------------------------------------------- evidence and operating points
    def evidence_calibration(self):
        """The :class:`~earlyia.model.calibration.EvidenceCalibration` of this model, or None."""
        if (
            not self.calibration
            or str(np.asarray(self.calibration["method"]).reshape(-1)[0]) != "evidence"
        ):
            return None
        return EvidenceCalibration.from_arrays(self.calibration)

    def _evidence(self, X: np.ndarray) -> np.ndarray | None:
        cal = self.evidence_calibration()
        if cal is None:
            return None
        if cal.feature not in self.features:
            raise ModelError(
                f"the calibration reads feature {cal.feature!r}, which the model does not have"
            )
        return X[:, self.features.index(cal.feature)]

    def evidence(self, X: np.ndarray) -> np.ndarray | None:
        """The evidence (positive detections) of each row of ``X`` (model feature order) when the
        calibration uses it."""
        return self._evidence(np.asarray(X, np.float64))

    @property
    def prevalence(self) -> float | None:
        """Fraction of positive objects the calibration was fitted on (scores are probabilities
        at this prevalence)."""
        ev = (self.card.get("evidence") or {}).get("prevalence")
        return None if ev is None else float(ev)

    def operating_curves(self) -> dict[int, Any]:
        """Max detections N -> the held-out :class:`~earlyia.model.operating.OperatingCurve` the
        card records."""
        return {
            int(c["max_detections"]): OperatingCurve.from_card(c)
            for c in self.card.get("operating_curves") or []
        }

    def threshold(
        self, max_detections: int = 20, min_purity: float = 0.8, prevalence: float | None = None
    ) -> dict[str, float]:
        """The score threshold for purity >= ``min_purity`` within ``max_detections`` at
        ``prevalence`` (default: the training prevalence), with the efficiency and purity
        expected there (:func:`earlyia.model.operating.card_threshold`)."""
        return card_threshold(self.card, max_detections, min_purity, prevalence)

    # -------------------------------------------------------------- files
    def save(self, path: str | Path) -> Path:
        """Write the model file atomically (readers never see a half-written model)."""
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

        Nothing in the file is trusted (:mod:`earlyia.model.modelfile`): at most ``max_bytes`` are
        decompressed (or the environment variable ``EARLYIA_MODEL_MAX_BYTES``; by default 200 times
        the file's size, at least 64 MiB and at most 1 GiB:
        :func:`~earlyia.model.modelfile.budget_for`), every declared size and ``.npy`` header is
        checked before anything is allocated, the content hash must match, the trees must be proper
        trees with probabilities at their nodes (:meth:`TreeEnsemble.validate`), and the calibration
        map and the card's operating curves must be finite, monotone and hold probabilities. Raises
        :class:`DataNotFoundError`, or :class:`ModelError` / :class:`IntegrityError` naming the file
        and what is wrong.
        """
        path = Path(path)
        modelfile.max_model_bytes(max_bytes)  # a bad limit is refused first
        if not path.exists():
            raise DataNotFoundError(f"{path}: model file not found")
        if not path.is_file():
            raise ModelError(f"{path}: not a regular file")
        if not zipfile.is_zipfile(path):
            hint = (
                " (a Fink pickle? use Model.from_fink)"
                if path.suffix in (".xz", ".obj", ".pkl")
                else ""
            )
            raise ModelError(f"{path}: not an earlyia model file (not a zip archive){hint}")
        size = path.stat().st_size
        limit, why = modelfile.budget_for(size, max_bytes)
        if size > limit:
            raise IntegrityError(
                f"{path}: {size:,} bytes, beyond the {limit:,}-byte limit on model files "
                f"(set {modelfile.MAX_BYTES_ENV} or pass max_bytes to load a larger model "
                "you trust)"
            )
        budget = modelfile.Budget(limit, why)
        raw = modelfile.read_zip(
            path, budget, str(path), card=CARD, card_limit=modelfile.card_limit(limit)
        )
        names = list(raw)
        if any(n not in _MEMBERS for n in names) or CARD not in names or TREES not in names:
            raise IntegrityError(
                f"{path}: unexpected members {names}; an earlyia model holds exactly "
                f"{list(_MEMBERS[:2])} (+ {CALIBRATION})"
            )
        card = modelfile.parse_card(raw.pop(CARD), str(path))
        if card.get("format") != FORMAT:
            raise ModelError(
                f"{path}: unsupported model format {card.get('format')!r}; this earlyia "
                f"reads {FORMAT}"
            )
        trees = modelfile.read_npz(raw.pop(TREES), budget, f"{path}: member {TREES}")
        calib = (
            modelfile.read_npz(raw.pop(CALIBRATION), budget, f"{path}: member {CALIBRATION}")
            if CALIBRATION in raw
            else None
        )
        arrays = {f"trees/{k}": v for k, v in trees.items()}
        if calib:
            arrays.update({f"calibration/{k}": v for k, v in calib.items()})
        recorded = card.get("hash")
        actual = content_hash(card, arrays)
        if recorded != actual:
            raise IntegrityError(
                f"{path}: content hash {actual[:16]}... differs from the recorded "
                f"{str(recorded)[:16]}...: "
                "the model file was modified or corrupted; re-train or restore it"
            )
        # the hash only says the file is what its writer wrote: what the writer wrote is checked
        # next
        unknown = sorted(set(trees) - set(TreeEnsemble.ARRAYS))
        if unknown:
            raise ModelError(f"{path}: member {TREES} holds unknown arrays {unknown}")
        method = (
            calibration_method(calib, f"{path}: member {CALIBRATION}")
            if calib is not None
            else None
        )
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
        """Fink's production early-SN-Ia forest (sha256-pinned pickle) as a Model with the fink
        sigmoid extractor."""
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
    try:
        return dict(get_extractor("sigmoid", mode="fink").config())
    except ConfigError as exc:
        raise ModelError(
            f"no 'fink' sigmoid extractor is available in earlyia.features ({exc})"
        ) from exc
