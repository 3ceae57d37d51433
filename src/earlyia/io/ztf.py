"""ZTF alert packets: Avro files (one alert or a multi-alert container) and alert tables in Parquet.

An alert is ``candidate`` (the new detection) plus ``prv_candidates`` (up to 30 days of history:
detections, and non-detections with a null ``magpsf`` whose ``diffmaglim`` is the 5-sigma limit),
and from schema 4.0 ``fp_hists``: forced photometry at the alert's position on every recent image. A
forced-photometry record (``forcediffimflux`` in DN with its ``magzpsci``, in ``fp_hists`` or, as in
schema 3.5's test packets, in ``prv_candidates``) is a measurement: its signed flux and error in
FLUXCAL, detected above 5 sigma, never an upper limit; records with ``procstatus`` other than
``'0'`` or a missing flux are left out (counted per object). Each alert becomes one row of
``LightCurves.alerts`` (``alert_id = str(candid)``); the photometry of all alerts of an object is
merged (duplicate epochs removed). ``isdiffpos`` is applied (negative differences give negative
fluxes), and the candidate's fields ``ra, dec, ndethist, jdstarthist, drb, rb, classtar, isdiffpos,
magnr...`` and the top-level scalars added by brokers (``cdsxmatch``, Fink scores
``rf_snia_vs_nonia, snn_*, rfscore, snn``...) are alert columns; object columns come from each
object's latest alert.

Parquet comes nested (``candidate`` struct + ``prv_candidates`` list of structs, as Fink and the ZTF
archive write it) or flattened (``cand_<field>`` columns + ``prv_candidates``): both are read with
Arrow kernels, no Python object per point.
"""

from __future__ import annotations

import io
import lzma
import tarfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import fastavro
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from earlyia.errors import FormatError, InputError, Problem, SchemaError
from earlyia.io.fink import CANDIDATE_ALERT_FIELDS, points_to_lightcurves
from earlyia.io.photometry import ztf_forced_to_fluxcal
from earlyia.io.registry import is_avro, is_tar, parquet_schema
from earlyia.io.table import LightCurves, object_id_strings

POINT_FIELDS = ("jd", "fid", "magpsf", "sigmapsf", "diffmaglim", "isdiffpos", "candid")
#: Fields of a forced-photometry record (``fp_hists`` of schema 4.x, or such records inside
#: ``prv_candidates``).
FORCED_FIELDS = ("forcediffimflux", "forcediffimfluxunc", "magzpsci", "procstatus")
_SKIP_TOP = {
    "candidate",
    "prv_candidates",
    "fp_hists",
    "cutoutScience",
    "cutoutTemplate",
    "cutoutDifference",
    "objectId",
}


