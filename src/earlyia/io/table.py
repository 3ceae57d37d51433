"""The canonical light-curve table: many light curves in contiguous columnar arrays.

Every reader produces a :class:`LightCurves`; every feature extractor consumes one. Photometry
of object ``i`` is rows ``offsets[i]:offsets[i + 1]`` of the photometry arrays, sorted by time
(then band), so per-object and per-alert access are offsets, never a Python object per light
curve. Alerts (when the input had them) are rows of :attr:`LightCurves.alerts`; the light curve
"as of" an alert is the prefix of its object's photometry up to the alert's time, so
:meth:`LightCurves.alert_segments` gives it as another pair of offsets into the same arrays.

Conventions (documented in the README):

* time ``mjd`` is Modified Julian Date (ZTF ``jd - 2400000.5``);
* ``flux``/``flux_err`` are SNANA FLUXCAL (AB zero point 27.5): ``flux = 10**(-0.4 m + 11)``;
* ``detected`` is False for non-detections. A ZTF upper limit has a NaN ``flux`` and a
  ``flux_err`` equal to the 1-sigma flux noise (a 5-sigma limiting magnitude ``m_lim`` gives
  ``10**(-0.4 m_lim + 11) / 5``), NaN when the limit is unknown; forced photometry below the
  detection threshold (ELAsTiCC forced sources, PLAsTiCC ``detected_bool = 0``, SNANA
  ``PHOTFLAG``) keeps its measured finite ``flux`` with ``detected`` False;
* ``alert_id`` is the survey's identifier of the alert that measured the point (ZTF ``candid``),
  -1 where unknown.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from earlyia.errors import FormatError, InputError, Problem, SchemaError
from earlyia.io.output import make_temp_file

FORMAT_VERSION = "earlyia.lightcurves/1"
PHOT_COLUMNS = ("mjd", "band", "flux", "flux_err", "detected", "alert_id")
#: Two points of the same object and band closer than this (days, ~0.9 s) are one epoch.
DUPLICATE_EPOCH_DAYS = 1e-5
JD_MJD_OFFSET = 2400000.5
#: Band names per survey, in wavelength order.
SURVEY_BANDS = {
    "ZTF": ("g", "r", "i"),
    "LSST": ("u", "g", "r", "i", "z", "Y"),
    "DES": ("g", "r", "i", "z"),
}


def atomic_write(path: str | Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a half-written file.

    The temporary (``.<name>.<pid>.<random>.eia-tmp``, see :mod:`earlyia.io.output`) is removed on
    any error or interruption; those of killed runs are removed by the next write in the same
    folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_file(path)
    try:
        write(tmp)
        # mkstemp makes 0600 files; give the result the usual permissions (0666 minus umask)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class LightCurves:
    """Columnar light curves of many objects (see the module docstring for the conventions).

    Attributes:
        objects: one row per object, column ``object_id`` (str) first, then any of ``ra, dec,
            cdsxmatch, ndethist, jdstarthist, drb, classtar, label`` and extra columns.
        offsets: int64 array of length ``n_objects + 1`` into the photometry arrays.
        mjd, flux, flux_err: float64 photometry arrays; ``band`` int8 codes into :attr:`bands`;
            ``detected`` bool; ``alert_id`` int64.
        bands: band names, indexed by the codes in ``band``.
        survey: "ZTF", "LSST", "DES", ... (decides effective wavelengths downstream).
        alerts: one row per alert: ``object_index`` (int), ``alert_id`` (str), ``mjd`` (float)
            and alert-level columns (``ndethist, drb, classtar, cdsxmatch, jdstarthist``, other
            brokers' scores...). Empty when the input had no alert structure.
        problems: objects or rows dropped while building, with the reason.
    """

    objects: pd.DataFrame
    offsets: np.ndarray
    mjd: np.ndarray
    band: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    detected: np.ndarray
    alert_id: np.ndarray
    bands: tuple[str, ...]
    survey: str = ""
    alerts: pd.DataFrame = field(default_factory=lambda: _empty_alerts())
    problems: list[Problem] = field(default_factory=list)

    # ------------------------------------------------------------------ basic access
    def __len__(self) -> int:
        return len(self.objects)

    @property
    def n_objects(self) -> int:
        return len(self.objects)

    @property
    def n_points(self) -> int:
        return int(self.offsets[-1])

    @property
    def object_ids(self) -> np.ndarray:
        return self.objects["object_id"].to_numpy(dtype=object)

    @property
    def starts(self) -> np.ndarray:
        return self.offsets[:-1]

    @property
    def ends(self) -> np.ndarray:
        return self.offsets[1:]

    def band_code(self, name: str) -> int:
        """The int8 code of band ``name``; -1 when this table has no such band."""
        try:
            return self.bands.index(name)
        except ValueError:
            return -1

    def object_index(self, object_ids: Iterable[str]) -> np.ndarray:
        """Row numbers of the given object ids (raises :class:`InputError` for unknown ids)."""
        lookup = pd.Index(self.objects["object_id"])
        ids = list(object_ids)
        idx = lookup.get_indexer(ids)
        if (idx < 0).any():
            missing = [i for i, j in zip(ids, idx, strict=True) if j < 0][:5]
            raise InputError(f"unknown object id(s) {missing}")
        return idx

    def n_detections(self) -> np.ndarray:
        """Number of detections per object."""
        det = np.concatenate([[0], np.cumsum(self.detected, dtype=np.int64)])
        return det[self.offsets[1:]] - det[self.offsets[:-1]]

    def alert_segments(self) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, ends)`` of each alert's light curve as of that alert (its history up to
        it)."""
        if self.alerts.empty:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        obj = self.alerts["object_index"].to_numpy(np.int64)
        starts = self.offsets[obj]
        ends = _prefix_ends(
            self.mjd,
            self.offsets,
            obj,
            self.alerts["mjd"].to_numpy(np.float64) + DUPLICATE_EPOCH_DAYS,
        )
        return starts, ends

    def object_of_point(self) -> np.ndarray:
        """Object row number of every photometry point."""
        return np.repeat(np.arange(self.n_objects), np.diff(self.offsets))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_frames(
        cls,
        phot: pd.DataFrame,
        objects: pd.DataFrame | None = None,
        alerts: pd.DataFrame | None = None,
        *,
        bands: Sequence[str] | None = None,
        survey: str = "",
        source: str = "<memory>",
    ) -> LightCurves:
        """Build the table from long-form photometry (and optional object and alert frames).

        ``phot`` has ``object_id, mjd, band, flux, flux_err`` and optionally ``detected`` (default:
        finite flux) and ``alert_id``. Points are sorted by (object, time, band); duplicate epochs
        (same object and band within :data:`DUPLICATE_EPOCH_DAYS`) keep one point, preferring a
        detection. An object with a point that :func:`validate_photometry` refuses (non-finite or
        absurd time, flux or error) is dropped and reported in ``problems``; a photometry column
        that does not hold numbers raises :class:`SchemaError` naming it. ``objects`` may repeat an
        object (one row per alert): the row with the latest ``mjd``-like information wins (the last
        row given). ``alerts`` needs ``object_id, alert_id, mjd``.
        """
        missing = [
            c for c in ("object_id", "mjd", "band", "flux", "flux_err") if c not in phot.columns
        ]
        if missing:
            raise SchemaError(f"photometry lacks column(s) {missing}", source=source)
        problems: list[Problem] = []
        phot = phot.copy()
        for c in ("mjd", "flux", "flux_err"):
            phot[c] = numeric_values(phot[c], c, source)
        phot["object_id"] = object_id_strings(phot["object_id"], "object_id", source)
        if "detected" not in phot.columns:
            phot["detected"] = np.isfinite(phot["flux"].to_numpy(np.float64))
        if "alert_id" not in phot.columns:
            phot["alert_id"] = -1
        phot["alert_id"] = (
            pd.to_numeric(phot["alert_id"], errors="coerce").fillna(-1).astype(np.int64)
        )
        phot["band"] = phot["band"].astype(str)
        if bands is None:
            known = SURVEY_BANDS.get(survey)
            bands = tuple(known) if known else tuple(sorted(phot["band"].unique()))
        bands = tuple(bands)
        unknown = sorted(set(phot["band"].unique()) - set(bands))
        if unknown:
            bad = phot["band"].isin(unknown)
            for oid in phot.loc[bad, "object_id"].unique():
                problems.append(
                    Problem(
                        source, oid, f"unknown band(s) {unknown}; expected one of {list(bands)}"
                    )
                )
            phot = phot[~phot["object_id"].isin(phot.loc[bad, "object_id"].unique())]

        bad_ids, why = validate_photometry(
            phot["object_id"].to_numpy(object),
            phot["mjd"].to_numpy(np.float64),
            phot["flux"].to_numpy(np.float64),
            phot["flux_err"].to_numpy(np.float64),
            phot["detected"].to_numpy(bool),
        )
        if len(bad_ids):
            problems += [
                Problem(source, str(oid), f"{w}; object dropped")
                for oid, w in zip(bad_ids, why, strict=True)
            ]
            phot = phot[~phot["object_id"].isin(bad_ids)]

        code = pd.Categorical(phot["band"], categories=list(bands)).codes.astype(np.int8)
        phot = phot.assign(_band=code, _nondet=~phot["detected"].to_numpy(bool))
        phot = phot.sort_values(["object_id", "mjd", "_band", "_nondet"], kind="mergesort")
        # duplicate epochs: same object & band and time within tolerance of the previous kept one
        oid = phot["object_id"].to_numpy(object)
        t = phot["mjd"].to_numpy(np.float64)
        b = phot["_band"].to_numpy(np.int8)
        keep = _dedup_mask(oid, t, b)
        phot = phot[keep]

        ids, first = np.unique(phot["object_id"].to_numpy(object), return_index=True)
        order = np.argsort(first)
        ids = ids[order]
        counts = np.diff(np.append(np.sort(first), len(phot)))
        return cls._assemble(
            ids,
            counts,
            phot["mjd"].to_numpy(np.float64).copy(),
            phot["_band"].to_numpy(np.int8).copy(),
            phot["flux"].to_numpy(np.float64).copy(),
            phot["flux_err"].to_numpy(np.float64).copy(),
            phot["detected"].to_numpy(bool).copy(),
            phot["alert_id"].to_numpy(np.int64).copy(),
            objects,
            alerts,
            bands=bands,
            survey=survey,
            source=source,
            problems=problems,
        )

    @classmethod
    def from_sorted_points(
        cls,
        row_object_ids: np.ndarray,
        row_of_point: np.ndarray,
        mjd: np.ndarray,
        band: np.ndarray,
        flux: np.ndarray,
        flux_err: np.ndarray,
        detected: np.ndarray,
        alert_id: np.ndarray,
        objects: pd.DataFrame | None = None,
        alerts: pd.DataFrame | None = None,
        *,
        bands: Sequence[str],
        tiebreak: np.ndarray | None = None,
        survey: str = "",
        source: str = "<memory>",
    ) -> LightCurves | None:
        """:meth:`from_frames` for photometry already in arrays, built with array sorts (no frame
        per point).

        ``row_object_ids``: the object id of each row (alert) of the input; ``row_of_point``: each
        point's row; ``band``: int8 codes into ``bands``; the other arrays as :meth:`from_frames`
        holds them after its checks (float64, bool, int64). Points of one object, time, band and
        detection status are taken in ``tiebreak`` order (ascending, stable; default: their order),
        as :meth:`from_frames` takes them in the order given. Returns the table :meth:`from_frames`
        gives for the same points in that order, or None when the input needs :meth:`from_frames`'
        handling of bad values (a band code outside ``bands``, a point that
        :func:`validate_photometry` refuses): the caller then builds the frame and calls it.
        """
        band = np.asarray(band, np.int8)
        if len(band) and (band.min() < 0 or band.max() >= len(bands)):
            return None
        oid_rows = object_id_strings(row_object_ids, "object_id", source)
        row_of_point = np.asarray(row_of_point, np.int64)
        t = np.asarray(mjd, np.float64)
        f = np.asarray(flux, np.float64)
        e = np.asarray(flux_err, np.float64)
        det = np.asarray(detected, bool)
        aid = np.asarray(alert_id, np.int64)
        bad_ids, _ = validate_photometry(oid_rows[row_of_point], t, f, e, det)
        if len(bad_ids):
            return None
        # objects in id order (from_frames sorts by the id strings), points by time, band,
        # detections first
        uniq, inv = np.unique(oid_rows, return_inverse=True)
        code = inv.reshape(-1)[row_of_point].astype(np.int64)
        keys = [np.asarray(tiebreak, np.int64)] if tiebreak is not None else []
        order = np.lexsort((*keys, ~det, band, t, code))
        code, t, band = code[order], t[order], band[order]
        keep = _dedup_mask(code, t, band)
        order, code = order[keep], code[keep]
        counts = np.bincount(code, minlength=len(uniq))
        present = counts > 0
        return cls._assemble(
            uniq[present],
            counts[present],
            t[keep],
            band[keep],
            f[order],
            e[order],
            det[order],
            aid[order],
            objects,
            alerts,
            bands=tuple(bands),
            survey=survey,
            source=source,
            problems=[],
        )

    @classmethod
    def _assemble(
        cls,
        ids,
        counts,
        mjd,
        band,
        flux,
        flux_err,
        detected,
        alert_id,
        objects,
        alerts,
        *,
        bands,
        survey,
        source,
        problems,
    ) -> LightCurves:
        """The table from sorted, checked points (``counts`` per object of ``ids``, in that
        order) and the object and alert frames of :meth:`from_frames`."""
        offsets = np.zeros(len(ids) + 1, np.int64)
        offsets[1:] = np.cumsum(counts)
        obj = pd.DataFrame({"object_id": ids.astype(str)})
        if objects is not None and len(objects):
            if "object_id" not in objects.columns:
                raise SchemaError("object table lacks column 'object_id'", source=source)
            o = objects.copy()
            o["object_id"] = object_id_strings(o["object_id"], "object_id", source)
            o = o.drop_duplicates("object_id", keep="last")
            obj = obj.merge(o, on="object_id", how="left")
        lc = cls(
            objects=obj.reset_index(drop=True),
            offsets=offsets,
            mjd=mjd,
            band=band,
            flux=flux,
            flux_err=flux_err,
            detected=detected,
            alert_id=alert_id,
            bands=bands,
            survey=survey,
            problems=problems,
        )
        if alerts is not None and len(alerts):
            lc.alerts = lc._index_alerts(alerts, source)
        return lc

    def _index_alerts(self, alerts: pd.DataFrame, source: str) -> pd.DataFrame:
        missing = [c for c in ("object_id", "alert_id", "mjd") if c not in alerts.columns]
        if missing:
            raise SchemaError(f"alert table lacks column(s) {missing}", source=source)
        a = alerts.copy()
        a["object_id"] = a["object_id"].astype(str)
        a["alert_id"] = a["alert_id"].astype(str)
        a = a.drop_duplicates("alert_id", keep="last")
        a["object_index"] = pd.Index(self.objects["object_id"]).get_indexer(a["object_id"])
        a = a[a["object_index"] >= 0]
        a = a.sort_values(["object_index", "mjd"], kind="mergesort")
        cols = ["object_index", "alert_id", "mjd"] + [
            c for c in a.columns if c not in ("object_index", "alert_id", "mjd", "object_id")
        ]
        return a[cols].reset_index(drop=True)

    # ------------------------------------------------------------------ views
    def take(self, indices: Sequence[int] | np.ndarray) -> LightCurves:
        """A new table with the objects at ``indices`` (in that order), their points and alerts."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        alerts = self.alerts
        if not alerts.empty:
            remap = np.full(self.n_objects, -1, np.int64)
            remap[idx] = np.arange(len(idx))
            new = remap[alerts["object_index"].to_numpy(np.int64)]
            alerts = alerts[new >= 0].assign(object_index=new[new >= 0])
            alerts = alerts.sort_values(["object_index", "mjd"], kind="mergesort").reset_index(
                drop=True
            )
        out = self.from_segments(
            self.offsets[idx],
            self.offsets[idx + 1],
            self.objects.iloc[idx].reset_index(drop=True),
            alerts,
        )
        out.problems = list(self.problems)
        return out

    def from_segments(
        self,
        starts: np.ndarray,
        ends: np.ndarray,
        objects: pd.DataFrame,
        alerts: pd.DataFrame | None = None,
    ) -> LightCurves:
        """A new table whose object ``i`` holds this table's points ``starts[i]:ends[i]`` (point
        indices).

        ``objects`` (one row per segment) and ``alerts`` (``object_index`` into the segments) are
        taken as given; bands and survey are this table's.
        """
        starts = np.asarray(starts, np.int64)
        ends = np.asarray(ends, np.int64)
        if len(starts) != len(ends) or len(objects) != len(starts):
            raise ValueError(
                f"from_segments: {len(starts)} starts, {len(ends)} ends and {len(objects)} "
                "objects differ"
            )
        offsets = np.zeros(len(starts) + 1, np.int64)
        offsets[1:] = np.cumsum(ends - starts)
        rows = _segment_rows(starts, ends)
        return LightCurves(
            objects=objects,
            offsets=offsets,
            mjd=self.mjd[rows],
            band=self.band[rows],
            flux=self.flux[rows],
            flux_err=self.flux_err[rows],
            detected=self.detected[rows],
            alert_id=self.alert_id[rows],
            bands=self.bands,
            survey=self.survey,
            alerts=alerts if alerts is not None else _empty_alerts(),
        )

    def truncate(self, max_detections: int) -> LightCurves:
        """Each object's light curve up to (and including) its ``max_detections``-th detection.

        Upper limits before that detection are kept; alerts after it are dropped. This makes
        complete simulated light curves look like early alerts.
        """
        if max_detections < 1:
            raise InputError(f"max_detections must be >= 1, got {max_detections}")
        cum = np.cumsum(self.detected, dtype=np.int64)
        base = np.concatenate([[0], cum])[self.offsets[:-1]]
        per_obj = np.repeat(base, np.diff(self.offsets))
        rank = cum - per_obj  # detections up to and including each point
        # keep points whose rank before them is < max_detections (limits after the N-th go)
        keep = (rank - self.detected.astype(np.int64)) < max_detections
        keep &= ~((rank > max_detections) & self.detected)
        return self._filter_points(keep)

    def _filter_points(self, keep: np.ndarray) -> LightCurves:
        obj = self.object_of_point()
        counts = np.bincount(obj[keep], minlength=self.n_objects)
        offsets = np.zeros(self.n_objects + 1, np.int64)
        offsets[1:] = np.cumsum(counts)
        out = LightCurves(
            objects=self.objects.copy(),
            offsets=offsets,
            mjd=self.mjd[keep],
            band=self.band[keep],
            flux=self.flux[keep],
            flux_err=self.flux_err[keep],
            detected=self.detected[keep],
            alert_id=self.alert_id[keep],
            bands=self.bands,
            survey=self.survey,
            alerts=self.alerts,
            problems=list(self.problems),
        )
        if not out.alerts.empty:
            last = np.full(self.n_objects, -np.inf)
            nonempty = counts > 0
            last[nonempty] = out.mjd[offsets[1:][nonempty] - 1]
            a = out.alerts
            out.alerts = a[
                a["mjd"].to_numpy() <= last[a["object_index"].to_numpy()] + DUPLICATE_EPOCH_DAYS
            ].reset_index(drop=True)
        return out

    def replay(self, min_detections: int = 1, max_detections: int | None = None) -> LightCurves:
        """The same photometry with one virtual alert per detection (the alert-by-alert protocol).

        Alert ``k`` of an object (``alert_id = "<object_id>_<k>"``, ``ndethist = k``) sees the
        history up to its ``k``-th detection; ``k`` runs from ``min_detections`` to
        ``max_detections`` (all detections when None). Object-level columns are copied.
        """
        obj = self.object_of_point()
        cum = np.cumsum(self.detected, dtype=np.int64)
        base = np.concatenate([[0], cum])[self.offsets[:-1]]
        k = cum - base[obj]
        sel = self.detected & (k >= min_detections)
        if max_detections is not None:
            sel &= k <= max_detections
        ids = self.object_ids[obj[sel]]
        alerts = pd.DataFrame(
            {
                "object_index": obj[sel],
                "alert_id": [f"{i}_{n}" for i, n in zip(ids, k[sel], strict=True)],
                "mjd": self.mjd[sel],
                "ndethist": k[sel],
            }
        )
        out = LightCurves(**{**self.__dict__, "alerts": alerts.reset_index(drop=True)})
        return out

    @staticmethod
    def concat(tables: Sequence[LightCurves], *, source: str = "<concat>") -> LightCurves:
        """Merge tables; alerts of the same object merge into one light curve without duplicate
        epochs."""
        tables = [t for t in tables if t is not None]
        if not tables:
            raise InputError("nothing to concatenate: no light curves were read")
        if len(tables) == 1:
            return tables[0]
        surveys = {t.survey for t in tables if t.survey}
        if len(surveys) > 1:
            raise InputError(
                f"cannot merge light curves of different surveys {sorted(surveys)}", source=source
            )
        bands: list[str] = []
        for t in tables:
            bands += [b for b in t.bands if b not in bands]
        survey = surveys.pop() if surveys else ""
        known = SURVEY_BANDS.get(survey)
        if known and set(bands) <= set(known):
            bands = list(known)
        phots, objs, alerts, problems = [], [], [], []
        for t in tables:
            p, o, a = t.to_frames()
            phots.append(p)
            objs.append(o)
            alerts.append(a)
            problems += t.problems
        objects = pd.concat(objs, ignore_index=True)
        al = (
            pd.concat([a for a in alerts if len(a)], ignore_index=True)
            if any(len(a) for a in alerts)
            else None
        )
        out = LightCurves.from_frames(
            pd.concat(phots, ignore_index=True),
            _combine_object_rows(objects),
            al,
            bands=bands,
            survey=survey,
            source=source,
        )
        out.problems = problems + out.problems
        return out

    def to_frames(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(long photometry, objects, alerts) as pandas frames, with object ids (not indices)."""
        phot = pd.DataFrame(
            {
                "object_id": np.repeat(
                    self.objects["object_id"].to_numpy(object), np.diff(self.offsets)
                ),
                "mjd": self.mjd,
                "band": np.asarray(self.bands, dtype=object)[self.band]
                if len(self.band)
                else np.array([], object),
                "flux": self.flux,
                "flux_err": self.flux_err,
                "detected": self.detected,
                "alert_id": self.alert_id,
            }
        )
        alerts = self.alerts.copy()
        if not alerts.empty:
            alerts.insert(
                0,
                "object_id",
                self.objects["object_id"].to_numpy(object)[alerts["object_index"].to_numpy()],
            )
            alerts = alerts.drop(columns="object_index")
        else:
            alerts = pd.DataFrame(columns=["object_id", "alert_id", "mjd"])
        return phot, self.objects.copy(), alerts

    # ------------------------------------------------------------------ parquet
    def to_parquet(self, path: str | Path) -> None:
        """Write one row per object: object columns + list columns of photometry and alerts
        (atomic)."""
        table = self.to_arrow()
        atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))

    def to_arrow(self) -> pa.Table:
        objects = self.objects.reset_index(drop=True)
        base = pa.Table.from_pandas(objects, preserve_index=False)
        off = pa.array(self.offsets.astype(np.int32))
        band_names = (
            np.asarray(self.bands, dtype=object)[self.band]
            if len(self.band)
            else np.array([], object)
        )
        cols = {
            "mjd": pa.array(self.mjd, pa.float64()),
            "band": pa.array(band_names, pa.string()),
            "flux": pa.array(self.flux, pa.float64()),
            "flux_err": pa.array(self.flux_err, pa.float64()),
            "detected": pa.array(self.detected, pa.bool_()),
            "alert_id": pa.array(self.alert_id, pa.int64()),
        }
        for name, values in cols.items():
            base = base.append_column(name, pa.ListArray.from_arrays(off, values))
        if not self.alerts.empty:
            a = self.alerts
            counts = np.bincount(a["object_index"].to_numpy(np.int64), minlength=self.n_objects)
            aoff = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
            flat = pa.Table.from_pandas(a.drop(columns="object_index"), preserve_index=False)
            for name in flat.column_names:
                base = base.append_column(
                    f"alert.{name}",
                    pa.ListArray.from_arrays(aoff, flat.column(name).combine_chunks()),
                )
        meta = {"format": FORMAT_VERSION, "survey": self.survey, "bands": list(self.bands)}
        return base.replace_schema_metadata(
            {**(base.schema.metadata or {}), b"earlyia": json.dumps(meta).encode()}
        )

    @classmethod
    def read_parquet(cls, path: str | Path) -> LightCurves:
        """Read a table written by :meth:`to_parquet` (raises :class:`FormatError` otherwise)."""
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise FormatError(f"cannot read Parquet: {exc}", source=str(path)) from exc
        return cls.from_arrow(table, source=str(path))

    @classmethod
    def from_arrow(cls, table: pa.Table, *, source: str = "<arrow>") -> LightCurves:
        meta_raw = (table.schema.metadata or {}).get(b"earlyia")
        if meta_raw is None:
            raise FormatError(
                "not an earlyia light-curve table (no 'earlyia' schema metadata)", source=source
            )
        meta = json.loads(meta_raw)
        if meta.get("format") != FORMAT_VERSION:
            raise FormatError(
                f"unsupported table format {meta.get('format')!r}; expected {FORMAT_VERSION}",
                source=source,
            )
        missing = [c for c in PHOT_COLUMNS if c not in table.column_names]
        if missing:
            raise SchemaError(f"light-curve table lacks column(s) {missing}", source=source)
        bands = tuple(meta["bands"])

        def flat(name):
            arr = table.column(name).combine_chunks()
            return arr.offsets.to_numpy().astype(np.int64), arr.flatten()

        offsets, mjd = flat("mjd")
        _, band = flat("band")
        code = pd.Categorical(
            band.to_numpy(zero_copy_only=False), categories=list(bands)
        ).codes.astype(np.int8)
        alert_cols = [c for c in table.column_names if c.startswith("alert.")]
        obj_cols = [c for c in table.column_names if c not in PHOT_COLUMNS and c not in alert_cols]
        objects = table.select(obj_cols).to_pandas()
        alerts = _empty_alerts()
        if alert_cols:
            aoff, _ = flat(alert_cols[0])
            data = {"object_index": np.repeat(np.arange(table.num_rows), np.diff(aoff))}
            for c in alert_cols:
                data[c[len("alert.") :]] = table.column(c).combine_chunks().flatten().to_pandas()
            alerts = pd.DataFrame(data)
            alerts["mjd"] = alerts["mjd"].astype(np.float64)
        lc = cls(
            objects=objects,
            offsets=offsets,
            mjd=mjd.to_numpy().astype(np.float64),
            band=code,
            flux=flat("flux")[1].to_numpy(zero_copy_only=False).astype(np.float64),
            flux_err=flat("flux_err")[1].to_numpy(zero_copy_only=False).astype(np.float64),
            detected=flat("detected")[1].to_numpy(zero_copy_only=False).astype(bool),
            alert_id=flat("alert_id")[1].to_numpy(zero_copy_only=False).astype(np.int64),
            bands=bands,
            survey=meta.get("survey", ""),
            alerts=alerts,
        )
        return lc.without_invalid(source)

    def without_invalid(self, source: str) -> LightCurves:
        """This table without the objects :func:`validate_photometry` refuses (reported in
        ``problems``)."""
        oid = np.repeat(
            self.objects["object_id"].astype(str).to_numpy(object), np.diff(self.offsets)
        )
        bad_ids, why = validate_photometry(oid, self.mjd, self.flux, self.flux_err, self.detected)
        if not len(bad_ids):
            return self
        keep = np.flatnonzero(~self.objects["object_id"].astype(str).isin(bad_ids).to_numpy())
        out = self.take(keep)
        out.problems = list(self.problems) + [
            Problem(source, str(o), f"{w}; object dropped")
            for o, w in zip(bad_ids, why, strict=True)
        ]
        return out


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """``table.to_pandas`` without losing digits: top-level integer columns with nulls become
    nullable ``Int64`` (pandas would make them float64, which rounds a 19-digit ZTF ``candid``);
    maps become dicts."""
    nullable_ints = {
        f.type
        for f, col in zip(table.schema, table.columns, strict=True)
        if pa.types.is_integer(f.type) and col.null_count
    }
    mapper = {t: pd.Int64Dtype() for t in nullable_ints}.get if nullable_ints else None
    return table.to_pandas(maps_as_pydicts="strict", types_mapper=mapper)


