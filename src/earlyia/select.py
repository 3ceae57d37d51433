"""Early-supernova selection cuts: which alerts (or objects) are worth classifying at all.

The cuts are Fink's (young: ``ndethist <= 20``; not a known star or variable in SIMBAD), plus a
per-band minimum number of nights and a rising test that tolerates noise (a weighted flux-vs-time
slope more than 2 sigma below zero fails; Fink instead drops a band at the first dip of an EWM).
Thresholds are parameters; the function is pure and vectorised over light-curve segments, and the
reason of each rejection names the first failing cut, so a broker operator can see why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numba
import numpy as np
import pandas as pd

from earlyia.errors import InputError
from earlyia.features._sigmoid_robust import NIGHT_SHIFT

#: Selection rules a model card may name (``card["selection"]["rule"]``): :func:`select_early`,
#: :func:`fink_cuts` (Fink's own pre-fit cuts, for Fink's models) or none (every alert scored).
SELECTION_RULES = ("early", "fink", "none")
#: SIMBAD types Fink accepts as possible supernova hosts or transients (missing cdsxmatch =
#: "Unknown").
EXTRAGALACTIC_TYPES = (
    "Unknown",
    "Candidate_SN*",
    "SN",
    "Transient",
    "Fail",
    "Fail 504",
    "SN*_Candidate",
    "galaxy",
    "Galaxy",
    "EmG",
    "Seyfert",
    "Seyfert_1",
    "Seyfert_2",
    "BlueCompG",
    "StarburstG",
    "LSB_G",
    "HII_G",
    "High_z_G",
    "GinPair",
    "GinGroup",
    "BClG",
    "GinCl",
    "PartofG",
    "Compact_Gr_G",
    "IG",
    "PairG",
    "GroupG",
    "ClG",
    "SuperClG",
    "Void",
    "LINER",
    "Possible_ClG",
    "Possible_SClG",
    "GravLens_Candidate",
)


@numba.njit(cache=True, nogil=True)
def band_stats(mjd, band, flux, err, detected, starts, ends, codes, nights, slope_sig):
    """Per segment and band: number of detection nights and the weighted flux-vs-time slope / its
    error."""
    for i in range(starts.shape[0]):
        for k in range(codes.shape[0]):
            s0 = 0.0
            st = 0.0
            sy = 0.0
            n = 0
            last = np.nan
            for r in range(starts[i], ends[i]):
                if (
                    band[r] != codes[k]
                    or not detected[r]
                    or not np.isfinite(flux[r])
                    or not (err[r] > 0)
                ):
                    continue
                day = np.floor(mjd[r] + NIGHT_SHIFT)
                if day != last:
                    n += 1
                    last = day
                ww = 1.0 / (err[r] * err[r])
                s0 += ww
                st += ww * mjd[r]
                sy += ww * flux[r]
            nights[i, k] = n
            if n < 2:
                slope_sig[i, k] = 0.0
                continue
            tm = st / s0
            ym = sy / s0
            stt = 0.0
            sty = 0.0
            for r in range(starts[i], ends[i]):
                if (
                    band[r] != codes[k]
                    or not detected[r]
                    or not np.isfinite(flux[r])
                    or not (err[r] > 0)
                ):
                    continue
                ww = 1.0 / (err[r] * err[r])
                stt += ww * (mjd[r] - tm) ** 2
                sty += ww * (mjd[r] - tm) * (flux[r] - ym)
            slope_sig[i, k] = sty / np.sqrt(stt) if stt > 0 else 0.0


def _column(frame: pd.DataFrame, name: str, rows: np.ndarray) -> np.ndarray | None:
    if name not in frame.columns:
        return None
    return frame[name].to_numpy()[rows]


def select_early(
    lc,
    per: str = "alert",
    max_ndethist: int = 20,
    min_points_per_band: int = 3,
    bands: Iterable[str] = ("g", "r"),
    require_rising: bool = True,
    allowed_xmatch: Iterable[str] = EXTRAGALACTIC_TYPES,
    rise_sigma: float = 2.0,
) -> pd.DataFrame:
    """Apply the early-SN cuts to each alert (``per="alert"``) or object; returns
    ``DataFrame(object_id, alert_id, passed, reason)`` (reason '' when passed).

    ``ndethist`` comes from the alert (or object) column, else the number of detections in the
    light curve; a missing ``cdsxmatch`` counts as "Unknown".
    """
    bands = tuple(bands)
    allowed = set(allowed_xmatch)
    if per == "alert":
        if lc.alerts.empty:
            raise InputError(
                "per='alert' needs alerts, but the light curves have none; use per='object'"
            )
        starts, ends = lc.alert_segments()
        obj = lc.alerts["object_index"].to_numpy(np.int64)
        alert_ids = lc.alerts["alert_id"].astype(str).to_numpy(object)
        src, rows = lc.alerts, np.arange(len(obj))
    elif per == "object":
        starts, ends = lc.starts.astype(np.int64), lc.ends.astype(np.int64)
        obj = np.arange(lc.n_objects)
        alert_ids = np.full(len(obj), None, dtype=object)
        src, rows = lc.objects, obj
    else:
        raise InputError(f"per must be 'alert' or 'object', got {per!r}")
    n = len(starts)
    cum = np.concatenate([[0], np.cumsum(lc.detected, dtype=np.int64)])
    ndet = cum[ends] - cum[starts]
    ndethist = _column(src, "ndethist", rows)
    if ndethist is None and per == "alert":
        ndethist = _column(lc.objects, "ndethist", obj)
    ndethist = (
        ndet.astype(float)
        if ndethist is None
        else pd.to_numeric(pd.Series(ndethist), errors="coerce").to_numpy(float)
    )
    ndethist = np.where(np.isfinite(ndethist), ndethist, ndet)
    xm = _column(src, "cdsxmatch", rows)
    if xm is None and per == "alert":
        xm = _column(lc.objects, "cdsxmatch", obj)
    xm = (
        np.full(n, "Unknown", dtype=object)
        if xm is None
        else np.array([simbad_type(v) for v in xm], dtype=object)
    )

    codes = np.array([lc.band_code(b) for b in bands], np.int8)
    nights = np.zeros((n, len(bands)), np.int64)
    slope = np.zeros((n, len(bands)))
    if n:
        band_stats(
            lc.mjd,
            lc.band,
            lc.flux,
            lc.flux_err,
            lc.detected,
            starts.astype(np.int64),
            ends.astype(np.int64),
            codes,
            nights,
            slope,
        )

    reason = np.full(n, "", dtype=object)
    for i in range(n):
        if ndethist[i] > max_ndethist:
            reason[i] = f"ndethist {int(ndethist[i])} > {max_ndethist}"
        elif xm[i] not in allowed:
            reason[i] = f"SIMBAD type {xm[i]!r} is not a possible SN host or transient"
        else:
            for k, b in enumerate(bands):
                if nights[i, k] < min_points_per_band:
                    reason[i] = f"band {b}: {nights[i, k]} points < {min_points_per_band}"
                    break
            else:
                if require_rising:
                    for k, b in enumerate(bands):
                        if slope[i, k] < -rise_sigma:
                            reason[i] = f"not rising in {b}"
                            break
    return pd.DataFrame(
        {
            "object_id": lc.objects["object_id"].astype(str).to_numpy(object)[obj],
            "alert_id": alert_ids,
            "passed": reason == "",
            "reason": reason,
        }
    )


def reason_kind(reason: str) -> str:
    """The rule a selection reason comes from, without the object's own value, to count
    rejections by rule: ``"ndethist 34 > 20"`` -> ``"ndethist > 20"``, ``"band r: 2 points < 3"``
    -> ``"band r: fewer than 3 points"``; other reasons are already kinds."""
    m = re.fullmatch(r"ndethist \d+ > (\d+)", reason)
    if m:
        return f"ndethist > {m[1]}"
    m = re.fullmatch(r"band (\S+): \d+ points < (\d+)", reason)
    if m:
        return f"band {m[1]}: fewer than {m[2]} points"
    return reason


#: SIMBAD's long type names (newer cross-matches) for the short ones Fink's list uses.
SIMBAD_SYNONYMS = {"Supernova": "SN", "SuperNova_Candidate": "SN*_Candidate"}


def simbad_type(value) -> str:
    """Fink's cdsxmatch as a SIMBAD type: missing or empty -> "Unknown"; newer Fink's "(SIMBAD) "
    prefix removed; a TNS supernova classification ("(TNS) SN II-pec") counts as "SN" (it is a
    supernova, not a star); SIMBAD's long names of supernovae ("Supernova") read as their short
    names."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "Unknown"
    s = str(value).strip()
    if s.startswith("(SIMBAD) "):
        s = s[len("(SIMBAD) ") :].strip()
    elif s.startswith("(TNS) SN") or s.startswith("(TNS) SLSN"):
        return "SN"
    if not s or s.lower() in ("nan", "none", "null"):
        return "Unknown"
    return SIMBAD_SYNONYMS.get(s, s)


def _fink_xmatch(value) -> str:
    """Fink's own reading: only a missing value becomes "Unknown" (no prefix handling)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "Unknown"
    return str(value)


def fink_cuts(
    lc,
    per: str = "alert",
    min_mags: int = 4,
    max_ndethist: int = 20,
    allowed_xmatch: Iterable[str] = EXTRAGALACTIC_TYPES,
) -> np.ndarray:
    """Fink's pre-fit cuts (bool per alert or object): >= ``min_mags`` detections in the history,
    ``ndethist <= max_ndethist`` (when known) and an allowed SIMBAD type. Failing rows get score
    0 in Fink."""
    if per == "alert":
        starts, ends = lc.alert_segments()
        src, rows = lc.alerts, np.arange(len(starts))
    else:
        starts, ends = lc.starts, lc.ends
        src, rows = lc.objects, np.arange(lc.n_objects)
    cum = np.concatenate([[0], np.cumsum(lc.detected, dtype=np.int64)])
    ok = (cum[ends] - cum[starts]) >= min_mags
    nd = _column(src, "ndethist", rows)
    if nd is not None:
        nd = pd.to_numeric(pd.Series(nd), errors="coerce").to_numpy(float)
        ok &= ~(nd > max_ndethist)
    xm = _column(src, "cdsxmatch", rows)
    if xm is not None:
        allowed = set(allowed_xmatch)
        ok &= np.array([_fink_xmatch(v) in allowed for v in xm], bool)
    return ok