# ----------------------------------------------------------------------------------------------
# records (Avro)
def lightcurves_from_alert_records(
    records: list[Mapping], *, source: str = "<memory>", survey: str = "ZTF"
) -> LightCurves:
    """ZTF alert packets as dictionaries (``objectId, candid, candidate, prv_candidates``, extra
    scalars)."""
    problems: list[Problem] = []
    cols: dict[str, list] = {k: [] for k in (*POINT_FIELDS, *FORCED_FIELDS, "_forced")}
    lengths: list[int] = []
    oids: list[str] = []
    alert_rows: list[dict] = []
    for k, rec in enumerate(records):
        oid = rec.get("objectId") if isinstance(rec, Mapping) else None
        if oid is None and isinstance(rec, Mapping) and rec.get("alertId") is not None:
            oid = rec[
                "alertId"
            ]  # schema 1.1 has no objectId: each alert is its own object, named by its alertId
        cand = rec.get("candidate") if isinstance(rec, Mapping) else None
        if oid is None or not isinstance(cand, Mapping):
            problems.append(
                Problem(
                    source,
                    None if oid is None else str(oid),
                    f"alert {k}: no objectId or candidate record; skipped",
                )
            )
            continue
        if cand.get("jd") is None or cand.get("fid") is None:
            problems.append(
                Problem(source, str(oid), f"alert {k}: candidate without jd/fid; skipped")
            )
            continue
        prv = rec.get("prv_candidates") or []
        fp = rec.get("fp_hists") or []
        pts = (
            [p for p in prv if isinstance(p, Mapping)]
            + [p for p in fp if isinstance(p, Mapping)]
            + [cand]
        )
        for name in (*POINT_FIELDS, *FORCED_FIELDS):
            cols[name].extend(p.get(name) for p in pts)
        cols["_forced"].extend(_is_forced_record(p) for p in pts)
        lengths.append(len(pts))
        oids.append(str(oid))
        row = {name: cand.get(name) for name in CANDIDATE_ALERT_FIELDS if name in cand}
        row["candid"] = rec.get("candid", cand.get("candid"))
        for key, value in rec.items():
            if key in _SKIP_TOP or key in row:
                continue
            if isinstance(value, (str, int, float, bool)) or value is None:
                row[key] = value
        alert_rows.append(row)
    if not lengths:
        raise InputError(
            "no readable alert: " + ("; ".join(str(p) for p in problems[:3]) or "no alerts"),
            source=source,
        )
    alerts = pd.DataFrame(alert_rows)
    alerts["alert_id"] = [
        str(c) if c is not None else f"{o}@{Path(source).name}:{i}"
        for i, (c, o) in enumerate(zip(alerts["candid"], oids, strict=True))
    ]
    lc = points_to_lightcurves(
        np.asarray(oids, dtype=object),
        np.asarray(lengths, np.int64),
        jd=_floats(cols["jd"]),
        mag=_floats(cols["magpsf"]),
        sigma=_floats(cols["sigmapsf"]),
        fid=_floats(cols["fid"]),
        isdiffpos=np.asarray(cols["isdiffpos"], dtype=object),
        diffmaglim=_floats(cols["diffmaglim"]),
        candid=np.array([-1 if c is None else int(c) for c in cols["candid"]], np.int64),
        alert_columns=alerts,
        source=source,
        survey=survey,
        forced=_forced(
            cols["forcediffimflux"],
            cols["forcediffimfluxunc"],
            cols["magzpsci"],
            cols["procstatus"],
            cols["_forced"],
        ),
    )
    lc.problems = problems + lc.problems
    return lc


def _is_forced_record(p: Mapping) -> bool:
    """A forced-photometry record: it carries ``forcediffimflux`` and no PSF-fit magnitude of its
    own."""
    return "forcediffimflux" in p and p.get("magpsf") is None