# ----------------------------------------------------------------------------------------------
# validation
#: Plausible ranges of the canonical photometry; a point outside makes its object unusable (see
#: validate_photometry).
MJD_LIMIT = 1e6  # |mjd| in days: beyond is not a date (a JD is 2.4e6)
FLUX_LIMIT = 1e16  # |FLUXCAL|: brighter than magnitude -12.5
FLUX_ERR_FLOOR = (
    1e-10  # FLUXCAL: a smaller (or denormal, zero, negative) error is not a measurement
)
MAX_SNR = 1e8  # |flux| / flux_err: no survey measures a point better than this


def validate_photometry(
    object_id: np.ndarray,
    mjd: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    detected: np.ndarray,
) -> tuple[np.ndarray, list[str]]:
    """Objects with an unusable point, and why: ``(object ids, reasons)`` (sorted by id; empty when
    all is well).

    The one check of the canonical table's values (every reader ends in
    :meth:`LightCurves.from_frames`). A point is unusable when its time is not finite or beyond
    :data:`MJD_LIMIT`; when a finite flux is beyond :data:`FLUX_LIMIT`; when a detection has no
    finite flux; when a known error (required for a detection, NaN allowed for an upper limit of
    unknown depth) is not finite, below :data:`FLUX_ERR_FLOOR` (zero, denormal, negative), beyond
    :data:`FLUX_LIMIT`, or more than :data:`MAX_SNR` times smaller than the flux. Such values
    overflow or divide by zero in the feature kernels: the object goes, the batch does not.
    """
    det = np.asarray(detected, bool)
    t = np.asarray(mjd, np.float64)
    f = np.asarray(flux, np.float64)
    e = np.asarray(flux_err, np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        bad_time = ~(np.abs(t) < MJD_LIMIT)
        finite_f = np.isfinite(f)
        bad_flux = (finite_f & ~(np.abs(f) < FLUX_LIMIT)) | (det & ~finite_f)
        known_e = det | ~np.isnan(e)
        bad_err = known_e & ~((e >= FLUX_ERR_FLOOR) & (e < FLUX_LIMIT))
        bad_err |= known_e & finite_f & ~bad_err & (np.abs(f) > MAX_SNR * e)
    bad = bad_time | bad_flux | bad_err
    if not bad.any():
        return np.zeros(0, object), []
    rows = np.flatnonzero(bad)
    frame = pd.DataFrame(
        {
            "object_id": np.asarray(object_id, object)[rows],
            "time": bad_time[rows],
            "flux": bad_flux[rows],
            "err": bad_err[rows],
            "t": t[rows],
            "f": f[rows],
            "e": e[rows],
        }
    )
    ids, reasons = [], []
    for oid, grp in frame.groupby("object_id", sort=True):
        what = []
        if grp["time"].any():
            v = grp.loc[grp["time"], "t"].iloc[0]
            what.append(
                "non-finite time"
                if not np.isfinite(v)
                else f"absurd time (mjd {v:g}; expected |mjd| < {MJD_LIMIT:g})"
            )
        if grp["flux"].any():
            v = grp.loc[grp["flux"], "f"].iloc[0]
            absurd = f"absurd flux ({v:g}; expected |flux| < {FLUX_LIMIT:g})"
            what.append("a detection with non-finite flux" if not np.isfinite(v) else absurd)
        if grp["err"].any():
            v = grp.loc[grp["err"], "e"].iloc[0]
            what.append(
                f"a non-finite or non-positive flux error ({v:g})"
                if not (np.isfinite(v) and v > 0)
                else f"an absurd flux error ({v:g}; expected {FLUX_ERR_FLOOR:g} <= error < "
                f"{FLUX_LIMIT:g}, |flux|/error <= {MAX_SNR:g})"
            )
        ids.append(oid)
        reasons.append(f"{', '.join(what)} ({len(grp)} point(s))")
    return np.asarray(ids, dtype=object), reasons


def numeric_values(values, column: str, source: str) -> np.ndarray:
    """A column as float64; :class:`SchemaError` naming it when it holds strings or other
    non-numbers.

    Missing values (None, NaN) become NaN. Numbers stored as text (``"2459000.5"``) are refused too:
    a column of the wrong type says the file is not what its format promises.
    """
    arr = values.to_numpy() if isinstance(values, (pd.Series, pd.Index)) else np.asarray(values)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64, copy=False)
    flat = arr.astype(object).ravel()
    bad = [
        v
        for v in flat
        if not (
            v is None
            or v is pd.NA
            or isinstance(v, (int, float, np.integer, np.floating, bool, np.bool_))
        )
    ]
    if bad:
        kind = type(bad[0]).__name__
        raise SchemaError(
            f"column {column!r} must hold numbers, got {kind} values (e.g. {bad[0]!r})",
            source=source,
        )
    return np.array(
        [np.nan if (v is None or v is pd.NA) else v for v in flat], dtype=np.float64
    ).reshape(arr.shape)


