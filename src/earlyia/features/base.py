"""The feature-extractor contract and the registry of extractors.

An extractor is a configured object (scikit-learn style: ``__init__`` only stores parameters)
with one pure array core, :meth:`FeatureExtractor.extract`, that computes features for many
light-curve *segments* (``starts[i]:ends[i]`` rows of the photometry arrays) in one call. The
same core serves the local batch path (:meth:`FeatureExtractor.transform` on a
:class:`~earlyia.io.table.LightCurves`) and Spark UDFs (arrays built from a pandas batch), so a
feature never has two implementations.

Every row of a feature table says whether its features are usable (``valid``) and, when not,
why (``reason``): one bad light curve never loses the batch.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from earlyia.errors import ConfigError, FeatureMismatchError, InputError
from earlyia.registry import Registry

#: Columns that precede the features in every feature table, in this order.
META_COLUMNS = ("object_id", "alert_id", "mjd", "n_detections", "label", "valid", "reason")
#: Alert- (or object-) level columns copied into feature tables when the input has them.
CARRY_COLUMNS = ("ndethist", "cdsxmatch", "drb", "classtar", "jdstarthist", "anchor_score")


class FeatureExtractor:
    """Base class: subclasses set :attr:`name`, implement :attr:`names` and :meth:`extract`.

    ``extract`` must be a pure function of its arrays and the extractor's parameters: it is
    called on whole batches locally and on pandas batches inside Spark.
    """

    name: ClassVar[str] = ""

    # ----------------------------------------------------------------- configuration
    @property
    def names(self) -> list[str]:
        """Feature names, in column order."""
        raise NotImplementedError

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters (read back from attributes of the same name)."""
        sig = inspect.signature(type(self).__init__)
        params = {}
        for p in list(sig.parameters.values())[1:]:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            value = getattr(self, p.name)
            params[p.name] = list(value) if isinstance(value, tuple) else value
        return params

    def config(self) -> dict[str, Any]:
        """JSON-able description: enough to rebuild the extractor with :func:`get_extractor`."""
        return {"extractor": self.name, "params": self.get_params(), "names": list(self.names)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ----------------------------------------------------------------- computation
    def extract(
        self,
        mjd: np.ndarray,
        band: np.ndarray,
        flux: np.ndarray,
        flux_err: np.ndarray,
        detected: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        *,
        bands: tuple[str, ...],
        survey: str,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features of each segment ``starts[i]:ends[i]`` of the photometry arrays.

        Arrays follow :class:`~earlyia.io.table.LightCurves` (``band`` = int8 codes into
        ``bands``; points of a segment sorted by time). Returns ``X`` float64 ``(n, k)`` with
        ``k = len(self.names)``, ``ok`` bool ``(n,)`` and ``reason`` object ``(n,)`` ('' when ok).
        """
        raise NotImplementedError

    def extract_lc(
        self,
        lc,
        starts: np.ndarray | None = None,
        ends: np.ndarray | None = None,
        object_index: np.ndarray | None = None,
    ):
        """:meth:`extract` on the arrays of ``lc`` (default segments: whole objects).

        ``object_index`` (the object of each segment) is for extractors that also read object
        columns (e.g. ``lsst_early``'s host galaxy); photometry-only extractors ignore it.
        """
        if starts is None:
            starts, ends = lc.starts, lc.ends
        return self.extract(
            lc.mjd,
            lc.band,
            lc.flux,
            lc.flux_err,
            lc.detected,
            np.asarray(starts, np.int64),
            np.asarray(ends, np.int64),
            bands=tuple(lc.bands),
            survey=lc.survey,
        )

    def transform(self, lc, per: str = "object") -> pd.DataFrame:
        """Feature table of ``lc``: one row per object (``per="object"``) or per alert
        (``"alert"``).

        ``per="auto"`` means per alert when ``lc`` has alerts, else per object. Columns:
        :data:`META_COLUMNS` (``label`` only when ``lc.objects`` has it), the
        :data:`CARRY_COLUMNS` present in the input, then :attr:`names`.
        """
        if per == "auto":
            per = "alert" if not lc.alerts.empty else "object"
        if per not in ("object", "alert"):
            raise InputError(f"per must be 'object', 'alert' or 'auto', got {per!r}")
        if per == "alert":
            if lc.alerts.empty:
                raise InputError(
                    "per='alert' needs alerts, but the light curves have none; use "
                    "per='object' or lc.replay()"
                )
            starts, ends = lc.alert_segments()
            obj = lc.alerts["object_index"].to_numpy(np.int64)
            alert_ids = lc.alerts["alert_id"].astype(str).to_numpy(object)
            carry_src = lc.alerts
            carry_rows = np.arange(len(obj))
        else:
            starts, ends = lc.starts.astype(np.int64), lc.ends.astype(np.int64)
            obj = np.arange(lc.n_objects, dtype=np.int64)
            alert_ids = np.full(len(obj), None, dtype=object)
            carry_src = lc.objects
            carry_rows = obj
        X, ok, reason = extract_batched(self, lc, starts, ends, obj)
        names = list(self.names)
        if X.shape != (len(starts), len(names)):
            raise FeatureMismatchError(
                f"{self.name}: extract returned shape {X.shape}, expected "
                f"{(len(starts), len(names))}"
            )
        cum = np.concatenate([[0], np.cumsum(lc.detected, dtype=np.int64)])
        nonempty = ends > starts
        last = np.full(len(starts), np.nan)
        last[nonempty] = lc.mjd[ends[nonempty] - 1]
        cols: dict[str, Any] = {
            "object_id": lc.objects["object_id"].astype(str).to_numpy(object)[obj],
            "alert_id": alert_ids,
            "mjd": last,
            "n_detections": (cum[ends] - cum[starts]).astype(np.int64),
        }
        if "label" in lc.objects.columns:
            cols["label"] = lc.objects["label"].to_numpy()[obj]
        cols["valid"] = np.asarray(ok, bool)
        cols["reason"] = np.asarray(reason, dtype=object)
        for c in CARRY_COLUMNS:
            if c in carry_src.columns:
                cols[c] = carry_src[c].to_numpy()[carry_rows]
            elif per == "alert" and c in lc.objects.columns and c != "anchor_score":
                cols[c] = lc.objects[c].to_numpy()[obj]
        for j, n in enumerate(names):
            if n in cols:
                raise FeatureMismatchError(
                    f"{self.name}: feature name {n!r} collides with a metadata column"
                )
            cols[n] = X[:, j]
        return pd.DataFrame(cols)


#: Seconds one compiled call may take before control returns to Python (where Ctrl-C and SIGTERM are
#: acted on).
BATCH_SECONDS = 0.25


def extract_batched(
    extractor: FeatureExtractor,
    lc,
    starts: np.ndarray,
    ends: np.ndarray,
    object_index: np.ndarray | None = None,
):
    """``extractor.extract_lc`` on consecutive slices of the segments, each sized to take about
    :data:`BATCH_SECONDS`, so a signal interrupts a long batch within about a second (a compiled
    kernel cannot be interrupted mid-call). Same result as one call: extractors are pure per
    segment."""
    starts = np.asarray(starts, np.int64)
    ends = np.asarray(ends, np.int64)
    n = len(starts)
    obj = None if object_index is None else np.asarray(object_index, np.int64)
    if n <= 64:
        return extractor.extract_lc(lc, starts, ends, object_index=obj)
    parts_X, parts_ok, parts_why = [], [], []
    i, size = 0, 64
    while i < n:
        j = min(n, i + size)
        t0 = time.perf_counter()
        X, ok, why = extractor.extract_lc(
            lc, starts[i:j], ends[i:j], object_index=None if obj is None else obj[i:j]
        )
        dt = time.perf_counter() - t0
        parts_X.append(np.asarray(X, np.float64).reshape(j - i, -1))
        parts_ok.append(np.asarray(ok, bool))
        parts_why.append(np.asarray(why, dtype=object))
        i = j
        size = int(np.clip(size * BATCH_SECONDS / max(dt, 1e-6), 16, 16_384))
    return np.concatenate(parts_X), np.concatenate(parts_ok), np.concatenate(parts_why)


def _check_extractor(name: str, cls: type[FeatureExtractor]) -> None:
    if not (isinstance(cls, type) and issubclass(cls, FeatureExtractor)):
        raise ConfigError(
            f"register_extractor({name!r}): {cls!r} is not a FeatureExtractor subclass"
        )


#: Feature extractors by name. The built-ins are imported on first use so that importing this module
#: stays cheap.
EXTRACTORS: Registry[type[FeatureExtractor]] = Registry(
    "feature extractor",
    lazy={
        "sigmoid": "earlyia.features.sigmoid",
        "rainbow": "earlyia.features.rainbow",
        "early": "earlyia.features.early",
        "sigmoid_lsst": "earlyia.features.sigmoid_lsst",
        "lsst_early": "earlyia.features.lsst_early",
        "ia_template": "earlyia.features.template",
    },
    check=_check_extractor,
)


def register_extractor(
    name: str, cls: type[FeatureExtractor], *, replace: bool = False
) -> type[FeatureExtractor]:
    """Make ``cls`` available to :func:`get_extractor` under ``name`` (``replace=True`` to
    replace another class)."""
    return EXTRACTORS.register(name, cls, replace=replace)


def available_extractors() -> list[str]:
    """Names :func:`get_extractor` accepts."""
    return sorted(EXTRACTORS.names())


def get_extractor(config_or_name: str | dict | FeatureExtractor, **params: Any) -> FeatureExtractor:
    """An extractor from its name (+ parameters), from a :meth:`~FeatureExtractor.config` dict, or
    as is.

    A config's ``names`` (when present) must match what the rebuilt extractor produces: a model
    trained on other features raises :class:`FeatureMismatchError` instead of scoring garbage.
    """
    if isinstance(config_or_name, FeatureExtractor):
        return config_or_name
    if isinstance(config_or_name, str):
        return _build(config_or_name, params)
    if isinstance(config_or_name, dict):
        if "extractor" not in config_or_name:
            raise ConfigError(f"feature config lacks 'extractor': {config_or_name!r}")
        kwargs = {**config_or_name.get("params", {}), **params}
        ext = _build(config_or_name["extractor"], kwargs)
        want = config_or_name.get("names")
        if want is not None and list(want) != list(ext.names):
            raise FeatureMismatchError(
                f"extractor {ext!r} produces features {list(ext.names)} but the config lists "
                f"{list(want)}"
            )
        return ext
    raise ConfigError(
        "get_extractor expects a name, a config dict or an extractor, got "
        f"{type(config_or_name).__name__}"
    )


def _build(name: str, params: dict[str, Any]) -> FeatureExtractor:
    cls = EXTRACTORS.get(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for extractor {name!r}: {exc}") from exc


def feature_columns(df: pd.DataFrame) -> list[str]:
    """Feature columns of a feature table (everything after the metadata and carried columns)."""
    skip = set(META_COLUMNS) | set(CARRY_COLUMNS)
    return [c for c in df.columns if c not in skip]