def _forced(flux, unc, zp, status, is_forced) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per point: forced FLUXCAL, its error and whether the point is a forced record (None when
    none is)."""

    is_forced = np.asarray(is_forced, bool)
    if not is_forced.any():
        return None
    f, e, _ok = ztf_forced_to_fluxcal(
        _floats(flux), _floats(unc), _floats(zp), np.asarray(status, dtype=object)
    )
    return np.where(is_forced, f, np.nan), np.where(is_forced, e, np.nan), is_forced


def _floats(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _avro_records(fh, source: str) -> tuple[list[dict], list[Problem]]:
    """Alert records of one Avro stream (cutouts dropped); damage after some alerts keeps them
    and adds a Problem."""
    records: list[dict] = []
    problems: list[Problem] = []
    try:
        it = iter(fastavro.reader(fh))
        while True:
            try:
                rec = next(it)
            except StopIteration:
                break
            except Exception as exc:  # fastavro raises many types on damaged blocks
                if not records:
                    raise
                problems.append(
                    Problem(
                        source,
                        None,
                        f"Avro data damaged after {len(records)} alert(s) "
                        f"({type(exc).__name__}: {exc}); rest skipped",
                    )
                )
                break
            for key in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
                rec.pop(key, None)
            records.append(rec)
    except Exception as exc:  # a damaged header, a missing codec library, not Avro at all
        raise FormatError(
            f"cannot read Avro ({type(exc).__name__}: {exc}); is the file complete and an "
            "alert file?",
            source=source,
        ) from exc
    if not records:
        raise FormatError("Avro file holds no alert", source=source)
    return records, problems


def read_ztf_avro(path: str | Path, *, survey: str = "ZTF") -> LightCurves:
    """Read ZTF/Fink Avro: one alert or a multi-alert container, or a tar archive of them (ZTF's
    nightly tarballs).

    Codecs null, deflate, snappy (needs ``cramjam``). A container truncated or corrupted after some
    alerts keeps the alerts before the damage and reports a :class:`Problem`; so does an unreadable
    member of a tar archive. Nothing readable at all raises :class:`FormatError`.
    """
    path = Path(path)
    if not _is_tar(path):
        with open(path, "rb") as fh:
            records, problems = _avro_records(fh, str(path))
        lc = lightcurves_from_alert_records(records, source=str(path), survey=survey)
        lc.problems = problems + lc.problems
        return lc
    records, problems = [], []
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                if not (member.isfile() and member.name.endswith(".avro")):
                    continue
                name = f"{path}:{member.name}"
                try:
                    recs, probs = _avro_records(io.BytesIO(tar.extractfile(member).read()), name)
                except FormatError as exc:
                    problems.append(Problem(name, None, str(exc)[len(name) + 2 :]))
                    continue
                records += recs
                problems += probs
    except (tarfile.TarError, lzma.LZMAError, EOFError, OSError, zlib.error) as exc:
        if not records:
            raise FormatError(
                f"cannot read tar archive ({type(exc).__name__}: {exc}); is it complete?",
                source=str(path),
            ) from exc
        problems.append(
            Problem(
                str(path),
                None,
                f"archive damaged after {len(records)} alert(s) ({exc}); rest skipped",
            )
        )
    if not records:
        raise FormatError(
            "no readable Avro alert in the archive"
            + (f" ({problems[0].reason})" if problems else ""),
            source=str(path),
        )
    lc = lightcurves_from_alert_records(records, source=str(path), survey=survey)
    lc.problems = problems + lc.problems
    return lc


def _is_tar(path: Path) -> bool:
    return is_tar(path)


def detect_ztf_avro(path: Path) -> bool:
    """Avro magic bytes (``Obj\\x01``) and a schema with ``candidate`` (header only), or a tar
    with ``.avro`` members."""
    path = Path(path)
    if _is_tar(path):
        with tarfile.open(path, "r|*") as tar:
            for k, member in enumerate(tar):
                if member.isfile():
                    return member.name.endswith(".avro")
                if k > 20:
                    break
        return False
    if not is_avro(path):
        return False
    with open(path, "rb") as fh:
        head = fh.read(65536)
    return b"candidate" in head


# ----------------------------------------------------------------------------------------------
# Arrow tables
def _struct_field(arr: pa.Array, name: str) -> pa.Array | None:
    t = arr.type
    if not pa.types.is_struct(t) or t.get_field_index(name) < 0:
        return None
    return pc.struct_field(arr, [t.get_field_index(name)])


def _np_float(arr: pa.Array | None, n: int, name: str = "") -> np.ndarray:
    if arr is None:
        return np.full(n, np.nan)
    t = arr.type
    if not (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_null(t)
        or pa.types.is_boolean(t)
    ):
        raise SchemaError(f"field {name!r} must hold numbers, got {t}")
    return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)


def exact_pandas(arr: pa.Array | pa.ChunkedArray) -> pd.Series:
    """An Arrow column as pandas without losing digits: integers with nulls become nullable
    ``Int64``, not float64 (a ZTF ``candid`` has 19 digits, more than a float64 holds)."""
    if pa.types.is_integer(arr.type) and arr.null_count:
        return pd.Series(arr.to_pandas(types_mapper={arr.type: pd.Int64Dtype()}.get), dtype="Int64")
    return arr.to_pandas()


def _id_text(value) -> str:
    """An alert id as text: integers exactly, integral floats without '.0'."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def _np_int(arr: pa.Array | None, n: int) -> np.ndarray:
    if arr is None:
        return np.full(n, -1, np.int64)
    return pc.cast(arr, pa.int64()).fill_null(-1).to_numpy(zero_copy_only=False)