def text_numbers(
    values, column: str, keys, source: str
) -> tuple[np.ndarray, list[Problem], set[str]]:
    """A text (CSV) column as float64, with a :class:`Problem` per object (``keys``: its id per row)
    whose rows hold something that is not a number: ``(values, problems, ids of those objects)``.

    A column where nothing at all is a number raises :class:`SchemaError` naming it.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if series.dtype.kind in "fiub":
        return series.to_numpy(np.float64), [], set()
    out = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
    wrong = (
        np.isnan(out)
        & series.notna().to_numpy()
        & (series.astype(str).str.strip().str.lower() != "nan").to_numpy()
    )
    if not wrong.any():
        return out, [], set()
    if wrong.all():
        raise SchemaError(
            f"column {column!r} must hold numbers, got text (e.g. {series[wrong].iloc[0]!r})",
            source=source,
        )
    keys = np.asarray(keys, dtype=object)
    problems, bad = [], set()
    for oid, vals in pd.Series(series.to_numpy(object)[wrong]).groupby(keys[wrong], sort=True):
        why = (
            f"column {column!r} holds {vals.iloc[0]!r}, not a number ({len(vals)} row(s)); "
            "object dropped"
        )
        problems.append(Problem(source, str(oid), why))
        bad.add(str(oid))
    return out, problems, bad


def object_id_strings(values, column: str, source: str) -> np.ndarray:
    """Object identifiers as strings: strings as they are, integers in their decimal form
    (documented in docs/io.md).

    Floats (``123.0``: an integer id that went through float64 may have lost digits), missing ids
    and other types raise :class:`SchemaError` naming the column.
    """
    arr = values.to_numpy() if isinstance(values, (pd.Series, pd.Index)) else np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(str).astype(object)
    if arr.dtype.kind == "f" or arr.dtype.kind == "b":
        raise SchemaError(
            f"column {column!r} must hold strings or integers (object ids), got {arr.dtype} values",
            source=source,
        )
    if arr.dtype.kind == "U":
        return arr.astype(object)
    arr = arr.astype(object)
    kinds = {type(v) for v in arr}
    if kinds <= {str}:
        return arr
    for v in arr:
        if v is None or v is pd.NA or (isinstance(v, float) and v != v):
            raise SchemaError(
                f"column {column!r} has missing object ids; every row needs one", source=source
            )
        if not isinstance(v, (str, int, np.integer)) or isinstance(v, (bool, np.bool_)):
            raise SchemaError(
                f"column {column!r} must hold strings or integers (object ids), got "
                f"{type(v).__name__} values (e.g. {v!r})",
                source=source,
            )
    return np.array([str(v) for v in arr], dtype=object)


@numba.njit(cache=True)
def _prefix_ends(mjd, offsets, obj, limit):
    """Per alert, the end of its object's points with time <= limit (binary search in the
    object)."""
    out = np.empty(obj.shape[0], np.int64)
    for k in range(obj.shape[0]):
        lo = offsets[obj[k]]
        hi = offsets[obj[k] + 1]
        while lo < hi:
            mid = (lo + hi) // 2
            if mjd[mid] <= limit[k]:
                lo = mid + 1
            else:
                hi = mid
        out[k] = lo
    return out


def _empty_alerts() -> pd.DataFrame:
    return pd.DataFrame(
        {"object_index": np.zeros(0, np.int64), "alert_id": np.zeros(0, object), "mjd": np.zeros(0)}
    )


def _segment_rows(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, e)`` for all segments, vectorised."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    seg_start = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return seg_start + np.arange(total)


def _dedup_mask(oid: np.ndarray, t: np.ndarray, b: np.ndarray) -> np.ndarray:
    """True for points to keep: a point duplicating an earlier kept point (same object, band, ~time)
    goes.

    Input is sorted by (object, time, band, non-detection last), so among duplicates the first is a
    detection when there is one.
    """
    n = len(t)
    keep = np.ones(n, bool)
    if n < 2:
        return keep
    # candidates: consecutive rows within tolerance; check band equality over a small window
    same_obj = np.zeros(n, bool)
    same_obj[1:] = oid[1:] == oid[:-1]
    close = np.zeros(n, bool)
    close[1:] = same_obj[1:] & (np.abs(np.diff(t)) <= DUPLICATE_EPOCH_DAYS)
    for i in np.flatnonzero(close):
        j = i - 1
        while j >= 0 and oid[j] == oid[i] and t[i] - t[j] <= DUPLICATE_EPOCH_DAYS:
            if keep[j] and b[j] == b[i]:
                keep[i] = False
                break
            j -= 1
    return keep


def _combine_object_rows(objects: pd.DataFrame) -> pd.DataFrame:
    """One row per object: the last non-null value of each column over its rows."""
    if objects["object_id"].duplicated().any():
        return objects.groupby("object_id", sort=False).last().reset_index()
    return objects
