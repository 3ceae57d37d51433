"""Rubin (LSST) alerts: Avro packets of every public schema (v3.0-v11.0), Parquet as Fink stores
them, Fink's Rubin data-transfer files, and the Kafka wire format.

A Rubin alert is ``diaSource`` (the detection that triggered it), ``prvDiaSources`` (earlier
detections of the same object), ``prvDiaForcedSources`` (forced photometry at the object's position,
up to a year back), ``prvDiaNondetectionLimits`` (schemas before v8) and ``diaObject`` (the object's
summary). Into the canonical table (:class:`~earlyia.io.table.LightCurves`, survey ``LSST``):

* **Object id**: ``diaObject.diaObjectId``, else ``diaSource.diaObjectId``. An alert of a
  solar-system object (``ssObjectId`` only, no ``diaObject``; Fink writes a missing id as 0) is
  skipped and reported.
* **Alert id**: ``alertId`` (schemas up to v7, ELAsTiCC), else the top-level ``diaSourceId`` (v8 and
  later), else ``diaSource.diaSourceId``.
* **Time** ``midpointMjdTai`` (``midPointTai`` before v5) is an MJD (TAI) and kept as it is.
* **Flux**: ``psfFlux`` / ``psfFluxErr`` (``psFlux`` before v5) in nJy (AB zero point 31.4) become
  FLUXCAL (zero point 27.5): ``FLUXCAL = psfFlux * 10**(-0.4 * 3.9)``
  (:func:`~earlyia.io.photometry.njy_to_fluxcal`), signed (a difference flux).
* **Bands** ``band`` (``filterName`` before v5): ``u g r i z y``, written ``u g r i z Y`` like every
  LSST input.
* ``diaSource`` and ``prvDiaSources`` are detections; ``prvDiaForcedSources`` are measurements
  (signed flux and error, ``detected=False``, never limits), exactly like ELAsTiCC forced
  photometry, and a detection at the same epoch wins; ``prvDiaNondetectionLimits`` are upper limits
  (NaN flux, ``flux_err`` = ``diaNoise``).
* A point without a time, band, flux or positive error is left out and counted per object in
  ``problems``.

Every input ends in :func:`lightcurves_from_records` (decoded alert dictionaries: the reference), in
:func:`lightcurves_from_columns` (Avro containers and wire-format batches decoded by the compiled
columnar walk of :mod:`earlyia.io.avro_columns`, ~10x faster; anything the walk does not read
exactly falls back to the records) or in :func:`lightcurves_from_table` (Arrow tables from Parquet,
vectorised); all produce the same table (tested against each other).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import struct
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import fastavro
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from earlyia.errors import ConfigError, FormatError, InputError, Problem, RemoteError, SchemaError
from earlyia.io.avro_columns import Program, compile_schema, decode_block, decode_columns
from earlyia.io.lsst import HOST_FIELDS, unique_alert_ids
from earlyia.io.photometry import njy_to_fluxcal
from earlyia.io.registry import AVRO_MAGIC, head_bytes, parquet_schema
from earlyia.io.table import SURVEY_BANDS, LightCurves

LSST_BANDS = SURVEY_BANDS["LSST"]
#: Field names across schema versions, newest first.
TIME_FIELDS = ("midpointMjdTai", "midPointTai")
BAND_FIELDS = ("band", "filterName")
FLUX_FIELDS = ("psfFlux", "psFlux")
FLUX_ERR_FIELDS = ("psfFluxErr", "psFluxErr")
DEC_FIELDS = ("dec", "decl")
#: ``diaSource`` fields kept per alert (when present).
SOURCE_ALERT_FIELDS = ("snr", "reliability", "isDipole", "psfFlux_flag", "pixelFlags_saturated")
#: ``diaObject`` fields kept per object (when present): ELAsTiCC's host galaxy, Rubin's counts.
DIAOBJECT_FIELDS = ("nDiaSources", *HOST_FIELDS)
#: Broker structs whose scalar fields become alert columns (Fink's classifier scores).
SCORE_STRUCTS = ("clf",)
_HISTORY = ("prvDiaSources", "prvDiaForcedSources", "prvDiaNondetectionLimits")
_NESTED_TOP = {"diaSource", "diaObject", "ssObject", "ssSource", "MPCORB", "mpc_orbits", *_HISTORY}
#: kind of point: detection (the alert's own diaSource or an earlier one), forced measurement, upper
#: limit
_DETECTION, _FORCED, _LIMIT = 0, 1, 2
_KIND_NAME = {_DETECTION: "detection", _FORCED: "forced-photometry", _LIMIT: "non-detection limit"}


# ----------------------------------------------------------------------------------------------
# shared assembly
@dataclass
class _Batch:
    """Flat arrays of a batch of alerts: per alert (``n``) and per point (``m``)."""

    object_id: list  # str or None per alert
    alert_id: list  # str per alert
    alert_mjd: np.ndarray  # (a list while records are added)
    source_id: (
        np.ndarray
    )  # diaSourceId of each alert's own detection, 0 unknown (a list while records are added)
    alert_cols: dict = field(default_factory=dict)  # name -> array per alert
    object_cols: dict = field(
        default_factory=dict
    )  # name -> array per alert (latest alert wins per object)
    skipped: list = field(default_factory=list)  # Problems of alerts without a usable object
    row: list = field(default_factory=list)  # per point, arrays concatenated at the end
    mjd: list = field(default_factory=list)
    band: list = field(default_factory=list)
    flux: list = field(default_factory=list)
    err: list = field(default_factory=list)
    kind: list = field(default_factory=list)
    pid: list = field(default_factory=list)


def _band_names(values: np.ndarray) -> np.ndarray:
    """Rubin ``y`` -> ``Y`` (our LSST spelling); other values as they are, None stays None."""
    out = np.asarray(values, dtype=object).copy()
    out[out == "y"] = "Y"
    return out


def _assemble(b: _Batch, source: str) -> LightCurves:
    n = len(b.alert_id)
    oid = np.asarray(b.object_id, dtype=object)
    ok_alert = np.array([o is not None for o in oid], bool)
    problems: list[Problem] = list(b.skipped)
    old_ids = np.asarray(b.alert_id, dtype=object)
    alert_ids, id_problems = unique_alert_ids(old_ids, np.where(ok_alert, b.source_id, 0), source)
    problems += id_problems
    if not ok_alert.any():
        detail = "; ".join(
            p.reason if p.object_id is None else f"object {p.object_id}: {p.reason}"
            for p in problems[:3]
        )
        raise InputError(
            f"no alert with a usable object in {n} alert(s): {detail or 'no alert'}", source=source
        )
    row = np.concatenate(b.row).astype(np.int64) if b.row else np.zeros(0, np.int64)
    mjd = np.concatenate(b.mjd).astype(np.float64) if b.mjd else np.zeros(0)
    band = _band_names(np.concatenate(b.band)) if b.band else np.zeros(0, object)
    flux = np.concatenate(b.flux).astype(np.float64) if b.flux else np.zeros(0)
    err = np.concatenate(b.err).astype(np.float64) if b.err else np.zeros(0)
    kind = np.concatenate(b.kind).astype(np.int8) if b.kind else np.zeros(0, np.int8)
    pid = np.concatenate(b.pid).astype(np.int64) if b.pid else np.zeros(0, np.int64)
    renamed = alert_ids != old_ids
    if renamed.any():  # the alert's own detection carries the alert's (new) id
        own = renamed[row] & (
            pid
            == pd.to_numeric(pd.Series(old_ids[row]), errors="coerce").fillna(-2).to_numpy(np.int64)
        )
        pid[own] = b.source_id[row[own]]
    keep = ok_alert[row]
    row, mjd, band, flux, err, kind, pid = (a[keep] for a in (row, mjd, band, flux, err, kind, pid))
    point_oid = oid[row]
    # a point we cannot use is left out, counted per object (the rest of the object is kept)
    known_band = np.isin(band, np.asarray(LSST_BANDS, dtype=object))
    with np.errstate(invalid="ignore"):
        good_err = np.isfinite(err) & (err > 0)
    usable = np.isfinite(mjd) & known_band & good_err & ((kind == _LIMIT) | np.isfinite(flux))
    if not usable.all():
        bad = pd.DataFrame({"o": point_oid[~usable], "k": kind[~usable], "b": band[~usable]})
        for (o, k), grp in bad.groupby(["o", "k"], sort=True):
            unknown = sorted({str(v) for v in grp["b"] if v not in LSST_BANDS})
            why = f" (unknown band(s) {unknown})" if unknown else ""
            problems.append(
                Problem(
                    source,
                    str(o),
                    f"{len(grp)} {_KIND_NAME[int(k)]} point(s) "
                    "without a usable time, band, "
                    f"flux or error{why} left out",
                )
            )
    phot = pd.DataFrame(
        {
            "object_id": point_oid[usable],
            "mjd": mjd[usable],
            "band": band[usable],
            "flux": np.where(kind[usable] == _LIMIT, np.nan, njy_to_fluxcal(flux[usable])),
            "flux_err": njy_to_fluxcal(err[usable]),
            "detected": kind[usable] == _DETECTION,
            "alert_id": pid[usable],
        }
    )
    # the same epochs repeat in every alert of an object: exact repeats go first (a detection, with
    # its id, wins)
    phot = phot.sort_values(
        ["detected", "alert_id"], ascending=False, kind="mergesort"
    ).drop_duplicates(["object_id", "mjd", "band"], keep="first")
    have_points = set(phot["object_id"].unique())
    for o in dict.fromkeys(oid[ok_alert]):
        if o not in have_points:
            problems.append(
                Problem(source, str(o), "no usable point in its alert(s); object dropped")
            )
    alerts = pd.DataFrame({"object_id": oid, "alert_id": alert_ids, "mjd": b.alert_mjd})
    for name, values in b.alert_cols.items():
        alerts[name] = values
    objects = pd.DataFrame({"object_id": oid})
    for name, values in b.object_cols.items():
        objects[name] = values
    alerts, objects = alerts[ok_alert], objects[ok_alert]
    objects = objects.iloc[
        np.argsort(alerts["mjd"].to_numpy(np.float64), kind="mergesort")
    ]  # latest alert wins
    if phot.empty:
        detail = "; ".join(str(p) for p in problems[:3])
        raise InputError(f"no usable photometry in {n} alert(s): {detail}", source=source)
    lc = LightCurves.from_frames(
        phot, objects, alerts, bands=LSST_BANDS, survey="LSST", source=source
    )
    lc.problems = problems + lc.problems
    return lc


def _valid_id(value) -> int | None:
    """An id that names something: not null, not 0 (Fink's Parquet writes a missing id as 0)."""
    if value is None:
        return None
    try:
        v = int(value)
    except (TypeError, ValueError):
        return None
    return v if v != 0 else None


def _skip_reason(k: int, source_id, ss_id) -> str:
    what = f"alert {k} (diaSourceId {source_id})" if source_id is not None else f"alert {k}"
    if ss_id is not None:
        return f"{what}: a solar-system object (ssObjectId {ss_id}) with no diaObject; skipped"
    return f"{what}: no diaObjectId in diaObject or diaSource; skipped"


# ----------------------------------------------------------------------------------------------
# records
def _pick(d: Mapping, names: Sequence[str]) -> str | None:
    for name in names:
        if name in d:
            return name
    return None


def _points(items, kind: int, k: int, b: _Batch, pid_of) -> None:
    items = [p for p in items if isinstance(p, Mapping)]
    if not items:
        return
    first = items[0]
    t, bd = _pick(first, TIME_FIELDS), _pick(first, BAND_FIELDS)
    if kind == _LIMIT:
        f, e = None, "diaNoise"
    else:
        f, e = _pick(first, FLUX_FIELDS), _pick(first, FLUX_ERR_FIELDS)
    m = len(items)
    b.row.append(np.full(m, k, np.int64))
    b.mjd.append(np.array([_flt(p.get(t)) if t else np.nan for p in items], np.float64))
    b.band.append(np.array([p.get(bd) if bd else None for p in items], dtype=object))
    b.flux.append(np.array([_flt(p.get(f)) if f else np.nan for p in items], np.float64))
    b.err.append(np.array([_flt(p.get(e)) if e else np.nan for p in items], np.float64))
    b.kind.append(np.full(m, kind, np.int8))
    b.pid.append(np.array([pid_of(p) for p in items], np.int64))


def _flt(v) -> float:
    if v is None:
        return np.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return np.nan


def _scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def lightcurves_from_records(records: Iterable[dict], source: str = "<records>") -> LightCurves:
    """Decoded Rubin (or ELAsTiCC) alert dictionaries, any schema version -> :class:`LightCurves`.

    What a Kafka consumer, :func:`read_rubin_avro` and :func:`decode_wire` produce. ``records`` may
    be a list or any iterable (a generator is consumed once, alert by alert: only flat arrays are
    kept, never the records). An alert without a usable object (a solar-system object's alert, no
    ``diaSource``) is skipped with a :class:`Problem`; so is each unusable point. Raises
    :class:`InputError` (naming ``source`` and the first reasons) when nothing is usable.
    """
    if isinstance(records, Mapping):
        records = [records]
    b = _Batch(object_id=[], alert_id=[], alert_mjd=[], source_id=[])
    alert_rows: list[dict] = []
    object_rows: list[dict] = []
    for k, rec in enumerate(records):
        row, orow = {}, {}
        alert_rows.append(row)
        object_rows.append(orow)
        b.object_id.append(None)
        b.alert_id.append("")
        b.alert_mjd.append(np.nan)
        b.source_id.append(0)
        src = rec.get("diaSource") if isinstance(rec, Mapping) else None
        if not isinstance(src, Mapping):
            b.skipped.append(Problem(source, None, f"alert {k}: no diaSource record; skipped"))
            continue
        dob = rec.get("diaObject")
        dob = dob if isinstance(dob, Mapping) else {}
        obj = _valid_id(dob.get("diaObjectId")) or _valid_id(src.get("diaObjectId"))
        source_id = src.get("diaSourceId")
        if obj is None:
            ss = _valid_id(src.get("ssObjectId")) or _valid_id(
                (rec.get("ssSource") or {}).get("ssObjectId")
            )
            ss = ss or _valid_id((rec.get("ssObject") or {}).get("ssObjectId"))
            b.skipped.append(
                Problem(
                    source,
                    None if ss is None else f"ssObjectId={ss}",
                    _skip_reason(k, source_id, ss),
                )
            )
            continue
        alert = _valid_id(rec.get("alertId"))
        by_source = alert is None
        alert = (
            alert
            if alert is not None
            else (_valid_id(rec.get("diaSourceId")) or _valid_id(source_id))
        )
        b.object_id[k] = str(obj)
        b.source_id[k] = _valid_id(source_id) or 0
        b.alert_id[k] = str(alert) if alert is not None else f"{obj}@{Path(source).name}:{k}"
        own = alert if alert is not None else -1

        def history_id(p, by_source=by_source):
            return (_valid_id(p.get("diaSourceId")) or -1) if by_source else -1

        _points([src], _DETECTION, k, b, lambda p, own=own: own)
        t = _pick(src, TIME_FIELDS)
        b.alert_mjd[k] = _flt(src.get(t)) if t else np.nan
        _points(rec.get("prvDiaSources") or [], _DETECTION, k, b, history_id)
        _points(rec.get("prvDiaForcedSources") or [], _FORCED, k, b, lambda p: -1)
        _points(rec.get("prvDiaNondetectionLimits") or [], _LIMIT, k, b, lambda p: -1)
        row["ra"] = _flt(src.get("ra"))
        d = _pick(src, DEC_FIELDS)
        row["dec"] = _flt(src.get(d)) if d else np.nan
        for name in SOURCE_ALERT_FIELDS:
            if name in src:
                row[name] = src[name]
        for key, value in rec.items():
            if key in _NESTED_TOP or key.startswith("cutout") or key in ("alertId", "diaSourceId"):
                continue
            if _scalar(value):
                row[key] = value
            elif key in SCORE_STRUCTS and isinstance(value, Mapping):
                row.update({f: v for f, v in value.items() if _scalar(v)})
        orow["ra"] = _flt(dob.get("ra", src.get("ra")))
        d = _pick(dob, DEC_FIELDS)
        orow["dec"] = _flt(dob.get(d)) if d else row["dec"]
        for name in DIAOBJECT_FIELDS:
            if name in dob:
                orow[name] = dob[name]
    if not b.alert_id:
        raise InputError("no alert given", source=source)
    b.alert_mjd = np.asarray(b.alert_mjd, np.float64)
    b.source_id = np.asarray(b.source_id, np.int64)
    for rows, target in ((alert_rows, b.alert_cols), (object_rows, b.object_cols)):
        names = list(dict.fromkeys(name for r in rows for name in r))
        for name in names:
            target[name] = _typed(np.array([r.get(name) for r in rows], dtype=object))
    return _assemble(b, source)


def _typed(values: np.ndarray) -> np.ndarray:
    """An alert or object column of Python values (None where missing): numbers as a numeric
    array, else as it is."""
    conv = pd.to_numeric(pd.Series(values), errors="coerce")
    if conv.notna().sum() == pd.Series(values).notna().sum() and not any(
        isinstance(v, str) for v in values
    ):
        return conv.to_numpy()
    return values


# ----------------------------------------------------------------------------------------------
# Arrow tables
def _sfield(arr: pa.Array | None, names: Sequence[str]) -> pa.Array | None:
    if arr is None or not pa.types.is_struct(arr.type):
        return None
    for name in names:
        i = arr.type.get_field_index(name)
        if i >= 0:
            return pc.struct_field(arr, [i])
    return None


def _f64(arr: pa.Array | None, n: int) -> np.ndarray:
    if arr is None:
        return np.full(n, np.nan)
    return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)