def _np_obj(arr: pa.Array | None, n: int) -> np.ndarray:
    if arr is None:
        return np.full(n, None, dtype=object)
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return arr.to_numpy(
            zero_copy_only=False
        )  # str and None, as to_pylist, without a list in between
    return np.asarray(arr.to_pylist(), dtype=object)


def lightcurves_from_alert_table(
    table: pa.Table, *, source: str = "<memory>", survey: str = "ZTF"
) -> LightCurves:
    """An Arrow table of ZTF alerts, nested (``candidate``) or flattened (``cand_*``), with
    ``prv_candidates``."""
    names = table.column_names
    if "objectId" not in names:
        raise SchemaError(
            f"ZTF alert table lacks column 'objectId' (have {names[:12]})", source=source
        )
    n = table.num_rows
    if n == 0:
        raise InputError("the alert table has no rows", source=source)
    nested = "candidate" in names
    if nested:
        cand = table.column("candidate").combine_chunks()

        def cfield(name: str) -> pa.Array | None:
            return _struct_field(cand, name)
    elif any(c.startswith("cand_") for c in names):

        def cfield(name: str) -> pa.Array | None:
            return (
                table.column(f"cand_{name}").combine_chunks() if f"cand_{name}" in names else None
            )
    else:
        raise SchemaError(
            "ZTF alert table has neither a 'candidate' struct nor 'cand_*' columns", source=source
        )
    missing = [req for req in ("jd", "fid", "magpsf", "sigmapsf") if cfield(req) is None]
    if missing:
        raise SchemaError(f"ZTF candidate lacks field(s) {missing}", source=source)

    # history: list<struct> columns (null list -> none); per row its prv_candidates, then fp_hists,
    # then the candidate
    def history(column: str) -> tuple[np.ndarray, pa.Array | None]:
        if column not in names:
            return np.zeros(n, np.int64), None
        col = table.column(column).combine_chunks()
        if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
            if pa.types.is_null(col.type):
                return np.zeros(n, np.int64), None  # every row null: no history
            raise SchemaError(
                f"column {column!r} must be a list of records, got {col.type}", source=source
            )
        col = col.fill_null(pa.scalar([], type=col.type)) if col.null_count else col
        return pc.list_value_length(col).to_numpy(zero_copy_only=False).astype(
            np.int64
        ), col.flatten()

    prv_len, items = history("prv_candidates")
    fp_len, fp_items = history("fp_hists")
    lengths = prv_len + fp_len + 1
    total = int(lengths.sum())
    row_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    kind = np.zeros(total, np.int8)  # 0 prv_candidates, 1 fp_hists, 2 candidate
    kind[np.cumsum(lengths) - 1] = 2
    if fp_len.any():
        first_fp = np.repeat(row_start + prv_len, fp_len)
        kind[
            first_fp
            + (np.arange(int(fp_len.sum())) - np.repeat(np.cumsum(fp_len) - fp_len, fp_len))
        ] = 1

    def merged(name: str, conv) -> np.ndarray:
        try:
            parts = (
                conv(
                    _struct_field(items, name) if items is not None and len(items) else None,
                    int(prv_len.sum()),
                ),
                conv(
                    _struct_field(fp_items, name)
                    if fp_items is not None and len(fp_items)
                    else None,
                    int(fp_len.sum()),
                ),
                conv(cfield(name), n),
            )
        except SchemaError as exc:
            raise SchemaError(
                f"{exc} (candidate, prv_candidates or fp_hists)", source=source
            ) from exc
        out = np.empty(
            total, dtype=parts[0].dtype if all(p.dtype == parts[0].dtype for p in parts) else object
        )
        for k, values in enumerate(parts):
            out[kind == k] = values
        return out

    forced_flux = merged("forcediffimflux", _np_float)
    is_forced = np.isfinite(forced_flux) | (kind == 1)
    is_forced &= ~np.isfinite(merged("magpsf", _np_float))
    forced = None
    if is_forced.any():
        ff, fe, _ok = ztf_forced_to_fluxcal(
            forced_flux,
            merged("forcediffimfluxunc", _np_float),
            merged("magzpsci", _np_float),
            merged("procstatus", _np_obj),
        )
        forced = (np.where(is_forced, ff, np.nan), np.where(is_forced, fe, np.nan), is_forced)

    def floats(name: str) -> np.ndarray:
        return merged(name, lambda arr, k: _np_float(arr, k, name))

    jd = floats("jd")
    mag = floats("magpsf")
    sigma = floats("sigmapsf")
    fid = floats("fid")
    lim = floats("diffmaglim")
    cid = merged("candid", _np_int)
    isd = merged("isdiffpos", _np_obj)

    alert = {}
    for name in CANDIDATE_ALERT_FIELDS:
        arr = cfield(name)
        if arr is not None:
            alert[name] = exact_pandas(arr)
    for c in names:
        if c in _SKIP_TOP or c.startswith("cand_") or c in alert:
            continue
        typ = table.schema.field(c).type
        if (
            pa.types.is_integer(typ)
            or pa.types.is_floating(typ)
            or pa.types.is_boolean(typ)
            or pa.types.is_string(typ)
            or pa.types.is_large_string(typ)
        ):
            alert[c] = exact_pandas(table.column(c).combine_chunks())
    alerts = pd.DataFrame(alert)
    oid_col = table.column("objectId").combine_chunks()
    if not (
        pa.types.is_integer(oid_col.type)
        or pa.types.is_string(oid_col.type)
        or pa.types.is_large_string(oid_col.type)
    ):
        raise SchemaError(
            f"column 'objectId' must hold strings or integers (object ids), got {oid_col.type}",
            source=source,
        )
    oids = object_id_strings(exact_pandas(oid_col), "objectId", source)
    if "candid" in alerts.columns:
        cand_ids = alerts["candid"].to_numpy(object)
        alerts["alert_id"] = [
            _id_text(c) if not pd.isna(c) else f"{o}@{Path(source).name}:{i}"
            for i, (c, o) in enumerate(zip(cand_ids, oids, strict=True))
        ]
    else:
        alerts["alert_id"] = [f"{o}@{Path(source).name}:{i}" for i, o in enumerate(oids)]
    return points_to_lightcurves(
        oids,
        lengths,
        jd=jd,
        mag=mag,
        sigma=sigma,
        fid=fid,
        isdiffpos=isd,
        diffmaglim=lim,
        candid=cid,
        alert_columns=alerts,
        source=source,
        survey=survey,
        forced=forced,
    )


