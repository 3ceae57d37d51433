"""LSST-like simulations: PLAsTiCC CSV and ELAsTiCC alerts (Parquet), both ugrizY, one code path.

Both formats give fluxes, not magnitudes; :func:`lightcurves_from_flux_points` turns long flux
photometry into the canonical table for any survey/band set, and the two readers only differ in how
they find the columns:

* **PLAsTiCC** (``object_id, mjd, passband (0-5 = u,g,r,i,z,y), flux, flux_err, detected_bool``):
  the fluxes are SNANA FLUXCAL already (zero point 27.5, Kessler et al. 2019), so they are kept as
  they are. ``detected`` = ``detected_bool``; a non-detection keeps its measured (forced) flux.
  Labels come from the metadata file (``target`` codes, mapped to names in
  :data:`PLASTICC_CLASSES`), found next to the light curves (``*_lightcurves*`` -> ``*_metadata*``)
  or passed explicitly.
* **ELAsTiCC** (one Parquet row per alert: ``alertId``, ``diaSource`` struct, ``prvDiaSources``
  list, ``prvDiaForcedSources`` list, ``diaObject``; or Fink's aggregated ``cmidPointTai,
  cfilterName, cpsFlux, cpsFluxErr``): ``psFlux`` is in nJy (AB zero point 31.4), so FLUXCAL =
  psFlux * 10**(-0.4 * (31.4 - 27.5)). ``diaSource`` and ``prvDiaSources`` are detections.
  ``prvDiaForcedSources`` are added as non-detections (``detected=False`` with their forced flux) at
  epochs without a detection: they carry the pre-explosion baseline and the depth of the visits that
  saw nothing, which an early classifier may use (at alert time they are in the packet, so no
  look-ahead); Fink's ELAsTiCC module ignores them, and ``forced=False`` does too. Labels:
  ``classId`` (from the ``classId=NNN`` directory of Fink's export) or ``GENTYPE``, mapped by
  :data:`ELASTICC_CLASSES`; the SNANA truth columns (upper-case: ``SNID, GENTYPE, ZCMB,
  PEAKMJD``...) go to the objects, the Fink scores to the alerts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from earlyia.errors import FormatError, InputError, Problem, SchemaError
from earlyia.io.photometry import njy_to_fluxcal
from earlyia.io.registry import csv_header, parquet_schema
from earlyia.io.table import SURVEY_BANDS, LightCurves

LSST_BANDS = SURVEY_BANDS["LSST"]
#: PLAsTiCC ``target`` -> class name (TNS-like spelling for supernovae, so "SN Ia" is the positive
#: class).
PLASTICC_CLASSES = {
    90: "SN Ia",
    67: "SN Ia-91bg-like",
    52: "SN Iax",
    42: "SN II",
    62: "SN Ibc",
    95: "SLSN-I",
    15: "TDE",
    64: "KN",
    88: "AGN",
    92: "RRL",
    65: "M-dwarf",
    16: "EB",
    53: "Mira",
    6: "mu-Lens-Single",
    991: "mu-Lens-Binary",
    992: "ILOT",
    993: "CaRT",
    994: "PISN",
    995: "mu-Lens-String",
}
#: ELAsTiCC ``classId`` (taxonomy) -> class name.
ELASTICC_CLASSES = {
    111: "SN Ia",
    112: "SN Ibc",
    113: "SN II",
    114: "SN Iax",
    115: "SN Ia-91bg-like",
    121: "KN",
    122: "M-dwarf flare",
    123: "Dwarf nova",
    124: "uLens",
    131: "SLSN-I",
    132: "TDE",
    133: "ILOT",
    134: "CART",
    135: "PISN",
    211: "Cepheid",
    212: "RR Lyrae",
    213: "Delta Scuti",
    214: "EB",
    215: "LPV/Mira",
    221: "AGN",
}
#: ELAsTiCC SNANA ``GENTYPE`` -> ``classId`` for the supernova models (used when ``classId`` is
#: absent).
ELASTICC_GENTYPE_CLASS = {
    10: 111,
    11: 115,
    12: 114,
    **dict.fromkeys(range(20, 28), 112),
    **dict.fromkeys(range(30, 38), 113),
    40: 131,
    42: 132,
}


def unique_alert_ids(alert_ids, source_ids, source: str) -> tuple[np.ndarray, list[Problem]]:
    """Alert ids, with an ``alertId`` that several alerts of *different* ``diaSourceId`` share
    (Rubin's and ELAsTiCC's test alerts all say 1231321321) replaced by each alert's
    ``diaSourceId``, and one Problem per such id. The same alert read twice (same id, same
    diaSource) keeps its id. ``source_ids`` 0 = unknown (left alone)."""
    ids = np.asarray(alert_ids, dtype=object).copy()
    sid = np.asarray(source_ids, np.int64)
    frame = pd.DataFrame({"a": ids, "s": sid})[sid != 0]
    n_src = frame.groupby("a")["s"].nunique()
    shared = n_src[n_src > 1]
    if shared.empty:
        return ids, []
    mask = pd.Series(ids).isin(shared.index).to_numpy() & (sid != 0)
    ids[mask] = sid[mask].astype(str).astype(object)
    problems = [
        Problem(
            source,
            None,
            f"alertId {a} is shared by alerts of {int(k)} different diaSources: each of them is "
            "identified by its diaSourceId instead",
        )
        for a, k in shared.items()
    ]
    return ids, problems


def lightcurves_from_flux_points(
    phot: pd.DataFrame,
    objects: pd.DataFrame | None = None,
    alerts: pd.DataFrame | None = None,
    *,
    survey: str = "LSST",
    bands=None,
    source: str = "<memory>",
) -> LightCurves:
    """Long flux photometry (``object_id, mjd, band, flux, flux_err[, detected, alert_id]``) ->
    table (any survey)."""
    return LightCurves.from_frames(
        phot, objects, alerts, bands=bands or SURVEY_BANDS.get(survey), survey=survey, source=source
    )


# ----------------------------------------------------------------------------------------------
# PLAsTiCC
PLASTICC_COLUMNS = ("object_id", "mjd", "passband", "flux", "flux_err")


def metadata_path_for(path: Path) -> Path | None:
    """The PLAsTiCC metadata file next to a light-curve file (``*_lightcurves*`` ->
    ``*_metadata*``, any compression)."""
    name = path.name
    if "lightcurves" not in name:
        return None
    stem = name.split("lightcurves")[0] + "metadata"
    for cand in sorted(path.parent.glob(stem + "*.csv*")):
        return cand
    return None


def read_plasticc_metadata(path: str | Path) -> pd.DataFrame:
    """PLAsTiCC metadata (space-padded CSV) -> objects frame with ``label`` from ``target`` (or
    ``true_target``)."""
    path = Path(path)
    try:
        meta = pd.read_csv(path, skipinitialspace=True)
    except (OSError, ValueError, EOFError, pd.errors.ParserError) as exc:
        raise FormatError(f"cannot read PLAsTiCC metadata ({exc})", source=str(path)) from exc
    if "object_id" not in meta.columns:
        raise SchemaError("PLAsTiCC metadata lacks 'object_id'", source=str(path))
    meta = meta.rename(columns={"decl": "dec"})
    target = meta["target"] if "target" in meta.columns else None
    if "true_target" in meta.columns and (target is None or (target == 0).all()):
        target = meta["true_target"]
    if target is not None:
        meta["label"] = [
            PLASTICC_CLASSES.get(int(t), f"class {int(t)}") if pd.notna(t) else None for t in target
        ]
    meta["object_id"] = meta["object_id"].astype(str)
    return meta


def read_plasticc(path: str | Path, *, metadata: str | Path | None = None) -> LightCurves:
    """Read PLAsTiCC light curves (CSV, any compression); labels from ``metadata`` or the sibling
    metadata file."""
    path = Path(path)
    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except (OSError, ValueError, EOFError, pd.errors.ParserError) as exc:
        raise FormatError(f"cannot read CSV ({exc})", source=str(path)) from exc
    missing = [c for c in PLASTICC_COLUMNS if c not in df.columns]
    if missing:
        raise SchemaError(
            f"not a PLAsTiCC light-curve table: missing column(s) {missing}", source=str(path)
        )
    if df.empty:
        raise InputError("the CSV has no rows", source=str(path))
    pb = pd.to_numeric(df["passband"], errors="coerce").to_numpy(np.float64)
    ok = np.isfinite(pb) & (pb >= 0) & (pb < len(LSST_BANDS))
    band = np.full(len(df), "passband=?", dtype=object)
    band[ok] = np.asarray(LSST_BANDS, dtype=object)[pb[ok].astype(np.int64)]
    phot = pd.DataFrame(
        {
            "object_id": df["object_id"].astype(str).to_numpy(object),
            "mjd": pd.to_numeric(df["mjd"], errors="coerce").to_numpy(np.float64),
            "band": band,
            "flux": pd.to_numeric(df["flux"], errors="coerce").to_numpy(np.float64),
            "flux_err": pd.to_numeric(df["flux_err"], errors="coerce").to_numpy(np.float64),
        }
    )
    if "detected_bool" in df.columns:
        phot["detected"] = (
            pd.to_numeric(df["detected_bool"], errors="coerce").fillna(0).to_numpy() > 0
        )
    else:
        phot["detected"] = np.isfinite(phot["flux"].to_numpy())
    meta_path = Path(metadata) if metadata is not None else metadata_path_for(path)
    objects = read_plasticc_metadata(meta_path) if meta_path is not None else None
    return lightcurves_from_flux_points(phot, objects, None, survey="LSST", source=str(path))


def detect_plasticc(path: Path) -> bool:
    header = csv_header(Path(path))
    return all(c in header for c in PLASTICC_COLUMNS)


# ----------------------------------------------------------------------------------------------
# ELAsTiCC
def _field(arr: pa.Array, name: str) -> pa.Array | None:
    t = arr.type
    if not pa.types.is_struct(t) or t.get_field_index(name) < 0:
        return None
    return pc.struct_field(arr, [t.get_field_index(name)])


def _flat_list(table: pa.Table, name: str) -> tuple[pa.Array | None, np.ndarray]:
    """(flattened struct items, per-row lengths) of a list<struct> column; null lists count as
    empty."""
    n = table.num_rows
    if name not in table.column_names or pa.types.is_null(table.schema.field(name).type):
        return None, np.zeros(n, np.int64)
    arr = table.column(name).combine_chunks()
    lengths = (
        pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    )
    return arr.flatten(), lengths


def _num(arr: pa.Array | None, n: int) -> np.ndarray:
    if arr is None:
        return np.full(n, np.nan)
    return pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)


def _str(arr: pa.Array | None, n: int) -> np.ndarray:
    if arr is None:
        return np.full(n, None, dtype=object)
    return np.asarray(arr.to_pylist(), dtype=object)


_CLASS_RE = re.compile(r"classId=(\d+)")
#: host-galaxy fields of ``diaObject`` copied to the objects (alert content, not truth: usable as
#: features)
HOST_FIELDS = (
    "hostgal_zphot",
    "hostgal_zphot_err",
    "hostgal_zspec",
    "hostgal_snsep",
    "mwebv",
    "z_final",
    "z_final_err",
    *(f"hostgal_mag_{b}" for b in "ugrizY"),
    "hostgal_ellipticity",
    "hostgal_sqradius",
)


_AGG = ("cmidPointTai", "cfilterName", "cpsFlux", "cpsFluxErr")


def _aggregated_part(table: pa.Table) -> tuple[tuple, np.ndarray]:
    """Points of Fink's aggregated lists (all detections) and each row's latest time."""
    n = table.num_rows
    lists = {c: table.column(c).combine_chunks() for c in _AGG}
    lens = (
        pc.fill_null(pc.list_value_length(lists["cmidPointTai"]), 0)
        .to_numpy(zero_copy_only=False)
        .astype(np.int64)
    )
    m = int(lens.sum())
    flat = {c: a.flatten() for c, a in lists.items()}
    mjd = _num(flat["cmidPointTai"], m)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    row_mjd = (
        np.maximum.reduceat(np.where(np.isfinite(mjd), mjd, -np.inf), starts)
        if m
        else np.full(n, np.nan)
    )
    part = (
        np.repeat(np.arange(n), lens),
        mjd,
        _str(flat["cfilterName"], m),
        _num(flat["cpsFlux"], m),
        _num(flat["cpsFluxErr"], m),
        True,
    )
    return part, row_mjd


def lightcurves_from_elasticc_table(
    table: pa.Table, *, source: str = "<memory>", class_id: int | None = None, forced: bool = True
) -> LightCurves:
    """ELAsTiCC alerts (nested Rubin schema as Fink stores it, or Fink's aggregated ``c*`` lists)
    -> table."""
    names = table.column_names
    n = table.num_rows
    if n == 0:
        raise InputError("the alert table has no rows", source=source)
    src = table.column("diaSource").combine_chunks() if "diaSource" in names else None
    if src is not None and not pa.types.is_struct(src.type):
        src = None
    parts = []  # (row index per point, mjd, band, flux_njy, err_njy, detected, alert id per point)
    if src is not None:
        row_mjd = _num(_field(src, "midPointTai"), n)
        obj = (
            pc.cast(_field(src, "diaObjectId"), pa.string())
            .to_numpy(zero_copy_only=False)
            .astype(object)
        )
        parts.append(
            (
                np.arange(n),
                row_mjd,
                _str(_field(src, "filterName"), n),
                _num(_field(src, "psFlux"), n),
                _num(_field(src, "psFluxErr"), n),
                True,
            )
        )
        # previous detections, then (optionally) forced photometry kept as non-detections with their
        # flux
        histories = [("prvDiaSources", True)] + ([("prvDiaForcedSources", False)] if forced else [])
        for column, detected in histories:
            items, lens = _flat_list(table, column)
            if items is not None:
                m = len(items)
                parts.append(
                    (
                        np.repeat(np.arange(n), lens),
                        _num(_field(items, "midPointTai"), m),
                        _str(_field(items, "filterName"), m),
                        _num(_field(items, "psFlux"), m),
                        _num(_field(items, "psFluxErr"), m),
                        detected,
                    )
                )
        if all(c in names for c in _AGG):
            parts.append(
                _aggregated_part(table)[0]
            )  # Fink's accumulated history: may reach beyond prvDiaSources
    elif all(c in names for c in _AGG):
        if "diaObjectId" not in names:
            raise SchemaError(
                "aggregated ELAsTiCC table without 'diaSource' needs a 'diaObjectId' column",
                source=source,
            )
        obj = table.column("diaObjectId").to_pandas().astype(str).to_numpy(object)
        part, row_mjd = _aggregated_part(table)
        parts.append(part)
    else:
        raise SchemaError(
            "not an ELAsTiCC alert table: needs a 'diaSource' struct (with prvDiaSources) or "
            "the aggregated "
            f"cmidPointTai/cfilterName/cpsFlux/cpsFluxErr lists (have {names[:12]})",
            source=source,
        )
    alert_ids = (
        table.column("alertId").to_pandas().astype(str).to_numpy(object)
        if "alertId" in names
        else np.array([f"{o}@{Path(source).name}:{i}" for i, o in enumerate(obj)], dtype=object)
    )
    id_problems: list[Problem] = []
    if (
        src is not None and _field(src, "diaSourceId") is not None
    ):  # test alerts that all share one alertId
        sid = pc.fill_null(pc.cast(_field(src, "diaSourceId"), pa.int64()), 0).to_numpy(
            zero_copy_only=False
        )
        alert_ids, id_problems = unique_alert_ids(alert_ids, sid, source)
    alert_int = (
        pd.to_numeric(pd.Series(alert_ids), errors="coerce").fillna(-1).astype(np.int64).to_numpy()
    )
    rows = np.concatenate([p[0] for p in parts])
    band = np.concatenate([p[2] for p in parts]).astype(object)
    band = np.where(band == "y", "Y", band)
    flux_njy = np.concatenate([p[3] for p in parts])
    err_njy = np.concatenate([p[4] for p in parts])
    detected = np.concatenate([np.full(len(p[0]), p[5]) for p in parts])
    point_alert = np.full(len(rows), -1, np.int64)
    if src is not None:
        point_alert[:n] = alert_int  # the first part is each alert's own diaSource
    phot = pd.DataFrame(
        {
            "object_id": obj[rows],
            "mjd": np.concatenate([p[1] for p in parts]),
            "band": band,
            "flux": njy_to_fluxcal(flux_njy),
            "flux_err": njy_to_fluxcal(err_njy),
            "detected": detected,
            "alert_id": point_alert,
        }
    )
    # the same epochs repeat in every alert of an object: drop exact repeats before the (slower)
    # tolerant dedup (a forced source at a detection's epoch is the same epoch: the detection, with
    # its alert id, is kept)
    phot = phot.sort_values(
        ["detected", "alert_id"], ascending=False, kind="mergesort"
    ).drop_duplicates(["object_id", "mjd", "band"], keep="first")

    # alerts: Fink scores and other lower-case scalars; objects: SNANA truth (upper case), classId,
    # host info
    alerts = pd.DataFrame({"object_id": obj, "alert_id": alert_ids, "mjd": row_mjd})
    objects = pd.DataFrame({"object_id": obj})
    if src is not None:
        for fld, col in (("ra", "ra"), ("decl", "dec"), ("snr", "snr")):
            arr = _field(src, fld)
            if arr is not None:
                alerts[col] = arr.to_numpy(zero_copy_only=False)
        objects["ra"] = alerts.get("ra")
        objects["dec"] = alerts.get("dec")
    if "diaObject" in names and pa.types.is_struct(table.schema.field("diaObject").type):
        dob = table.column("diaObject").combine_chunks()
        for fld in HOST_FIELDS:
            arr = _field(dob, fld)
            if arr is not None:
                objects[fld] = _num(arr, n)
    for c in names:
        typ = table.schema.field(c).type
        if c in ("alertId", "diaObjectId") or not (
            pa.types.is_integer(typ)
            or pa.types.is_floating(typ)
            or pa.types.is_string(typ)
            or pa.types.is_boolean(typ)
        ):
            continue
        target = objects if c[:1].isupper() else alerts  # SNANA truth columns are upper case
        target[c] = table.column(c).to_numpy()
    cid = class_id
    if cid is None and "classId" in names:
        cid_arr = table.column("classId").to_numpy()
        objects["classId"] = cid_arr
    elif cid is not None:
        objects["classId"] = cid
    if "classId" not in objects.columns and "GENTYPE" in objects.columns:
        objects["classId"] = [
            ELASTICC_GENTYPE_CLASS.get(int(g)) if pd.notna(g) else None for g in objects["GENTYPE"]
        ]
    if "classId" in objects.columns:
        objects["label"] = [
            ELASTICC_CLASSES.get(int(c)) if c is not None and pd.notna(c) else None
            for c in objects["classId"]
        ]
    order = np.argsort(row_mjd, kind="mergesort")  # latest alert's object columns win
    objects = objects.iloc[order]
    lc = lightcurves_from_flux_points(phot, objects, alerts, survey="LSST", source=source)
    lc.problems = id_problems + lc.problems
    return lc


def _read_elasticc_file(path: Path) -> pa.Table:
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        keep = [c for c in schema.names if not c.startswith("cutout") and c != "diaObject"]
        if "diaObject" in schema.names and pa.types.is_struct(schema.field("diaObject").type):
            sub = schema.field("diaObject").type
            # only the host fields we keep: the full diaObject struct is ~80 % of the reading time
            keep += [f"diaObject.{f}" for f in HOST_FIELDS if sub.get_field_index(f) >= 0]
        table = pf.read(columns=keep)
    except (OSError, pa.ArrowException) as exc:
        raise FormatError(
            f"cannot read Parquet ({exc}); is the file complete?", source=str(path)
        ) from exc
    if "classId" not in table.column_names:
        m = _CLASS_RE.search(str(path))
        table = table.append_column(
            "classId", pa.array([int(m.group(1)) if m else None] * table.num_rows, pa.int64())
        )
    return table


def read_elasticc(path: str | Path, *, forced: bool = True) -> LightCurves:
    """Read an ELAsTiCC alert Parquet file, or a folder of them in one pass (Fink's
    ``classId=NNN/part-*.parquet``).

    ``classId`` comes from a ``classId=NNN`` folder in the path when the table has no such column.
    In a folder, an unreadable file becomes a :class:`Problem` and the others are read.
    """
    path = Path(path)
    if not path.is_dir():
        return lightcurves_from_elasticc_table(
            _read_elasticc_file(path), source=str(path), forced=forced
        )
    tables, problems = [], []
    for f in sorted(path.rglob("*.parquet")):
        try:
            tables.append(_read_elasticc_file(f))
        except FormatError as exc:
            problems.append(Problem(str(f), None, str(exc)))
    if not tables:
        raise FormatError(
            "no readable ELAsTiCC Parquet file in the folder"
            + (f" ({problems[0].reason})" if problems else ""),
            source=str(path),
        )
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowException as exc:
        raise SchemaError(
            f"ELAsTiCC files with incompatible schemas ({exc})", source=str(path)
        ) from exc
    lc = lightcurves_from_elasticc_table(table, source=str(path), forced=forced)
    lc.problems = problems + lc.problems
    return lc


def detect_elasticc(path: Path) -> bool:
    """ELAsTiCC alert Parquet (``diaSource`` struct or Fink's aggregated lists), or a folder
    whose first Parquet file is."""
    path = Path(path)
    if path.is_dir():
        first = next(iter(sorted(path.rglob("*.parquet"))), None)
        return first is not None and detect_elasticc(first)
    schema = parquet_schema(path)
    if schema is None:
        return False
    if "diaSource" in schema.names and pa.types.is_struct(schema.field("diaSource").type):
        return (
            schema.field("diaSource").type.get_field_index("midpointMjdTai") < 0
        )  # Rubin's naming: rubin_parquet
    return all(c in schema.names for c in ("cmidPointTai", "cfilterName", "cpsFlux", "cpsFluxErr"))


def class_name(code: int, mapping: Mapping[int, str] = ELASTICC_CLASSES) -> str | None:
    """Name of a class code in ``mapping`` (None when unknown)."""
    return mapping.get(int(code))