def _i64(arr: pa.Array | None, n: int) -> np.ndarray:
    """int64 ids, null -> 0 (= missing, as Fink writes it)."""
    if arr is None:
        return np.zeros(n, np.int64)
    return pc.fill_null(pc.cast(arr, pa.int64()), 0).to_numpy(zero_copy_only=False)


def _objs(arr: pa.Array | None, n: int) -> np.ndarray:
    if arr is None:
        return np.full(n, None, dtype=object)
    return np.asarray(arr.to_pylist(), dtype=object)


def _column(table: pa.Table, name: str) -> pa.Array | None:
    if name not in table.column_names:
        return None
    return table.column(name).combine_chunks()


def lightcurves_from_table(table: pa.Table, source: str = "<table>") -> LightCurves:
    """Rubin alerts as an Arrow table (Fink's Parquet, a data-transfer part): the records'
    result, vectorised."""
    n = table.num_rows
    if n == 0:
        raise InputError("the file holds no alert (0 rows)", source=source)
    src = _column(table, "diaSource")
    if src is None or not pa.types.is_struct(src.type):
        raise SchemaError(
            f"not a Rubin alert table: no 'diaSource' struct (have {table.column_names[:12]})",
            source=source,
        )
    dob = _column(table, "diaObject")
    dob = dob if dob is not None and pa.types.is_struct(dob.type) else None
    obj = _i64(_sfield(dob, ("diaObjectId",)), n)
    obj = np.where(obj != 0, obj, _i64(_sfield(src, ("diaObjectId",)), n))
    source_id = _i64(_sfield(src, ("diaSourceId",)), n)
    alert_col = _column(table, "alertId")
    by_source = alert_col is None
    alert = _i64(alert_col, n) if alert_col is not None else _i64(_column(table, "diaSourceId"), n)
    alert = np.where(alert != 0, alert, source_id)
    b = _Batch(
        object_id=[str(o) if o != 0 else None for o in obj],
        alert_id=[
            str(a) if a != 0 else f"{o}@{Path(source).name}:{i}"
            for i, (a, o) in enumerate(zip(alert, obj, strict=True))
        ],
        alert_mjd=_f64(_sfield(src, TIME_FIELDS), n),
        source_id=source_id,
    )
    if (obj == 0).any():
        ss = _i64(_sfield(src, ("ssObjectId",)), n)
        sss = _column(table, "ssSource")
        ss = np.where(ss != 0, ss, _i64(_sfield(sss, ("ssObjectId",)), n))
        for k in np.flatnonzero(obj == 0):
            ssk = int(ss[k]) if ss[k] != 0 else None
            b.skipped.append(
                Problem(
                    source,
                    None if ssk is None else f"ssObjectId={ssk}",
                    _skip_reason(int(k), int(source_id[k]), ssk),
                )
            )

    def add(items: pa.Array, rows: np.ndarray, kind: int, pid: np.ndarray) -> None:
        m = len(rows)
        b.row.append(rows)
        b.mjd.append(_f64(_sfield(items, TIME_FIELDS), m))
        b.band.append(_objs(_sfield(items, BAND_FIELDS), m))
        b.flux.append(
            _f64(_sfield(items, FLUX_FIELDS), m) if kind != _LIMIT else np.full(m, np.nan)
        )
        b.err.append(_f64(_sfield(items, ("diaNoise",) if kind == _LIMIT else FLUX_ERR_FIELDS), m))
        b.kind.append(np.full(m, kind, np.int8))
        b.pid.append(pid)

    add(src, np.arange(n), _DETECTION, np.where(alert != 0, alert, -1))
    for column, kind in zip(_HISTORY, (_DETECTION, _FORCED, _LIMIT), strict=True):
        col = _column(table, column)
        if col is None or not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
            continue
        lens = (
            pc.fill_null(pc.list_value_length(col), 0)
            .to_numpy(zero_copy_only=False)
            .astype(np.int64)
        )
        items = col.flatten()
        if not len(items):
            continue
        m = len(items)
        if kind == _DETECTION and by_source:
            pid = _i64(_sfield(items, ("diaSourceId",)), m)
            pid = np.where(pid != 0, pid, -1)
        else:
            pid = np.full(m, -1, np.int64)
        add(items, np.repeat(np.arange(n), lens), kind, pid)

    b.alert_cols["ra"] = _f64(_sfield(src, ("ra",)), n)
    b.alert_cols["dec"] = _f64(_sfield(src, DEC_FIELDS), n)
    for name in SOURCE_ALERT_FIELDS:
        arr = _sfield(src, (name,))
        if arr is not None:
            b.alert_cols[name] = arr.to_numpy(zero_copy_only=False)
    for c in table.column_names:
        typ = table.schema.field(c).type
        if c in _NESTED_TOP or c.startswith("cutout") or c in ("alertId", "diaSourceId"):
            continue
        if (
            pa.types.is_integer(typ)
            or pa.types.is_floating(typ)
            or pa.types.is_boolean(typ)
            or pa.types.is_string(typ)
        ):
            b.alert_cols[c] = table.column(c).to_numpy()
        elif c in SCORE_STRUCTS and pa.types.is_struct(typ):
            arr = table.column(c).combine_chunks()
            for f in typ:
                if (
                    pa.types.is_integer(f.type)
                    or pa.types.is_floating(f.type)
                    or pa.types.is_boolean(f.type)
                    or pa.types.is_string(f.type)
                ):
                    b.alert_cols[f.name] = _sfield(arr, (f.name,)).to_numpy(zero_copy_only=False)
    ora, odec = _f64(_sfield(dob, ("ra",)), n), _f64(_sfield(dob, DEC_FIELDS), n)
    b.object_cols["ra"] = np.where(np.isfinite(ora), ora, b.alert_cols["ra"])
    b.object_cols["dec"] = np.where(np.isfinite(odec), odec, b.alert_cols["dec"])
    for name in DIAOBJECT_FIELDS:
        arr = _sfield(dob, (name,))
        if arr is not None:
            b.object_cols[name] = arr.to_numpy(zero_copy_only=False)
    return _assemble(b, source)


