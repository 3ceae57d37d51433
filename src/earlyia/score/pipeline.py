"""Scoring: pure functions over a :class:`~earlyia.io.table.LightCurves` chunk, and a chunked local
driver.

:func:`score_lightcurves` is the one scoring core: selection -> features -> model -> the SCORES
table (one row per alert; per object when the input has no alerts). It depends only on its
arguments, so the local command (:func:`score_files`) and the Spark job call the same code on
their chunks and get the same rows. The SCORES schema is documented in ``docs/scoring.md``;
:data:`SCORE_COLUMNS` lists its fixed leading columns, then come the input's other broker
columns (``input_`` prefixed on a name clash), then the model's features.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from earlyia import __version__
from earlyia.errors import ConfigError, InputError, Problem
from earlyia.features import get_extractor
from earlyia.features.base import extract_batched
from earlyia.features.gates import GATE_REASON, apply_gate
from earlyia.io.chunks import CHUNK_SIZE, iter_chunks, reason_key
from earlyia.model.artifact import Model
from earlyia.model.survey import check_survey, data_survey
from earlyia.score.scores_file import (
    SCORE_COLUMNS,
    SCORE_SCHEMA,
    SCORES_FORMAT,
    ScoresWriter,
)
from earlyia.select import EXTRAGALACTIC_TYPES, SELECTION_RULES, fink_cuts, select_early

#: Columns read from the alert (else the object) row, with their kind.
_CONTEXT = {
    "ra": "f",
    "dec": "f",
    "ndethist": "f",
    "jdstarthist": "f",
    "drb": "f",
    "classtar": "f",
    "cdsxmatch": "s",
}
#: Internal or identity columns of the input that are not carried as broker columns.
_NOT_CARRIED = {"object_index", "alert_id", "mjd", "object_id", "label"}
ZEROPOINT = 27.5
LIMIT_SIGMA = 5.0
#: Magnitude error of a flux measurement: 2.5 / ln(10) * sigma_flux / flux.
MAG_ERR_FACTOR = 2.5 / np.log(10.0)


# ============================================================================ pure core
@dataclass
class Rows:
    """The rows a chunk is scored on: an alert each (or an object without alerts) and its
    light-curve segment."""

    object_index: np.ndarray  # int64 object row of each output row
    alert_id: np.ndarray  # object (str; '' for object rows)
    mjd: np.ndarray  # float64 alert time (object rows: last point)
    starts: np.ndarray  # int64 segment start in the photometry arrays
    ends: np.ndarray  # int64 segment end
    alert_row: np.ndarray  # int64 row in lc.alerts, -1 for object rows


def score_rows(lc, per: str = "auto") -> Rows:
    """One row per alert (``per="alert"``), per object (``"object"``), or ``"auto"``: per alert
    plus objects without alerts."""
    if per not in ("auto", "alert", "object"):
        raise InputError(f"per must be 'auto', 'alert' or 'object', got {per!r}")
    n_obj = lc.n_objects
    parts = []
    if per in ("auto", "alert") and not lc.alerts.empty:
        starts, ends = lc.alert_segments()
        obj = lc.alerts["object_index"].to_numpy(np.int64)
        parts.append(
            Rows(
                obj,
                lc.alerts["alert_id"].astype(str).to_numpy(object),
                lc.alerts["mjd"].to_numpy(np.float64),
                np.asarray(starts, np.int64),
                np.asarray(ends, np.int64),
                np.arange(len(obj), dtype=np.int64),
            )
        )
    elif per == "alert":
        raise InputError(
            "per='alert' needs alerts but the input has none; use per='object' or 'auto'"
        )
    if per == "object" or (per == "auto" and n_obj):
        has_alert = np.zeros(n_obj, bool)
        if parts:
            has_alert[parts[0].object_index] = True
        obj = np.flatnonzero(~has_alert) if per == "auto" else np.arange(n_obj)
        s, e = lc.offsets[obj].astype(np.int64), lc.offsets[obj + 1].astype(np.int64)
        last = np.full(len(obj), np.nan)
        ne = e > s
        last[ne] = lc.mjd[e[ne] - 1]
        parts.append(
            Rows(
                obj.astype(np.int64),
                np.full(len(obj), "", dtype=object),
                last,
                s,
                e,
                np.full(len(obj), -1, np.int64),
            )
        )
    if not parts:
        return Rows(
            *(np.zeros(0, t) for t in (np.int64, object, np.float64, np.int64, np.int64, np.int64))
        )
    if len(parts) == 1:
        return parts[0]
    return Rows(
        *(
            np.concatenate([getattr(p, f) for p in parts])
            for f in ("object_index", "alert_id", "mjd", "starts", "ends", "alert_row")
        )
    )


def _lookup_column(lc, rows: Rows, name: str, kind: str) -> np.ndarray:
    """Alert-level value of ``name`` when the row is an alert that has it, else the object's
    value."""
    n = len(rows.object_index)
    out = np.full(n, np.nan) if kind == "f" else np.full(n, None, dtype=object)

    def conv(values):
        if kind == "f":
            return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(np.float64)
        return np.array(
            [
                None if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v)
                for v in values
            ],
            dtype=object,
        )

    if name in lc.objects.columns and n:
        out[:] = conv(lc.objects[name].to_numpy()[rows.object_index])
    if name in lc.alerts.columns:
        is_alert = rows.alert_row >= 0
        if is_alert.any():
            vals = conv(lc.alerts[name].to_numpy()[rows.alert_row[is_alert]])
            known = ~pd.isna(vals)
            tgt = np.flatnonzero(is_alert)[known]
            out[tgt] = vals[known]
    return out


def context_columns(lc, rows: Rows) -> dict[str, np.ndarray]:
    """The SCORES context columns of each row, from its segment (first/last detection, last upper
    limit...).

    The last non-detection is the last upper limit before the first detection **in the first
    detection's band** (as Fink reports it to the TNS); a row without any detection gets the
    segment's last upper limit.
    """
    det = np.asarray(lc.detected, bool)
    band_code = np.asarray(lc.band, np.int64)
    s, e = rows.starts, rows.ends
    n = len(s)
    cum = np.concatenate([[0], np.cumsum(det, dtype=np.int64)])
    ncum = np.concatenate([[0], np.cumsum(~det, dtype=np.int64)])
    det_idx = np.flatnonzero(det)
    nd_idx = np.flatnonzero(~det)
    n_det = cum[e] - cum[s]
    has = n_det > 0
    first = np.full(n, -1, np.int64)
    last = np.full(n, -1, np.int64)
    first[has] = det_idx[cum[s[has]]]
    last[has] = det_idx[cum[e[has]] - 1]
    lnd = np.full(n, -1, np.int64)
    # nothing detected: the last upper limit of the segment, any band
    k = ncum[e] - 1
    ok = ~has & (k >= ncum[s]) & (k >= 0)
    lnd[ok] = nd_idx[k[ok]]
    # detected: the last upper limit before the first detection, in that detection's band
    first_band = np.where(has, band_code[np.maximum(first, 0)] if len(band_code) else -1, -1)
    for b in np.unique(first_band[has]):
        nd_b = ~det & (band_code == b)
        cum_b = np.concatenate([[0], np.cumsum(nd_b, dtype=np.int64)])
        idx_b = np.flatnonzero(nd_b)
        sel = np.flatnonzero(has & (first_band == b))
        k = cum_b[first[sel]] - 1
        ok = k >= cum_b[s[sel]]
        lnd[sel[ok]] = idx_b[k[ok]]

    bands = np.asarray([*list(lc.bands), ""], dtype=object)
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = lc.flux > 0
        mag = np.where(
            positive, ZEROPOINT - 2.5 * np.log10(np.where(positive, lc.flux, 1.0)), np.nan
        )
        mag_err = np.where(
            positive & (lc.flux_err > 0),
            MAG_ERR_FACTOR * lc.flux_err / np.where(positive, lc.flux, 1.0),
            np.nan,
        )
        lim = np.where(
            lc.flux_err > 0,
            ZEROPOINT - 2.5 * np.log10(LIMIT_SIGMA * np.where(lc.flux_err > 0, lc.flux_err, 1.0)),
            np.nan,
        )

    def take(arr, idx, fill):
        out = np.full(n, fill, dtype=arr.dtype if fill is not None else object)
        ok = idx >= 0
        out[ok] = arr[idx[ok]]
        return out

    band_names = bands[band_code] if len(lc.band) else np.zeros(0, object)
    cols: dict[str, np.ndarray] = {}
    for name, kind in _CONTEXT.items():
        cols[name] = _lookup_column(lc, rows, name, kind)
    cols.update(
        {
            "n_detections": n_det.astype(np.int64),
            "first_det_mjd": take(lc.mjd, first, np.nan),
            "first_det_mag": take(mag, first, np.nan),
            "first_det_mag_err": take(mag_err, first, np.nan),
            "first_det_limit_mag": _detection_limits(lc, first),
            "first_det_band": take(band_names, first, None),
            "last_nondet_mjd": take(lc.mjd, lnd, np.nan),
            "last_nondet_limit_mag": take(lim, lnd, np.nan),
            "last_nondet_band": take(band_names, lnd, None),
            "last_mag": take(mag, last, np.nan),
            "last_band": take(band_names, last, None),
        }
    )
    for c in ("first_det_band", "last_nondet_band", "last_band"):
        cols[c] = np.where(pd.isna(cols[c]), "", cols[c]).astype(object)
    cols["cdsxmatch"] = np.where(pd.isna(cols["cdsxmatch"]), "", cols["cdsxmatch"]).astype(object)
    return cols


def _detection_limits(lc, points: np.ndarray) -> np.ndarray:
    """The limiting magnitude of the epoch of each detection point (-1: none), NaN when unknown.

    Known when the point was measured by an alert of the input that carries the epoch's
    ``diffmaglim`` (ZTF: the alert whose ``candid`` is the point's ``alert_id``); a point of an
    alert's history whose own alert is not in the input has no known limit.
    """
    out = np.full(len(points), np.nan)
    if "diffmaglim" not in lc.alerts.columns or not len(points):
        return out
    limits = pd.to_numeric(lc.alerts["diffmaglim"], errors="coerce").to_numpy(np.float64)
    ids = lc.alerts["alert_id"].astype(str).to_numpy(object)
    by_id = {a: v for a, v in zip(ids, limits, strict=True) if np.isfinite(v)}
    if not by_id:
        return out
    point_ids = np.asarray(lc.alert_id, np.int64)
    for i, p in enumerate(points):
        if p >= 0 and point_ids[p] >= 0:
            out[i] = by_id.get(str(int(point_ids[p])), np.nan)
    return out


def select_rows(lc, rows: Rows, params: Mapping | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Selection on each row: ``(passed bool, reason str)``.

    ``params["rule"]``: ``"early"`` (default; ``earlyia.select.select_early``, the other keys are
    its keyword arguments), ``"fink"`` (``earlyia.select.fink_cuts``: Fink's own pre-fit cuts, for
    Fink's models) or ``"none"`` (every row: the model judges every alert, e.g. LSST, where SIMBAD
    and ``ndethist`` cuts do not apply).
    """
    n = len(rows.object_index)
    passed = np.ones(n, bool)
    reason = np.full(n, "", dtype=object)
    params = dict(params or {})
    rule = params.pop("rule", "early")
    if rule not in SELECTION_RULES:
        raise ConfigError(f"unknown selection rule {rule!r}; expected one of {SELECTION_RULES}")
    if rule == "none":
        return passed, reason
    for per, mask in (("alert", rows.alert_row >= 0), ("object", rows.alert_row < 0)):
        if not mask.any():
            continue
        src = rows.alert_row[mask] if per == "alert" else rows.object_index[mask]
        if rule == "fink":
            ok = np.asarray(fink_cuts(lc, per=per, **params), bool)[src]
            why = np.full(len(src), "", dtype=object)
            bad = np.flatnonzero(~ok)
            if len(bad):
                why[bad] = _fink_reasons(
                    lc, per, src[bad], params, rows.starts[mask][bad], rows.ends[mask][bad]
                )
        else:
            ok_all, why_all = _selection_arrays(select_early(lc, per=per, **params))
            ok, why = ok_all[src], why_all[src]
        passed[mask] = ok
        reason[mask] = why
    return passed, reason


def _fink_reasons(
    lc, per: str, bad: np.ndarray, params: Mapping, starts: np.ndarray, ends: np.ndarray
) -> list[str]:
    """Which of Fink's cuts each failing row missed (``bad``: alert or object rows; their
    segments given)."""
    min_mags, max_nd = int(params.get("min_mags", 4)), float(params.get("max_ndethist", 20))
    allowed = set(params.get("allowed_xmatch", EXTRAGALACTIC_TYPES))
    src = lc.alerts if per == "alert" else lc.objects
    cum = np.concatenate([[0], np.cumsum(lc.detected, dtype=np.int64)])
    ndet = cum[ends] - cum[starts]
    nd = (
        pd.to_numeric(src["ndethist"], errors="coerce").to_numpy(float)[bad]
        if "ndethist" in src.columns
        else np.full(len(bad), np.nan)
    )
    xm = (
        src["cdsxmatch"].to_numpy(object)[bad]
        if "cdsxmatch" in src.columns
        else np.full(len(bad), None, object)
    )
    out = []
    for k in range(len(bad)):
        parts = []
        if ndet[k] < min_mags:
            parts.append(f"{ndet[k]} detections < {min_mags}")
        if nd[k] > max_nd:
            parts.append(f"ndethist {nd[k]:g} > {max_nd:g}")
        x = (
            "Unknown"
            if xm[k] is None or (isinstance(xm[k], float) and np.isnan(xm[k]))
            else str(xm[k])
        )
        if x not in allowed:
            parts.append(f"SIMBAD type {x!r} is not a supernova host type")
        out.append("Fink cuts: " + ("; ".join(parts) or "failed"))
    return out


def _selection_arrays(sel: Any) -> tuple[np.ndarray, np.ndarray]:
    """(passed, reason) from what ``select_early`` returns (a frame with passed/reason, or a
    pair)."""
    if isinstance(sel, pd.DataFrame):
        ok_col = next(c for c in ("passed", "selected", "ok", "keep") if c in sel.columns)
        ok = sel[ok_col].fillna(False).to_numpy(bool)
        why = (
            sel["reason"].fillna("").astype(str).to_numpy(object)
            if "reason" in sel.columns
            else np.where(ok, "", "not selected").astype(object)
        )
        return ok, why
    ok, why = sel
    return np.asarray(ok, bool), np.asarray(why, dtype=object)


def _safe_extract(
    extractor, lc, starts: np.ndarray, ends: np.ndarray, objects: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features of the segments (of objects ``objects``); when the batch call raises, each
    segment alone so one bad alert cannot sink the chunk."""
    k = len(extractor.names)
    try:
        X, ok, why = extract_batched(extractor, lc, starts, ends, objects)
        return np.asarray(X, np.float64), np.asarray(ok, bool), np.asarray(why, dtype=object)
    except Exception:  # batch isolation boundary: retried one segment at a time below
        pass
    n = len(starts)
    X = np.full((n, k), np.nan)
    ok = np.zeros(n, bool)
    why = np.full(n, "", dtype=object)
    for i in range(n):
        try:
            x1, o1, w1 = extractor.extract_lc(
                lc, starts[i : i + 1], ends[i : i + 1], object_index=objects[i : i + 1]
            )
            X[i], ok[i], why[i] = x1[0], o1[0], w1[0]
        except Exception as exc:
            why[i] = f"feature extraction failed: {type(exc).__name__}: {exc}"
    return X, ok, why


def score_lightcurves(
    lc,
    model: Model,
    extractor=None,
    *,
    select: bool = True,
    selection: Mapping | None = None,
    per: str = "auto",
) -> pd.DataFrame:
    """The SCORES table of one chunk: selection -> features (only on selected rows) -> model.

    ``extractor`` defaults to the one described by the model card
    (``get_extractor(model.card["extractor"])``, which refuses a config whose feature names differ).
    ``selection`` are keyword arguments of ``earlyia.select.select_early`` (default: the card's
    ``selection``, else its defaults); ``select=False`` scores every row. ``score`` is the model's
    probability of the positive class, 0.0 when the selection or the features fail (like Fink), with
    ``passed``/``reason`` saying why. Problems of ``lc`` (objects its reader dropped) are not
    included: see :func:`problem_rows`.
    """
    if extractor is None:
        extractor = get_extractor(model.card["extractor"])
    model.check_features(list(extractor.names))
    rows = score_rows(lc, per)
    n = len(rows.object_index)
    if select and n:
        passed, reason = select_rows(
            lc, rows, selection if selection is not None else model.card.get("selection")
        )
    else:
        passed, reason = np.ones(n, bool), np.full(n, "", dtype=object)
    k = len(extractor.names)
    X = np.full((n, k), np.nan)
    todo = np.flatnonzero(passed)
    if len(todo):
        Xs, ok, why = _safe_extract(
            extractor, lc, rows.starts[todo], rows.ends[todo], rows.object_index[todo]
        )
        X[todo] = Xs
        bad = todo[~ok]
        passed[bad] = False
        reason[bad] = [w or "features failed" for w in why[~ok]]
        gated = todo[ok & ~apply_gate(model.card.get("gate"), Xs, extractor.names)]
        passed[gated] = False
        reason[gated] = GATE_REASON
    score = np.zeros(n)
    if passed.any():
        score[passed] = model.predict_proba(X[passed])[:, 1]
        thin = _too_little(model, X[passed])
        if thin is not None:
            reason[np.flatnonzero(passed)[thin[0]]] = thin[1]
    cols: dict[str, Any] = {
        "object_id": lc.objects["object_id"].astype(str).to_numpy(object)[rows.object_index]
        if n
        else np.zeros(0, object),
        "alert_id": rows.alert_id,
        "mjd": rows.mjd,
        "score": score,
        "passed": passed,
        "reason": reason.astype(object),
    }
    cols.update(context_columns(lc, rows))
    cols["label"] = (
        _lookup_column(lc, rows, "label", "s")
        if "label" in lc.objects.columns or "label" in lc.alerts.columns
        else np.full(n, None, object)
    )
    out = pd.DataFrame({c: cols[c] for c in SCORE_COLUMNS})
    extras = _broker_columns(lc, rows, set(extractor.names))
    feats = pd.DataFrame(X, columns=list(extractor.names))
    return pd.concat([out, extras, feats], axis=1)


def _too_little(model: Model, X: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows whose evidence is below the level from which the model can reach its candidate
    threshold, and why.

    Their score stays the calibrated probability (near the training prevalence): it says how little
    the alert shows, and it cannot cross the threshold.
    """
    ev = model.card.get("evidence") or {}
    judged = ev.get("judged_from")
    evidence = model.evidence(X)
    if evidence is None:
        return None
    if judged is None:
        why = "too little to judge: this model reaches its candidate threshold at no evidence level"
        return np.ones(len(X), bool), np.full(len(X), why, object)
    low = np.nan_to_num(evidence, nan=0.0) < judged
    why = np.array(
        [
            f"too little to judge: {int(v)} positive detection(s); this model can flag from "
            f"{judged}"
            for v in np.nan_to_num(evidence[low])
        ],
        dtype=object,
    )
    return low, why


def _broker_columns(lc, rows: Rows, feature_names: set[str]) -> pd.DataFrame:
    """Every other column the input carried (alert-level first, then object-level), renamed on a
    clash."""
    taken = set(SCORE_COLUMNS)
    data: dict[str, Any] = {}
    names = [c for c in lc.alerts.columns if c not in _NOT_CARRIED and c not in _CONTEXT]
    names += [
        c
        for c in lc.objects.columns
        if c not in _NOT_CARRIED and c not in _CONTEXT and c not in names
    ]
    all_alerts = bool(len(rows.alert_row)) and bool((rows.alert_row >= 0).all())
    no_alerts = not (rows.alert_row >= 0).any()
    for c in names:
        if all_alerts and c in lc.alerts.columns:
            vals = lc.alerts[c].to_numpy()[rows.alert_row]  # keeps the column's dtype
        elif no_alerts and c in lc.objects.columns:
            vals = lc.objects[c].to_numpy()[rows.object_index]
        else:
            vals = _lookup_object(lc, rows, c)
        out = c if c not in taken and c not in feature_names else f"input_{c}"
        data[out] = vals
    return pd.DataFrame(data, index=range(len(rows.object_index)))


def _lookup_object(lc, rows: Rows, name: str) -> np.ndarray:
    n = len(rows.object_index)
    out = np.full(n, None, dtype=object)
    if name in lc.objects.columns and n:
        out[:] = lc.objects[name].to_numpy(object)[rows.object_index]
    if name in lc.alerts.columns:
        is_alert = rows.alert_row >= 0
        out[is_alert] = lc.alerts[name].to_numpy(object)[rows.alert_row[is_alert]]
    return out


def concat_rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Frames stacked; an integer column missing from (or null in) some of them becomes nullable
    ``Int64`` instead of pandas' float64, which would round a 19-digit alert id."""
    if len(frames) == 1:
        return frames[0]
    names = {c for f in frames for c in f.columns}
    widen = {
        c
        for c in names
        if any(c in f.columns and f[c].dtype.kind in "iu" for f in frames)
        and not all(c in f.columns for f in frames)
    }
    if widen:
        frames = [
            f.astype({c: "Int64" for c in widen if c in f.columns and f[c].dtype.kind in "iu"})
            for f in frames
        ]
    return pd.concat(frames, ignore_index=True)


def problem_rows(problems: Iterable[Problem], feature_names: Iterable[str] = ()) -> pd.DataFrame:
    """SCORES rows (``passed=False``, score 0, the reason) for inputs or objects a reader could
    not use."""
    probs = list(problems)
    n = len(probs)
    cols: dict[str, Any] = {}
    for f in SCORE_SCHEMA:
        if pa.types.is_floating(f.type):
            cols[f.name] = np.full(n, np.nan)
        elif pa.types.is_integer(f.type):
            cols[f.name] = np.zeros(n, np.int64)
        elif pa.types.is_boolean(f.type):
            cols[f.name] = np.zeros(n, bool)
        else:
            cols[f.name] = np.full(n, "", dtype=object)
    cols["label"] = np.full(n, None, dtype=object)
    cols["score"] = np.zeros(n)
    cols["object_id"] = np.array(
        ["" if p.object_id is None else str(p.object_id) for p in probs], dtype=object
    )
    cols["alert_id"] = np.array(
        [str(getattr(p, "alert_id", "") or "") for p in probs], dtype=object
    )
    cols["reason"] = np.array(
        [f"{p.reason} [{p.source}]" if p.source else p.reason for p in probs], dtype=object
    )
    out = pd.DataFrame(cols)
    for name in feature_names:
        out[name] = np.nan
    return out


def scores_metadata(model: Model, extractor=None, **extra: Any) -> dict[str, Any]:
    """What a SCORES file says about how it was made (stored under :data:`METADATA_KEY`)."""
    return {
        "format": SCORES_FORMAT,
        "model_hash": model.hash,
        "model": model.summary(),
        "extractor": extractor.config() if extractor is not None else model.card["extractor"],
        "earlyia_version": __version__,
        **extra,
    }


@dataclass
class ScoreSummary:
    """What :func:`score_files` did."""

    path: Path
    n_rows: int = 0
    n_passed: int = 0
    n_problems: int = 0
    n_chunks: int = 0
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(
        default_factory=list
    )  # e.g. alerts of another survey scored on request
    #: Inputs (or parts of inputs) that could not be read at all, as "<file>: <why>".
    unreadable: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.n_rows / self.seconds if self.seconds > 0 else float("nan")


def score_files(
    inputs: Iterable[str | Path],
    model: Model,
    out: str | Path,
    *,
    chunk_size: int = CHUNK_SIZE,
    select: bool = True,
    selection: Mapping | None = None,
    format: str | None = None,
    progress: bool | None = None,
    on_chunk: Callable[[pd.DataFrame], None] | None = None,
    allow_survey_mismatch: bool = False,
) -> ScoreSummary:
    """Score any supported inputs chunk by chunk into one SCORES Parquet file (written atomically).

    ``progress``: a tqdm bar on stderr (default: only when stderr is a terminal). Bad inputs and bad
    alerts become rows with ``passed=False`` and the reason; nothing is raised for them. Alerts of
    another survey than the model's are refused (:class:`~earlyia.model.survey.SurveyMismatchError`,
    nothing written) unless ``allow_survey_mismatch``, which scores them with a note in the summary.
    """
    inputs = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    extractor = get_extractor(model.card["extractor"])
    model.check_features(list(extractor.names))
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        bar = tqdm(unit=" alerts", file=sys.stderr, desc="scoring")
    t0 = time.perf_counter()
    summary = ScoreSummary(Path(out))
    writer = ScoresWriter(out, scores_metadata(model, extractor, inputs=[str(p) for p in inputs]))
    try:
        for chunk in iter_chunks(inputs, chunk_size, format):
            frames = []
            problems = list(chunk.problems)
            if chunk.lc is not None:
                note = check_survey(
                    model.card,
                    data_survey(chunk.lc),
                    allow=allow_survey_mismatch,
                    source=chunk.label,
                )
                if note and not summary.notes:
                    summary.notes.append(note)
                frames.append(
                    score_lightcurves(
                        chunk.lc, model, extractor, select=select, selection=selection
                    )
                )
                problems += list(chunk.lc.problems)
            if problems:
                frames.append(problem_rows(problems, extractor.names))
                summary.n_problems += len(problems)
                summary.unreadable += [str(p) for p in problems if p.object_id is None]
            frames = [f for f in frames if len(f)]
            if not frames:
                continue
            df = concat_rows(frames)
            writer.write(df)
            if on_chunk is not None:
                on_chunk(df)
            summary.n_chunks += 1
            summary.n_rows += len(df)
            summary.n_passed += int(df["passed"].sum())
            for r in df.loc[~df["passed"].to_numpy(bool), "reason"]:
                key = reason_key(str(r))
                summary.reasons[key] = summary.reasons.get(key, 0) + 1
            if bar is not None:
                bar.update(len(df))
            del chunk, frames, df  # before the next chunk is read: one chunk in memory at a time
            pa.default_memory_pool().release_unused()
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary
