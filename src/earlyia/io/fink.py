"""Fink's ZTF formats: the concatenated-column alert table (``cjd, cmagpsf, csigmapsf, cfid``) and
its long CSV.

Each row of a Fink table is ONE ALERT: the lists hold the object's history as the broker saw it
(``prv_candidates`` then the current ``candidate``, last). Rows of one object merge into one light
curve (duplicate epochs removed by :meth:`LightCurves.from_frames`), and every row becomes a row of
``LightCurves.alerts`` whose ``mjd`` is the time of the row's latest point, so ``alert_segments()``
gives back the history that alert carried (plus any older point another row of the same object knew
about).

The row builder :func:`rows_to_lightcurves` is shared with the ZTF readers (Avro / alert parquet),
which first turn ``prv_candidates`` + ``candidate`` into the same per-row lists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from earlyia.errors import FormatError, InputError, Problem, SchemaError
from earlyia.io.photometry import DETECTION_SNR, diffpos_sign, limit_to_flux_err, mag_to_fluxcal
from earlyia.io.registry import csv_header, parquet_schema
from earlyia.io.table import (
    JD_MJD_OFFSET,
    SURVEY_BANDS,
    LightCurves,
    _dedup_mask,
    arrow_to_pandas,
    object_id_strings,
    text_numbers,
)

#: Fink concatenated photometry columns (required).
FINK_LIST_COLUMNS = ("cjd", "cmagpsf", "csigmapsf", "cfid")
#: Optional per-point list columns we understand.
FINK_OPTIONAL_LISTS = ("cisdiffpos", "cdiffmaglim", "ccandid")
#: ``candidate`` fields lifted to alert columns when a nested ``candidate`` struct is present.
CANDIDATE_ALERT_FIELDS = (
    "candid",
    "ra",
    "dec",
    "ndethist",
    "jdstarthist",
    "drb",
    "rb",
    "classtar",
    "isdiffpos",
    "magnr",
    "sigmagnr",
    "distnr",
    "sgscore1",
    "distpsnr1",
    "ssdistnr",
    "nid",
    "field",
    "rcid",
    "programid",
    "diffmaglim",
)
#: Object-level columns taken from each object's latest alert.
OBJECT_COLUMNS = ("ra", "dec", "cdsxmatch", "ndethist", "jdstarthist", "drb", "classtar")
#: ZTF filter id -> band.
ZTF_FID_BANDS = {1: "g", 2: "r", 3: "i"}
_TNS_PREFIX = "(TNS) "


def clean_tns_label(value) -> object:
    """A TNS class string without Fink's ``'(TNS) '`` prefix (None/NaN stay missing)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    s = str(value).strip()
    if s.startswith(_TNS_PREFIX.strip()):
        s = s[len(_TNS_PREFIX.strip()) :].strip()
    return s or None


# ----------------------------------------------------------------------------------------------
# helpers
def _as_list(cell, column: str = "", numeric: bool = True) -> np.ndarray | None:
    """A list cell as a 1-d array (None / NaN scalar -> None); :class:`TypeError` naming
    ``column`` when it is not a list of numbers (``numeric``) or of scalars."""
    if cell is None:
        return None
    if isinstance(cell, float) and np.isnan(cell):
        return None
    if isinstance(cell, np.ndarray):
        arr = cell
    elif isinstance(cell, (list, tuple)):
        arr = np.asarray(cell, dtype=object) if any(v is None for v in cell) else np.asarray(cell)
    else:
        raise TypeError(f"column {column!r} must hold a list per row, got {type(cell).__name__}")
    if arr.ndim != 1:
        raise TypeError(f"column {column!r} must be a list of numbers, got a list of lists")
    if arr.dtype.kind in "fiub" or not numeric:
        return arr
    for v in arr:
        if isinstance(v, (np.ndarray, list, tuple, dict)):
            raise TypeError(f"column {column!r} must be a list of numbers, got a list of lists")
        if not (v is None or isinstance(v, (int, float, np.integer, np.floating))) or isinstance(
            v, (bool, np.bool_)
        ):
            raise TypeError(
                f"column {column!r} must be a list of numbers, got {type(v).__name__} values"
            )
    return arr


def _float_array(values: np.ndarray) -> np.ndarray:
    if values.dtype == object:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return values.astype(np.float64, copy=False)


def _is_scalar_column(series: pd.Series) -> bool:
    """True for columns worth keeping per alert: numbers, booleans, strings (not lists, dicts or
    bytes)."""
    if series.dtype.kind in "biuf":
        return True
    sample = series.dropna()
    if sample.empty:
        return True
    sample = sample.iloc[: min(len(sample), 20)]
    return all(
        isinstance(v, (str, bool, int, float, np.integer, np.floating, np.bool_)) for v in sample
    )


def _candid_int(value) -> int:
    try:
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            return -1
        return int(value)
    except (TypeError, ValueError):
        return -1


def _common_reason(problems: Sequence[Problem]) -> str:
    """The reasons of rejected rows, each told once with its count (``row i:`` prefixes and
    objects dropped)."""
    counts: dict[str, int] = {}
    for p in problems:
        reason = re.sub(r"^row \d+: ", "", p.reason).removesuffix("; row skipped")
        counts[reason] = counts.get(reason, 0) + 1
    return "; ".join(f"{r} ({n} row{'s' if n > 1 else ''})" for r, n in list(counts.items())[:3])


def _id_string(value) -> str:
    """An alert id as a string; an integral float (an id that went through float64) is written
    without '.0'."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


# ----------------------------------------------------------------------------------------------
# core builder
#: Names of the per-row lists in messages (Fink's columns; the ZTF readers pass their own).
_LIST_NAMES = {
    "jd": "cjd",
    "mag": "cmagpsf",
    "sigma": "csigmapsf",
    "fid": "cfid",
    "isdiffpos": "cisdiffpos",
    "diffmaglim": "cdiffmaglim",
    "candid": "ccandid",
}


def repeated_epoch_mask(
    row: np.ndarray, t: np.ndarray, band_code: np.ndarray, detected: np.ndarray
) -> np.ndarray:
    """True for the points that repeat an earlier point of the same row and band (within
    :data:`DUPLICATE_EPOCH_DAYS`), preferring to keep a detection: what
    :meth:`LightCurves.from_frames` merges.

    Counts derived from the photometry (``ndethist``) use it so a repeated epoch is counted once.
    """
    n = len(t)
    if n < 2:
        return np.zeros(n, bool)
    tt = np.where(np.isfinite(t), t, np.inf)
    order = np.lexsort((~np.asarray(detected, bool), band_code, tt, row))
    keep = _dedup_mask(np.asarray(row)[order], tt[order], np.asarray(band_code)[order])
    out = np.zeros(n, bool)
    out[order] = ~keep
    return out


def rows_to_lightcurves(
    object_ids: Sequence[str],
    jd: Sequence,
    mag: Sequence,
    sigma: Sequence,
    fid: Sequence,
    *,
    alert_columns: pd.DataFrame,
    isdiffpos: Sequence | None = None,
    diffmaglim: Sequence | None = None,
    candid: Sequence | None = None,
    labels: Sequence | None = None,
    source: str = "<memory>",
    survey: str = "ZTF",
    fid_bands: Mapping[int, str] | None = None,
    time_offset: float = JD_MJD_OFFSET,
    column_names: Mapping[str, str] | None = None,
) -> LightCurves:
    """Build a table from per-alert rows of magnitude lists (history then current point, last).

    ``alert_columns`` has one row per alert with at least ``alert_id`` (str); other columns are kept
    as alert-level columns and the :data:`OBJECT_COLUMNS` among them also go to the objects (latest
    alert wins). Per-row lists: ``jd`` (JD unless ``time_offset`` says otherwise), ``mag``,
    ``sigma``, ``fid``, and optional ``isdiffpos``, ``diffmaglim`` (5-sigma limit, used for the
    noise of non-detections) and ``candid`` (per point). A row whose lists differ in length, hold
    something else than numbers, or have no point at all, is dropped with a :class:`Problem` naming
    the column (``column_names``: the input's name of each list, for messages).
    """
    fid_bands = dict(fid_bands or ZTF_FID_BANDS)
    names = {**_LIST_NAMES, **(column_names or {})}
    n = len(object_ids)
    problems: list[Problem] = []
    keep_rows: list[int] = []
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("jd", "mag", "sigma", "fid", "isdiffpos", "diffmaglim", "candid")
    }
    for i in range(n):
        oid = str(object_ids[i])
        try:
            cols = {
                "jd": _as_list(jd[i], names["jd"]),
                "mag": _as_list(mag[i], names["mag"]),
                "sigma": _as_list(sigma[i], names["sigma"]),
                "fid": _as_list(fid[i], names["fid"]),
            }
            opt = {
                "isdiffpos": _as_list(isdiffpos[i], names["isdiffpos"], numeric=False)
                if isdiffpos is not None
                else None,
                "diffmaglim": _as_list(diffmaglim[i], names["diffmaglim"])
                if diffmaglim is not None
                else None,
                "candid": _as_list(candid[i], names["candid"]) if candid is not None else None,
            }
        except TypeError as exc:
            problems.append(Problem(source, oid, f"row {i}: {exc}; row skipped"))
            continue
        if any(v is None for v in cols.values()):
            missing = [k for k, v in cols.items() if v is None]
            problems.append(
                Problem(source, oid, f"row {i}: null photometry list(s) {missing}; row skipped")
            )
            continue
        length = len(cols["jd"])
        lens = {k: len(v) for k, v in {**cols, **opt}.items() if v is not None}
        if len(set(lens.values())) > 1:
            problems.append(
                Problem(
                    source,
                    oid,
                    f"row {i}: photometry lists of different lengths {lens}; row skipped",
                )
            )
            continue
        if length == 0:
            problems.append(Problem(source, oid, f"row {i}: empty light curve; row skipped"))
            continue
        keep_rows.append(i)
        for k, v in cols.items():
            parts[k].append(v)
        for k, v in opt.items():
            if v is None:
                v = np.full(length, None, dtype=object)
            parts[k].append(v)
    if not keep_rows:
        raise InputError(
            "no readable alert row: " + (_common_reason(problems) or "the table is empty"),
            source=source,
        )

    lengths = np.array([len(a) for a in parts["jd"]], np.int64)
    rows = np.asarray(keep_rows, np.int64)
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    lc = points_to_lightcurves(
        np.asarray([str(object_ids[i]) for i in keep_rows], dtype=object),
        lengths,
        jd=_float_array(cat["jd"]),
        mag=_float_array(cat["mag"]),
        sigma=_float_array(cat["sigma"]),
        fid=_float_array(cat["fid"]),
        alert_columns=alert_columns.iloc[rows].reset_index(drop=True),
        isdiffpos=cat["isdiffpos"] if isdiffpos is not None else None,
        diffmaglim=_float_array(cat["diffmaglim"]) if diffmaglim is not None else None,
        candid=np.array([_candid_int(v) for v in cat["candid"]], np.int64)
        if candid is not None
        else None,
        labels=[labels[i] for i in keep_rows] if labels is not None else None,
        source=source,
        survey=survey,
        fid_bands=fid_bands,
        time_offset=time_offset,
    )
    lc.problems = problems + lc.problems
    return lc


def points_to_lightcurves(
    row_object_ids: np.ndarray,
    lengths: np.ndarray,
    *,
    jd: np.ndarray,
    mag: np.ndarray,
    sigma: np.ndarray,
    fid: np.ndarray,
    alert_columns: pd.DataFrame,
    isdiffpos: np.ndarray | None = None,
    diffmaglim: np.ndarray | None = None,
    candid: np.ndarray | None = None,
    labels: Sequence | None = None,
    source: str = "<memory>",
    survey: str = "ZTF",
    fid_bands: Mapping[int, str] | None = None,
    time_offset: float = JD_MJD_OFFSET,
    forced: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> LightCurves:
    """The vectorised core: flat point arrays of all rows, row ``i`` owning the next ``lengths[i]``
    points.

    Every row must have at least one point. ``candid`` (int64 per point, -1 unknown) is optional;
    the row's own ``candid`` (in ``alert_columns``) is put on the row's last point when that point
    has none. ``forced``: ``(FLUXCAL, FLUXCALERR, is_forced)`` per point for forced photometry
    (:func:`ztf_forced_to_fluxcal`): those points keep their measured signed flux, detected when it
    is :data:`DETECTION_SNR` sigma from zero; forced points whose measurement is unusable are left
    out (counted per object in ``problems``).
    """
    fid_bands = dict(fid_bands or ZTF_FID_BANDS)
    lengths = np.asarray(lengths, np.int64)
    oid_rows = np.asarray(row_object_ids, dtype=object)
    row_of_point = np.repeat(np.arange(len(lengths)), lengths)
    t = np.asarray(jd, np.float64) - time_offset
    m = np.asarray(mag, np.float64)
    s = np.asarray(sigma, np.float64)
    f = np.asarray(fid, np.float64)
    detected = np.isfinite(m)
    flux, err = mag_to_fluxcal(m, s)
    if isdiffpos is not None:
        flux = np.where(diffpos_sign(isdiffpos) < 0, -flux, flux)
    lim_err = limit_to_flux_err(diffmaglim) if diffmaglim is not None else np.full(len(m), np.nan)
    flux = np.where(detected, flux, np.nan)
    err = np.where(detected, err, lim_err)
    keep_point = np.ones(len(m), bool)
    forced_problems: list[Problem] = []
    if forced is not None:
        f_flux, f_err, is_forced = (np.asarray(a) for a in forced)
        usable = is_forced & np.isfinite(f_flux)
        flux = np.where(usable, f_flux, flux)
        err = np.where(usable, f_err, err)
        with np.errstate(invalid="ignore"):
            detected = np.where(usable, np.abs(f_flux) >= DETECTION_SNR * f_err, detected)
        bad = is_forced & ~usable
        keep_point &= ~bad
        if bad.any():
            counts = pd.Series(oid_rows[row_of_point[bad]]).value_counts()
            forced_problems = [
                Problem(
                    source,
                    str(o),
                    f"{int(c)} forced-photometry point(s) without a usable measurement "
                    "(missing flux, or procstatus != 0) left out",
                )
                for o, c in counts.items()
            ]
    band = np.full(len(f), "?", dtype=object)
    for code, name in fid_bands.items():
        band[f == code] = name
    unknown = band == "?"
    if unknown.any():
        band[unknown] = np.array([f"fid={v:g}" for v in f[unknown]], dtype=object)

    pid = np.full(len(m), -1, np.int64) if candid is None else np.asarray(candid, np.int64).copy()
    ac = alert_columns.reset_index(drop=True)
    if "candid" in ac.columns and len(m):
        last = np.cumsum(lengths) - 1
        row_cand = np.array([_candid_int(v) for v in ac["candid"].to_numpy(object)], np.int64)
        fill = pid[last] < 0
        pid[last[fill]] = row_cand[fill]

    # alerts: time of the latest point with a finite time in the row
    tt = np.where(np.isfinite(t), t, -np.inf)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    amjd = np.maximum.reduceat(tt, starts) if len(tt) else np.zeros(0)
    amjd = np.where(np.isfinite(amjd), amjd, np.nan)
    alerts = ac.copy()
    alerts.insert(0, "object_id", oid_rows)
    alerts["mjd"] = amjd
    if "ndethist" not in alerts.columns or alerts["ndethist"].isna().all():
        # detections of the row, a repeated epoch (same band, same time) counted once
        once = (
            detected & ~repeated_epoch_mask(row_of_point, t, pd.factorize(band)[0], detected)
            if len(m)
            else detected
        )
        alerts["ndethist"] = np.add.reduceat(once.astype(np.int64), starts) if len(m) else 0
    objects = alerts.assign(_order=np.arange(len(alerts))).sort_values(
        ["mjd", "_order"], kind="mergesort"
    )
    obj_cols = ["object_id"] + [c for c in OBJECT_COLUMNS if c in objects.columns]
    objects = objects[obj_cols].copy()
    if labels is not None:
        lab = pd.Series([clean_tns_label(v) for v in labels], index=alerts.index)
        objects["label"] = lab.loc[objects.index].to_numpy(object)
        # a label given in any row of the object counts (latest non-null wins)
        objects = objects.groupby("object_id", sort=False).last().reset_index()
    lc = None
    survey_bands = SURVEY_BANDS.get(survey)
    if (
        survey_bands is not None
    ):  # the points as arrays, sorted and checked without a frame per point
        code = np.full(len(f), -1, np.int8)
        for fid_code, name in fid_bands.items():
            if name in survey_bands:
                code[f == fid_code] = survey_bands.index(name)
        k = keep_point
        # among points of one epoch the one with the highest alert id comes first (as the frame
        # sorted below)
        lc = LightCurves.from_sorted_points(
            oid_rows,
            row_of_point[k],
            t[k],
            code[k],
            flux[k],
            err[k],
            detected[k],
            pid[k],
            objects,
            alerts,
            bands=survey_bands,
            tiebreak=-pid[k],
            survey=survey,
            source=source,
        )
    if lc is None:
        phot = pd.DataFrame(
            {
                "object_id": oid_rows[row_of_point],
                "mjd": t,
                "band": band,
                "flux": flux,
                "flux_err": err,
                "detected": detected,
                "alert_id": pid,
            }
        )[keep_point]
        # the same epoch repeated in many alerts of an object: drop exact repeats early (cheap),
        # keeping a known alert id
        phot = phot.sort_values("alert_id", ascending=False, kind="mergesort")
        phot = phot.drop_duplicates(
            ["object_id", "mjd", "band", "flux", "flux_err", "detected"], keep="first"
        )
        lc = LightCurves.from_frames(
            phot, objects, alerts, bands=survey_bands, survey=survey, source=source
        )
    lc.problems = forced_problems + lc.problems
    return lc


# ----------------------------------------------------------------------------------------------
# Fink frame
def lightcurves_from_fink_frame(
    df: pd.DataFrame, *, source: str = "<memory>", survey: str = "ZTF"
) -> LightCurves:
    """A DataFrame in Fink's concatenated format (one row = one alert) -> :class:`LightCurves`.

    Needs ``objectId, cjd, cmagpsf, csigmapsf, cfid``; understands ``cisdiffpos``, ``cdiffmaglim``
    (noise of non-detections), ``candid`` (alert id), ``TNS`` (object label), a nested ``candidate``
    struct (its :data:`CANDIDATE_ALERT_FIELDS` become alert columns), and keeps every other scalar
    column (``ndethist, drb, classtar, cdsxmatch, jdstarthist, ra, dec``, broker scores such as
    ``anchor_score``, ``rf_snia_vs_nonia``, ``snn_*``...) as an alert column. Alert ids:
    ``str(candid)``, else ``"<objectId>@<source>:<row>"``.
    """
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"expected a pandas DataFrame, got {type(df).__name__}", source=source)
    missing = [c for c in ("objectId", *FINK_LIST_COLUMNS) if c not in df.columns]
    if missing:
        raise SchemaError(
            f"not a Fink concatenated-column table: missing column(s) {missing} (have "
            f"{list(df.columns)[:12]})",
            source=source,
        )
    df = df.reset_index(drop=True)
    object_ids = object_id_strings(df["objectId"], "objectId", source)
    label = Path(source).name if source and not source.startswith("<") else source
    alert = pd.DataFrame(index=df.index)
    cand = df["candidate"] if "candidate" in df.columns else None
    if cand is not None:
        recs = [c if isinstance(c, Mapping) else {} for c in cand]
        for name in CANDIDATE_ALERT_FIELDS:
            if name in df.columns:
                continue
            if any(name in r for r in recs):
                alert[name] = [r.get(name) for r in recs]
    skip = {"objectId", "TNS", "candidate", *FINK_LIST_COLUMNS, *FINK_OPTIONAL_LISTS}
    for c in df.columns:
        if c in skip or c in alert.columns:
            continue
        if _is_scalar_column(df[c]):
            alert[c] = df[c].to_numpy()
    if "candid" in alert.columns:
        cid = alert["candid"].to_numpy(object)
        ok = np.array(
            [
                v is not None and v is not pd.NA and not (isinstance(v, float) and np.isnan(v))
                for v in cid
            ],
            bool,
        )
        alert["alert_id"] = [
            _id_string(v) if k else f"{o}@{label}:{r}"
            for r, (v, k, o) in enumerate(zip(cid, ok, object_ids, strict=True))
        ]
    else:
        alert["alert_id"] = [f"{o}@{label}:{r}" for r, o in enumerate(object_ids)]
    alert["source"] = label
    alert["row"] = np.arange(len(df), dtype=np.int64)
    isdiff = df["cisdiffpos"] if "cisdiffpos" in df.columns else None
    if isdiff is None and "isdiffpos" in alert.columns:
        # sign of the current (last) point only; history points are taken as positive
        isdiff = [
            (np.array([None] * (len(j) - 1) + [s], dtype=object) if j is not None else None)
            for j, s in zip(df["cjd"], alert["isdiffpos"], strict=True)
        ]
    return rows_to_lightcurves(
        object_ids,
        df["cjd"].to_numpy(object),
        df["cmagpsf"].to_numpy(object),
        df["csigmapsf"].to_numpy(object),
        df["cfid"].to_numpy(object),
        alert_columns=alert,
        isdiffpos=isdiff,
        diffmaglim=df["cdiffmaglim"].to_numpy(object) if "cdiffmaglim" in df.columns else None,
        candid=df["ccandid"].to_numpy(object) if "ccandid" in df.columns else None,
        labels=df["TNS"].to_numpy(object) if "TNS" in df.columns else None,
        source=source,
        survey=survey,
    )


def read_fink_parquet(path: str | Path, *, survey: str = "ZTF") -> LightCurves:
    """Read a Fink concatenated-column parquet file (see :func:`lightcurves_from_fink_frame`)."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise FormatError(
            f"cannot read Parquet ({exc}); is the file complete?", source=str(path)
        ) from exc
    keep = [c for c in table.column_names if not c.startswith("cutout")]
    df = arrow_to_pandas(table.select(keep) if keep else table)
    return lightcurves_from_fink_frame(df, source=str(path), survey=survey)


# ----------------------------------------------------------------------------------------------
# long CSV
FINK_CSV_COLUMNS = ("objectId", "cjd", "cfid", "cmagpsf", "csigmapsf")


def lightcurves_from_fink_long(
    df: pd.DataFrame, *, source: str = "<memory>", survey: str = "ZTF"
) -> LightCurves:
    """Long-form Fink photometry (one row per point: ``objectId, cjd, cfid, cmagpsf, csigmapsf[,
    TNS]``).

    One light curve per ``objectId``; there is no alert structure (``alerts`` stays empty). NaN
    ``cmagpsf`` is a non-detection with unknown depth (NaN ``flux_err``) unless a ``cdiffmaglim``
    column gives it.
    """
    missing = [c for c in FINK_CSV_COLUMNS if c not in df.columns]
    if missing:
        raise SchemaError(
            f"not a Fink long-form table: missing column(s) {missing} (have "
            f"{list(df.columns)[:12]})",
            source=source,
        )
    keys = object_id_strings(df["objectId"], "objectId", source)
    problems: list[Problem] = []
    dropped: set[str] = set()
    numbers = {}
    for c in ("cjd", "cfid", "cmagpsf", "csigmapsf", "cdiffmaglim"):
        if c in df.columns:
            numbers[c], probs, bad = text_numbers(df[c], c, keys, source)
            problems += probs
            dropped |= bad
    m = numbers["cmagpsf"]
    s = numbers["csigmapsf"]
    sign = diffpos_sign(df["cisdiffpos"].to_numpy(object)) if "cisdiffpos" in df.columns else 1
    flux, err = mag_to_fluxcal(m, s)
    detected = np.isfinite(m)
    flux = np.where(detected, flux * sign, np.nan)
    if "cdiffmaglim" in df.columns:
        err = np.where(detected, err, limit_to_flux_err(numbers["cdiffmaglim"]))
    else:
        err = np.where(detected, err, np.nan)
    fid = numbers["cfid"]
    band = np.array(
        [ZTF_FID_BANDS.get(int(v), f"fid={v:g}") if np.isfinite(v) else "fid=nan" for v in fid],
        dtype=object,
    )
    phot = pd.DataFrame(
        {
            "object_id": keys,
            "mjd": numbers["cjd"] - JD_MJD_OFFSET,
            "band": band,
            "flux": flux,
            "flux_err": err,
            "detected": detected,
        }
    )
    if dropped:
        phot = phot[~phot["object_id"].isin(dropped)]
    objects = None
    if "TNS" in df.columns:
        objects = pd.DataFrame(
            {"object_id": keys, "label": [clean_tns_label(v) for v in df["TNS"]]}
        )
        objects = objects.drop_duplicates("object_id", keep="last")
    if phot.empty:
        raise InputError("no usable row: " + "; ".join(str(p) for p in problems[:3]), source=source)
    lc = LightCurves.from_frames(
        phot, objects, None, bands=SURVEY_BANDS.get(survey), survey=survey, source=source
    )
    lc.problems = problems + lc.problems
    return lc


def read_fink_csv(path: str | Path, *, survey: str = "ZTF") -> LightCurves:
    """Read Fink's long-form CSV (optionally gzip/xz/bz2 compressed), e.g. ``all_nonIa.csv.gz``."""
    path = Path(path)
    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except (OSError, ValueError, EOFError, pd.errors.ParserError) as exc:
        raise FormatError(f"cannot read CSV ({exc})", source=str(path)) from exc
    if df.empty:
        raise InputError("the CSV has no rows", source=str(path))
    return lightcurves_from_fink_long(df, source=str(path), survey=survey)


# ----------------------------------------------------------------------------------------------
# detection
def detect_fink_parquet(path: Path) -> bool:
    """Parquet whose schema has ``objectId`` and the four concatenated photometry lists."""
    schema = parquet_schema(Path(path))
    return schema is not None and all(c in schema.names for c in ("objectId", *FINK_LIST_COLUMNS))


def detect_fink_csv(path: Path) -> bool:
    """CSV (plain or compressed) whose header has the Fink long-form columns."""
    header = csv_header(Path(path))
    return all(c in header for c in FINK_CSV_COLUMNS)