def _bulky(typ: pa.DataType) -> bool:
    return pa.types.is_nested(typ) or pa.types.is_binary(typ) or pa.types.is_large_binary(typ)


def _parquet_columns(pf: pq.ParquetFile) -> list[str]:
    """The leaf columns the table builder uses: of ``diaSource``, its histories, ``diaObject``
    and ``ssSource`` only the fields it reads (a history record has ~100), Fink's scores,
    top-level scalars; never cutouts."""
    arrow = pf.schema_arrow
    keep = []
    for i in range(len(pf.schema)):
        path = pf.schema.column(i).path
        parts = path.split(".")
        top = parts[0]
        if top in ("diaSource", "diaObject", "ssSource", *_HISTORY):
            if parts[-1] in _NESTED_KEEP and len(parts) in (2, 4):
                keep.append(path)
        elif top in SCORE_STRUCTS or (
            len(parts) == 1 and top in arrow.names and not _bulky(arrow.field(top).type)
        ):
            keep.append(path)
    return keep


def read_rubin_parquet(path: str | Path) -> LightCurves:
    """Rubin alerts in Parquet as Fink stores them (``lsst.v7_4`` ... ``lsst.v10_0``) or sends
    them (data transfer)."""
    path = Path(path)
    try:
        pf = pq.ParquetFile(path)
        table = pf.read(columns=_parquet_columns(pf))
    except (OSError, pa.ArrowException) as exc:
        raise FormatError(
            f"cannot read Parquet ({exc}); is the file complete?", source=str(path)
        ) from exc
    return lightcurves_from_table(table, source=str(path))