def read_ztf_alert_parquet(path: str | Path, *, survey: str = "ZTF") -> LightCurves:
    """Read ZTF alerts stored as Parquet (nested or flattened ``cand_*``; cutouts are never
    loaded)."""
    path = Path(path)
    try:
        schema = pq.read_schema(path)
        keep = [c for c in schema.names if not c.startswith("cutout")]
        table = pq.read_table(path, columns=keep)
    except (OSError, pa.ArrowException) as exc:
        raise FormatError(
            f"cannot read Parquet ({exc}); is the file complete?", source=str(path)
        ) from exc
    return lightcurves_from_alert_table(table, source=str(path), survey=survey)


def detect_ztf_alert_parquet(path: Path) -> bool:
    """Parquet with ``objectId`` and a ``candidate`` struct or ``cand_jd`` column
    (``prv_candidates`` optional, unless Fink's ``cjd, cmagpsf...`` lists hold the history
    instead)."""
    schema = parquet_schema(Path(path))
    if schema is None or "objectId" not in schema.names:
        return False
    has_fink_lists = all(c in schema.names for c in ("cjd", "cmagpsf", "csigmapsf", "cfid"))
    if "prv_candidates" not in schema.names and has_fink_lists:
        return False  # the history is only in Fink's lists: the fink_parquet reader uses them
    if "candidate" in schema.names:
        return pa.types.is_struct(schema.field("candidate").type)
    return "cand_jd" in schema.names and "cand_magpsf" in schema.names