def detect_rubin_parquet(path: Path) -> bool:
    """Parquet whose ``diaSource`` struct has Rubin's field names (``midpointMjdTai``; ELAsTiCC
    has ``midPointTai``)."""
    schema = parquet_schema(Path(path))
    if schema is None or "diaSource" not in schema.names:
        return False
    typ = schema.field("diaSource").type
    return pa.types.is_struct(typ) and typ.get_field_index("midpointMjdTai") >= 0


# ----------------------------------------------------------------------------------------------
# Avro projection
#: Fields of nested records (diaSource, diaForcedSource, diaNondetectionLimit, diaObject, ssSource)
#: the reader uses.
_NESTED_KEEP = frozenset(
    (
        "diaSourceId",
        "diaObjectId",
        "ssObjectId",
        *TIME_FIELDS,
        *BAND_FIELDS,
        *FLUX_FIELDS,
        *FLUX_ERR_FIELDS,
        "diaNoise",
        "ra",
        *DEC_FIELDS,
        *SOURCE_ALERT_FIELDS,
        *DIAOBJECT_FIELDS,
    )
)
#: Top-level nested fields never read (cutouts, orbits, Fink's cross-matches and light-curve
#: features).
_TOP_SKIP = frozenset(("ssObject", "MPCORB", "mpc_orbits", "lc_features", "xm", "pred", "misc"))


def project_schema(schema: dict) -> dict:
    """A reader schema with only the fields the reader uses: fastavro then skips the rest of
    every alert (the ~100 fields of each of hundreds of history records), several times faster
    and far smaller in memory."""
    defined: set[str] = set()

    def walk(node, top: bool):
        if isinstance(node, list):
            return [walk(x, top) for x in node]
        if not isinstance(node, dict):
            return node
        kind = node.get("type")
        if kind == "record":
            name = node.get("name")
            defined.add(name)
            fields = []
            for f in node.get("fields", []):
                fname = f["name"]
                if top:
                    if fname.startswith("cutout") or fname in _TOP_SKIP:
                        continue
                    keep_all = fname in SCORE_STRUCTS
                    fields.append({**f, "type": f["type"] if keep_all else walk(f["type"], False)})
                elif fname in _NESTED_KEEP:
                    fields.append(f)
            return {**node, "fields": fields}
        if kind in ("array", "map"):
            key = "items" if kind == "array" else "values"
            return {**node, key: walk(node[key], top)}
        if isinstance(kind, (dict, list)):
            return {**node, "type": walk(kind, top)}
        return node

    out = walk(schema, True)
    return out


# ----------------------------------------------------------------------------------------------
# Avro, columnar
#: What the columnar walk keeps of an alert besides its top-level scalars: the fields the records'
#: reader uses of the nested records (exactly :func:`project_schema`'s), the solar-system id, and
#: Fink's scores.
_WANTED = {
    **{name: set(_NESTED_KEEP) for name in ("diaSource", "diaObject", *_HISTORY)},
    "ssSource": {"ssObjectId"},
    **{name: None for name in SCORE_STRUCTS},
}
#: Block bytes decoded per walk when reading a container (bounded memory however large the file).
_CHUNK_BYTES = 32 << 20


@dataclass
class _RubinProgram:
    """A compiled walk of a Rubin writer schema and what the columnar assembly needs to know of
    the schema."""

    program: Program
    top: list[str]  # top-level fields, in the schema's order
    nullable_scores: (
        bool  # a score struct may be null (the records' reader then keeps it as a null column)
    )


_PROGRAMS: dict[int, tuple[object, _RubinProgram | None]] = {}


def _base_type(schema, named: dict):
    """The type of a field with any union with null removed and names resolved (a list when
    several types remain)."""
    if isinstance(schema, list):
        rest = [x for x in schema if x != "null"]
        return _base_type(rest[0], named) if len(rest) == 1 else rest
    if isinstance(schema, str):
        return named.get(schema, schema)
    if isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list)):
        return _base_type(schema["type"], named)
    return schema


def named_types(schema, named: dict) -> dict:
    """``named`` filled with every named type (record, enum, fixed) of an Avro ``schema``, by name
    and by full name."""
    if isinstance(schema, list):
        for x in schema:
            named_types(x, named)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed") and "name" in schema:
            named[schema["name"]] = schema
            if "namespace" in schema:
                named[f"{schema['namespace']}.{schema['name']}"] = schema
        for f in schema.get("fields", []):
            named_types(f["type"], named)
        for key in ("items", "values", "type"):
            if isinstance(schema.get(key), (dict, list)):
                named_types(schema[key], named)
    return named


def _compile_rubin(schema) -> _RubinProgram | None:
    """The columnar walk of a Rubin writer schema, or None when its alerts need the records'
    reader to give the same table (a top-level field that is neither a scalar nor one of the
    known records, a kept field of several types)."""
    if not (isinstance(schema, dict) and schema.get("type") == "record"):
        return None
    named = named_types(schema, {})
    try:
        prog = compile_schema(schema, _WANTED)
    except (ValueError, KeyError, TypeError):
        return None
    kept: dict[tuple[str, ...], int] = {c.path: c.kind for c in prog.columns if not c.marker}
    top = [f["name"] for f in schema["fields"]]
    nullable_scores = False
    for f in schema["fields"]:
        name = f["name"]
        if name.startswith("cutout") or name in _TOP_SKIP:
            continue
        typ = _base_type(f["type"], named)
        is_record = isinstance(typ, dict) and typ.get("type") == "record"
        is_array = isinstance(typ, dict) and typ.get("type") == "array"
        if name in _NESTED_TOP or name in SCORE_STRUCTS:
            if name in _HISTORY and is_array:
                typ = _base_type(typ["items"], named)
                is_record = isinstance(typ, dict) and typ.get("type") == "record"
            elif name in _HISTORY:
                return None
            if not is_record:
                return None
            if name in SCORE_STRUCTS:
                nullable_scores |= isinstance(f["type"], list)
                if {g["name"] for g in typ["fields"]} & {
                    "ra",
                    "dec",
                }:  # would overwrite the alert's position
                    return None
            if name not in _WANTED:
                continue
            fields = [
                g["name"]
                for g in typ["fields"]
                if _WANTED[name] is None or g["name"] in _WANTED[name]
            ]
            if any(
                kept.get((name, g), -1) == -1 for g in fields
            ):  # a field of several types, bytes, a record...
                return None
        elif kept.get((name,), -1) == -1 or name in (
            "ra",
            "dec",
        ):  # not a plain scalar, or the alert's position
            return None
    return _RubinProgram(prog, top, nullable_scores)


def rubin_program(schema) -> _RubinProgram | None:
    """:func:`_compile_rubin` of a parsed schema, compiled once per schema object."""
    hit = _PROGRAMS.get(id(schema))
    if hit is None or hit[0] is not schema:
        if len(_PROGRAMS) > 64:
            _PROGRAMS.clear()
        hit = (schema, _compile_rubin(schema))
        _PROGRAMS[id(schema)] = hit
    return hit[1]


def _pylist(arr: pa.Array | None, n: int) -> list:
    return [None] * n if arr is None else arr.to_pylist()


def _strs(arr: pa.Array | None, n: int) -> np.ndarray:
    """Strings as an object array (None where null), through a dictionary: a few distinct bands,
    millions of points."""
    if arr is None:
        return np.full(n, None, dtype=object)
    enc = pc.dictionary_encode(arr)
    values = np.asarray([*enc.dictionary.to_pylist(), None], dtype=object)
    idx = pc.fill_null(enc.indices, len(enc.dictionary)).to_numpy(zero_copy_only=False)
    return values[idx]


def lightcurves_from_columns(
    table: pa.Table, rp: _RubinProgram, source: str = "<columns>"
) -> LightCurves | None:
    """The alerts decoded by the columnar walk (:func:`earlyia.io.avro_columns.decode_columns`
    with :func:`rubin_program`) -> the very table :func:`lightcurves_from_records` gives of the
    same alerts (tested on every sample and on generated alerts); None in the one case it does
    not reproduce (a score struct missing from some alerts): read those alerts as records."""
    n = table.num_rows
    if n == 0:
        raise InputError("no alert given", source=source)
    names = set(table.column_names)

    def column(name: str) -> pa.Array | None:
        return table.column(name).combine_chunks() if name in names else None

    def valid(arr: pa.Array | None) -> np.ndarray:
        return (
            np.zeros(n, bool)
            if arr is None
            else np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), bool)
        )

    def has(arr: pa.Array | None, name: str) -> bool:
        return (
            arr is not None and pa.types.is_struct(arr.type) and arr.type.get_field_index(name) >= 0
        )

    def sub(arr: pa.Array | None, name: str) -> pa.Array | None:
        return pc.struct_field(arr, [arr.type.get_field_index(name)]) if has(arr, name) else None

    def pick(arr: pa.Array | None, options: Sequence[str]) -> str | None:
        return next((o for o in options if has(arr, o)), None)

    src, dob, sss = column("diaSource"), column("diaObject"), column("ssSource")
    src_ok, dob_ok, sss_ok = valid(src), valid(dob), valid(sss)
    scores = {name: column(name) for name in SCORE_STRUCTS if name in names}
    if any(not valid(arr)[src_ok].all() for arr in scores.values()):
        return None
    src_obj, dob_obj = _pylist(sub(src, "diaObjectId"), n), _pylist(sub(dob, "diaObjectId"), n)
    src_sid, src_ss, sss_ss = (
        _pylist(sub(src, "diaSourceId"), n),
        _pylist(sub(src, "ssObjectId"), n),
        _pylist(sub(sss, "ssObjectId"), n),
    )
    top_alert, top_sid = _pylist(column("alertId"), n), _pylist(column("diaSourceId"), n)
    t_src, d_src = pick(src, TIME_FIELDS), pick(src, DEC_FIELDS)
    src_mjd = _f64(sub(src, t_src), n) if t_src else np.full(n, np.nan)
    b = _Batch(
        object_id=[None] * n,
        alert_id=[""] * n,
        alert_mjd=np.full(n, np.nan),
        source_id=np.zeros(n, np.int64),
    )
    ok = np.zeros(n, bool)
    by_source = np.zeros(n, bool)
    own = np.full(n, -1, np.int64)
    for k in range(n):
        if not src_ok[k]:
            b.skipped.append(Problem(source, None, f"alert {k}: no diaSource record; skipped"))
            continue
        obj = _valid_id(dob_obj[k] if dob_ok[k] else None) or _valid_id(src_obj[k])
        if obj is None:
            ss = _valid_id(src_ss[k]) or _valid_id(sss_ss[k] if sss_ok[k] else None)
            b.skipped.append(
                Problem(
                    source,
                    None if ss is None else f"ssObjectId={ss}",
                    _skip_reason(k, src_sid[k], ss),
                )
            )
            continue
        ok[k] = True
        alert = _valid_id(top_alert[k])
        by_source[k] = alert is None
        alert = alert if alert is not None else (_valid_id(top_sid[k]) or _valid_id(src_sid[k]))
        b.object_id[k] = str(obj)
        b.source_id[k] = _valid_id(src_sid[k]) or 0
        b.alert_id[k] = str(alert) if alert is not None else f"{obj}@{Path(source).name}:{k}"
        own[k] = alert if alert is not None else -1
        b.alert_mjd[k] = src_mjd[k]

    # points: each alert's own detection, then its histories, alert by alert (the order the records
    # give)
    parts = [(src, np.arange(n), _DETECTION, own)]
    for name, kind in zip(_HISTORY, (_DETECTION, _FORCED, _LIMIT), strict=True):
        col = column(name)
        if col is None:
            continue
        lens = (
            pc.fill_null(pc.list_value_length(col), 0)
            .to_numpy(zero_copy_only=False)
            .astype(np.int64)
        )
        rows = np.repeat(np.arange(n), lens)
        items = col.flatten()
        if items.null_count:  # a null item (Fink's schemas allow them) is no point
            there = np.asarray(items.is_valid().to_numpy(zero_copy_only=False), bool)
            items, rows = items.filter(pa.array(there)), rows[there]
        if kind == _DETECTION:
            ids = _i64(sub(items, "diaSourceId"), len(items))
            pid = np.where(by_source[rows] & (ids != 0), ids, -1)
        else:
            pid = np.full(len(items), -1, np.int64)
        parts.append((items, rows, kind, pid))
    rows = np.concatenate([p[1] for p in parts])
    order = np.argsort(rows, kind="stable")
    m = len(rows)
    b.row.append(rows[order])
    for target, values in (
        (
            b.mjd,
            [
                _f64(sub(a, pick(a, TIME_FIELDS)), len(r))
                if pick(a, TIME_FIELDS)
                else np.full(len(r), np.nan)
                for a, r, _, _ in parts
            ],
        ),
        (
            b.band,
            [
                _strs(sub(a, pick(a, BAND_FIELDS)), len(r))
                if pick(a, BAND_FIELDS)
                else np.full(len(r), None, dtype=object)
                for a, r, _, _ in parts
            ],
        ),
        (
            b.flux,
            [
                np.full(len(r), np.nan)
                if k == _LIMIT or not pick(a, FLUX_FIELDS)
                else _f64(sub(a, pick(a, FLUX_FIELDS)), len(r))
                for a, r, k, _ in parts
            ],
        ),
        (
            b.err,
            [
                _f64(sub(a, e), len(r))
                if (
                    e := (
                        "diaNoise"
                        if k == _LIMIT and has(a, "diaNoise")
                        else None
                        if k == _LIMIT
                        else pick(a, FLUX_ERR_FIELDS)
                    )
                )
                else np.full(len(r), np.nan)
                for a, r, k, _ in parts
            ],
        ),
        (b.kind, [np.full(len(r), k, np.int8) for _, r, k, _ in parts]),
        (b.pid, [p for _, _, _, p in parts]),
    ):
        flat = np.concatenate(values) if values else np.zeros(m)
        target.append(flat[order])

    # alert and object columns: the keys of the records' rows, in their order, None where an alert
    # has none
    alert_cols: dict[str, object] = {
        "ra": _f64(sub(src, "ra"), n),
        "dec": _f64(sub(src, d_src), n) if d_src else np.full(n, np.nan),
    }
    for name in SOURCE_ALERT_FIELDS:
        if has(src, name):
            alert_cols[name] = sub(src, name)
    for key in rp.top:
        if (
            key in _NESTED_TOP
            or key in _TOP_SKIP
            or key.startswith("cutout")
            or key in ("alertId", "diaSourceId")
        ):
            continue
        if key in scores:
            for f in scores[key].type:
                alert_cols[f.name] = sub(scores[key], f.name)
        elif key in names:
            alert_cols[key] = column(key)
    object_cols: dict[str, object] = {}
    ra_src = alert_cols["ra"]
    ora = _f64(sub(dob, "ra"), n) if has(dob, "ra") else ra_src
    object_cols["ra"] = np.where(dob_ok, ora, ra_src)
    d_dob = pick(dob, DEC_FIELDS)
    odec = _f64(sub(dob, d_dob), n) if d_dob else alert_cols["dec"]
    object_cols["dec"] = np.where(dob_ok, odec, alert_cols["dec"])
    if (dob_ok & ok).any():
        for name in DIAOBJECT_FIELDS:
            if has(dob, name):
                object_cols[name] = sub(dob, name)
    for cols, target, present in ((alert_cols, b.alert_cols, ok), (object_cols, b.object_cols, ok)):
        for name, values in cols.items():
            vals = np.asarray(
                values.to_pylist()
                if isinstance(values, (pa.Array, pa.ChunkedArray))
                else list(values),
                dtype=object,
            )
            if name in object_cols and cols is object_cols and name in DIAOBJECT_FIELDS:
                vals[~dob_ok] = None
            vals[~present] = None
            target[name] = _typed(vals)
    return _assemble(b, source)


# ----------------------------------------------------------------------------------------------
# Avro files
def _open_binary(path: Path):
    """A gzip-compressed file (by magic bytes) opened decompressed, else the file itself."""
    if head_bytes(path, 2) == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_rubin_avro(path: str | Path) -> LightCurves:
    """Rubin / ELAsTiCC alert Avro: one alert or a container of many (Fink's data transfer), plain
    or gzip-compressed.

    Alerts are decoded one by one into flat arrays (never all held as records). A container damaged
    after some alerts keeps them and reports a :class:`Problem`.
    """
    path = Path(path)
    problems: list[Problem] = []
    try:
        fh = _open_binary(path)
    except OSError as exc:
        raise FormatError(
            f"cannot read Avro ({type(exc).__name__}: {exc}); is the file complete?",
            source=str(path),
        ) from exc
    with fh:
        try:
            blocks = fastavro.block_reader(fh)  # the header only, so far
            writer, schema_text = blocks.writer_schema, blocks.metadata.get("avro.schema")
        except (
            Exception
        ) as exc:  # isolation boundary: a damaged header, not Avro at all, a missing codec
            raise FormatError(
                f"cannot read Avro ({type(exc).__name__}: {exc}); is the file complete?",
                source=str(path),
            ) from exc
        fast = _read_avro_columns(path, blocks, writer, schema_text)
    if fast is not None:
        return fast
    try:
        reader_schema = project_schema(writer)
    except Exception as exc:  # isolation boundary: a schema of unexpected shape
        raise FormatError(
            f"cannot read Avro ({type(exc).__name__}: {exc}); is the file complete?",
            source=str(path),
        ) from exc

    def alerts(fh):
        it = iter(fastavro.reader(fh, reader_schema=reader_schema))
        k = 0
        while True:
            try:
                rec = next(it)
            except StopIteration:
                return
            except (
                Exception
            ) as exc:  # isolation boundary: fastavro raises many types on damaged blocks
                if not k:
                    raise FormatError(
                        f"cannot read Avro ({type(exc).__name__}: {exc}); is the file complete?",
                        source=str(path),
                    ) from exc
                problems.append(
                    Problem(
                        str(path),
                        None,
                        f"Avro data damaged after {k} alert(s) "
                        f"({type(exc).__name__}: {exc}); rest skipped",
                    )
                )
                return
            k += 1
            yield rec

    try:
        with _open_binary(path) as fh:
            lc = lightcurves_from_records(alerts(fh), source=str(path))
    except OSError as exc:
        raise FormatError(f"cannot read ({exc}); is the file complete?", source=str(path)) from exc
    except InputError as exc:
        if str(exc).endswith("no alert given"):
            raise FormatError("Avro file holds no alert", source=str(path)) from exc
        raise
    lc.problems = problems + lc.problems
    return lc


def _avro_tables(blocks, prog: Program):
    """The alerts of a container (``blocks``: its ``fastavro.block_reader``) as Arrow tables (by
    chunks of blocks), or None at the first thing the walk does not read exactly (damaged blocks
    included: the records' reader then says where)."""
    tables = []
    chunk: list[bytes] = []
    counts: list[int] = []
    count = size = 0

    def flush() -> bool:
        nonlocal chunk, counts, count, size
        if not count:
            return True
        if all(
            c == 1 for c in counts
        ):  # one alert per block (alerts larger than the sync interval): each block is a message
            table, bad = decode_columns(prog, chunk)
            ok = not bad.any()
        else:
            data = chunk[0] if len(chunk) == 1 else b"".join(chunk)
            table, bad, used = decode_block(prog, data, count)
            ok = not bad.any() and used == len(data)
        chunk, counts, count, size = [], [], 0, 0
        if ok:
            tables.append(table)
        return ok

    try:
        for block in blocks:
            data = (
                block.bytes_.getvalue()
                if hasattr(block.bytes_, "getvalue")
                else bytes(block.bytes_)
            )
            chunk.append(data)
            counts.append(block.num_records)
            count += block.num_records
            size += len(data)
            if size >= _CHUNK_BYTES and not flush():
                return None
        if not flush():
            return None
    # isolation boundary: fastavro raises many types on damaged blocks; the records' reader reports
    # them
    except Exception:
        return None
    return tables


#: Compiled walks of the containers' schemas, by the schema's text in the file header (many files,
#: one schema).
_FILE_PROGRAMS: dict[str, _RubinProgram | None] = {}


def _read_avro_columns(
    path: Path, blocks, writer, schema_text: str | None = None
) -> LightCurves | None:
    """:func:`read_rubin_avro` by the compiled columnar walk (the same table, many times faster);
    None when the file needs the records' reader (a schema the walk does not reproduce, damaged
    data, no alert)."""
    if schema_text is not None and schema_text in _FILE_PROGRAMS:
        rp = _FILE_PROGRAMS[schema_text]
    else:
        try:
            rp = _compile_rubin(writer)
        except (
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
        ):  # a schema of unexpected shape: the records' reader
            rp = None
        if schema_text is not None:
            if len(_FILE_PROGRAMS) > 64:
                _FILE_PROGRAMS.clear()
            _FILE_PROGRAMS[schema_text] = rp
    if rp is None:
        return None
    try:
        tables = _avro_tables(blocks, rp.program)
        if not tables:
            return None
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    except (
        pa.ArrowException
    ):  # a kept string that is not UTF-8, say: the records' reader says which
        return None
    return lightcurves_from_columns(table, rp, source=str(path))


def detect_rubin_avro(path: Path) -> bool:
    """An Avro container (plain or gzip-compressed) whose schema (header) has ``diaSource``."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with _open_binary(path) as fh:
            if fh.read(4) != AVRO_MAGIC:  # the usual answer, without decompressing further
                return False
            head = fh.read(65536)
    except (
        OSError,
        EOFError,
        zlib.error,
    ):  # a damaged file: its reader says so if another detector takes it
        return False
    return b"diaSource" in head


# ----------------------------------------------------------------------------------------------
# Kafka wire format
#: Confluent wire format: magic byte 0, then the schema id as a 4-byte big-endian integer, then
#: schemaless Avro.
WIRE_HEADER = struct.Struct(">bI")


def split_wire(message: bytes) -> tuple[int, bytes]:
    """``(schema id, Avro payload)`` of one Kafka message in the wire format;
    :class:`FormatError` otherwise."""
    if not isinstance(message, (bytes, bytearray, memoryview)) or len(message) < WIRE_HEADER.size:
        raise FormatError(
            f"not a wire-format message: {len(message) if message is not None else 0} "
            "byte(s), need at least 5"
        )
    magic, schema_id = WIRE_HEADER.unpack_from(message)
    if magic != 0:
        raise FormatError(
            f"not a wire-format message: first byte {magic}, expected 0 (an Avro container "
            "file starts 'Obj')"
        )
    return schema_id, bytes(message[WIRE_HEADER.size :])


def redact_url(url: str) -> str:
    """``url`` without user name, password or query (safe to print)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class SchemaRegistry:
    """Avro schemas by id from a Confluent-compatible schema registry (``GET
    {url}/schemas/ids/{id}``), cached.

    Credentials in the URL (``https://user:pass@host``) are sent as HTTP basic auth and never shown
    in errors.
    """

    def __init__(self, url: str, *, timeout: float = 10.0):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"schema registry URL must be http(s)://host[:port][/path], got {redact_url(url)!r}"
            )
        self._base = urllib.parse.urlunsplit(
            (parts.scheme, parts.netloc.rpartition("@")[2], parts.path.rstrip("/"), "", "")
        )
        self._auth = None
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            token = f"{user}:{urllib.parse.unquote(parts.password or '')}"
            self._auth = "Basic " + base64.b64encode(token.encode()).decode()
        self.url = redact_url(url)
        self.timeout = timeout
        self._cache: dict[int, dict] = {}

    def schema(self, schema_id: int) -> dict:
        """The parsed schema of ``schema_id`` (:class:`RemoteError` when the registry has none or
        fails)."""
        if schema_id in self._cache:
            return self._cache[schema_id]
        req = urllib.request.Request(
            f"{self._base}/schemas/ids/{int(schema_id)}", headers={"Accept": "application/json"}
        )
        if self._auth:
            req.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = json.loads(resp.read().decode("utf-8"))
            parsed = fastavro.parse_schema(json.loads(body["schema"]))
        except urllib.error.HTTPError as exc:
            raise RemoteError(
                f"schema registry {self.url}: schema id {schema_id}: HTTP {exc.code}",
                status=exc.code,
                permanent=exc.code < 500,
            ) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RemoteError(
                f"schema registry {self.url} unreachable ({reason})", permanent=False
            ) from exc
        except (ValueError, KeyError, TypeError, fastavro.schema.SchemaParseException) as exc:
            raise RemoteError(
                f"schema registry {self.url}: schema id {schema_id}: not an Avro schema ({exc})"
            ) from exc
        self._cache[schema_id] = parsed
        return parsed


def load_schema(path: str | Path) -> dict:
    """A parsed Avro schema from a ``.avsc`` / JSON file (the schema of the wire-format
    messages)."""
    path = Path(path)
    try:
        return fastavro.parse_schema(json.loads(path.read_text()))
    except (OSError, ValueError, fastavro.schema.SchemaParseException) as exc:
        raise ConfigError(
            f"{path}: not a readable Avro schema ({exc}); give the alert schema (.avsc)"
        ) from exc


_PROJECTED: dict[int, tuple[dict, dict]] = {}


def _projected(schema: dict) -> dict:
    """:func:`project_schema` of a parsed schema, computed once per schema object."""
    hit = _PROJECTED.get(id(schema))
    if hit is None or hit[0] is not schema:
        hit = (schema, fastavro.parse_schema(project_schema(schema)))
        _PROJECTED[id(schema)] = hit
    return hit[1]


def decode_wire(
    message: bytes,
    *,
    registry: SchemaRegistry | None = None,
    schema: dict | None = None,
    project: bool = False,
) -> dict:
    """One wire-format Kafka message -> the alert dictionary (schema from ``schema`` if given, else
    the registry).

    ``project=True`` decodes only the fields :func:`lightcurves_from_records` uses (much faster)."""
    schema_id, payload = split_wire(message)
    if schema is None:
        if registry is None:
            raise ConfigError(
                "decoding wire-format messages needs a schema: give a schema file or a "
                "schema registry URL"
            )
        schema = registry.schema(schema_id)
    try:
        return fastavro.schemaless_reader(
            io.BytesIO(payload), schema, _projected(schema) if project else None
        )
    except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError, struct.error) as exc:
        raise FormatError(
            f"wire-format message (schema id {schema_id}) does not decode with its schema "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def lightcurves_from_wire(
    messages: Iterable[bytes],
    *,
    registry: SchemaRegistry | None = None,
    schema: dict | None = None,
    source: str = "<kafka>",
) -> LightCurves:
    """Wire-format messages -> table; a message that does not decode becomes a :class:`Problem`, the
    rest is read.

    Messages of one schema are decoded together by the compiled columnar walk
    (:func:`lightcurves_from_columns`); any batch it does not read exactly (a message that does
    not decode, several schemas) is decoded one by one."""
    messages = list(messages)
    fast = _wire_columns(messages, registry=registry, schema=schema, source=source)
    if fast is not None:
        return fast
    problems: list[Problem] = []

    def decoded():
        for k, msg in enumerate(messages):
            try:
                yield decode_wire(msg, registry=registry, schema=schema, project=True)
            except FormatError as exc:
                problems.append(Problem(source, None, f"message {k}: {exc}; skipped"))

    try:
        lc = lightcurves_from_records(decoded(), source=source)
    except InputError as exc:
        if problems and str(exc).endswith("no alert given"):
            raise InputError(
                "no message decoded: " + "; ".join(p.reason for p in problems[:3]), source=source
            ) from exc
        raise
    lc.problems = problems + lc.problems
    return lc


def _wire_columns(
    messages: list, *, registry: SchemaRegistry | None, schema: dict | None, source: str
) -> LightCurves | None:
    """:func:`lightcurves_from_wire` by the columnar walk, or None when the batch needs decoding
    one by one."""
    if not messages:
        return None
    payloads = []
    schema_ids = set()
    for msg in messages:
        if (
            not isinstance(msg, (bytes, bytearray, memoryview))
            or len(msg) < WIRE_HEADER.size
            or msg[0] != 0
        ):
            return None
        schema_ids.add(WIRE_HEADER.unpack_from(msg)[1])
        payloads.append(memoryview(msg)[WIRE_HEADER.size :])
    if schema is None:
        if registry is None or len(schema_ids) != 1:
            return None
        schema = registry.schema(next(iter(schema_ids)))
    rp = rubin_program(schema)
    if rp is None:
        return None
    try:
        table, bad = decode_columns(rp.program, payloads)
    except (
        ValueError,
        TypeError,
        IndexError,
        pa.ArrowException,
    ):  # a kept string that is not UTF-8, say
        return None
    if bad.any():
        return None
    return lightcurves_from_columns(table, rp, source=source)


def read_wire_files(
    paths: Iterable[str | Path],
    *,
    registry: SchemaRegistry | None = None,
    schema: dict | None = None,
) -> LightCurves:
    """Files that each hold one wire-format message (as a consumer dumps them) -> one table; a
    file that does not decode is a :class:`Problem` naming it, the others are read."""
    paths = [Path(p) for p in paths]
    records, problems = [], []
    for p in paths:
        try:
            rec = decode_wire(p.read_bytes(), registry=registry, schema=schema, project=True)
        except OSError as exc:
            problems.append(Problem(str(p), None, f"cannot read ({exc})"))
            continue
        except FormatError as exc:
            problems.append(Problem(str(p), None, str(exc)))
            continue
        records.append(rec)
    source = str(paths[0]) if len(paths) == 1 else f"{len(paths)} wire-format messages"
    if not records:
        raise InputError(
            "no message decoded: " + ("; ".join(str(p) for p in problems[:3]) or "no input"),
            source=source,
        )
    lc = lightcurves_from_records(records, source=source)
    lc.problems = problems + lc.problems
    return lc


__all__ = [
    "SchemaRegistry",
    "decode_wire",
    "detect_rubin_avro",
    "detect_rubin_parquet",
    "lightcurves_from_columns",
    "lightcurves_from_records",
    "lightcurves_from_table",
    "lightcurves_from_wire",
    "load_schema",
    "read_rubin_avro",
    "read_rubin_parquet",
    "read_wire_files",
    "redact_url",
    "rubin_program",
    "split_wire",
]
