"""Early-epoch features: the compiled kernel against a slow, obviously correct reference."""

import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from earlyia.features.early import EarlyFeatures
from earlyia.io.table import LightCurves

ZP = 27.5


def _slope(t, m, w):
    if len(t) < 2:
        return 0.0
    w = np.asarray(w)
    tb = np.sum(w * t) / w.sum()
    mb = np.sum(w * m) / w.sum()
    den = np.sum(w * (t - tb) ** 2)
    return 0.0 if den <= 1e-12 else float(np.sum(w * (t - tb) * (m - mb)) / den)


def reference(t, b, f, e, d, pair_days=1.0):
    """Straightforward per-light-curve implementation of the documented features."""
    t, b, f, e, d = map(np.asarray, (t, b, f, e, d))
    out = {}
    det = np.flatnonzero(d)
    out["n_det"] = len(det)
    if len(det) == 0:
        return None
    out["frac_negative"] = np.mean(f[det] <= 0)
    out["duration"] = t[det[-1]] - t[det[0]]
    before = [i for i in range(det[0]) if not d[i]]
    out["gap_nondet"] = t[det[0]] - t[before[-1]] if before else -1.0
    out["has_nondet"] = float(bool(before))
    pos = [i for i in det if f[i] > 0]
    mags = {i: ZP - 2.5 * math.log10(f[i]) for i in pos}
    depth_known = (
        bool(before) and np.isfinite(e[before[-1]]) and e[before[-1]] > 0 and f[det[0]] > 0
    )
    out["depth_nondet"] = (
        (ZP - 2.5 * math.log10(5 * e[before[-1]])) - mags[det[0]] if depth_known else 0.0
    )
    out["has_depth"] = float(depth_known)
    if pos:
        peak = min(pos, key=lambda i: (mags[i], i))
        out.update(
            mag_first=mags[pos[0]],
            mag_peak=mags[peak],
            mag_last=mags[pos[-1]],
            t_since_peak=t[det[-1]] - t[peak],
        )
    else:
        out.update(mag_first=0.0, mag_peak=0.0, mag_last=0.0, t_since_peak=0.0)
    cols, times = [], []
    for i in pos:
        if b[i] != 0:
            continue
        cand = [j for j in pos if b[j] == 1 and abs(t[j] - t[i]) <= pair_days]
        if cand:
            j = min(cand, key=lambda j: (abs(t[j] - t[i]), j))
            cols.append(mags[i] - mags[j])
            times.append(0.5 * (t[i] + t[j]))
    out["colour_mean"] = float(np.mean(cols)) if cols else 0.0
    out["colour_last"] = (
        cols[int(np.flatnonzero(np.asarray(times) == max(times))[-1])] if cols else 0.0
    )
    out["colour_rate"] = (
        _slope(np.asarray(times), np.asarray(cols), np.ones(len(cols))) if cols else 0.0
    )
    out["n_colour"] = len(cols)
    w = 1 / e[det] ** 2
    mu = np.sum(w * f[det]) / w.sum()
    out["log_chi2_const"] = math.log10(
        1 + np.sum(((f[det] - mu) / e[det]) ** 2) / max(len(det) - 1, 1)
    )
    best = 0.0
    for band, name in ((0, "g"), (1, "r")):
        idx = [i for i in pos if b[i] == band]
        out[f"n_det_{name}"] = len(idx)
        if not idx:
            out.update({f"rise_rate_{name}": 0.0, f"recent_rate_{name}": 0.0, f"fade_{name}": 0.0})
            continue
        tt = t[idx]
        mm = np.array([mags[i] for i in idx])
        sm = 1.0857362 * e[idx] / f[idx]
        out[f"rise_rate_{name}"] = _slope(tt, mm, 1 / (sm**2 + 1e-4))
        ok = len(idx) >= 2 and tt[-1] - tt[-2] > 0.1
        out[f"recent_rate_{name}"] = (mm[-1] - mm[-2]) / (tt[-1] - tt[-2]) if ok else 0.0
        out[f"fade_{name}"] = mm[-1] - mm.min()
        if len(idx) >= 2:
            sig = (f[idx[-1]] - f[idx[0]]) / math.hypot(e[idx[-1]], e[idx[0]])
            best = sig if abs(sig) > abs(best) else best
    out["brightening_sig"] = best
    return out


point = st.tuples(
    st.floats(0, 30, allow_nan=False).map(lambda x: round(x, 2)),
    st.integers(0, 1),
    st.one_of(st.floats(-50, -0.5), st.floats(0.5, 5000)),
    st.floats(1, 100),
    st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(point, min_size=1, max_size=25))
def test_kernel_matches_reference(points):
    df = pd.DataFrame(points, columns=["mjd", "b", "flux", "flux_err", "detected"])
    df["object_id"] = "x"
    df["band"] = np.where(df["b"] == 0, "g", "r")
    df.loc[~df["detected"], "flux"] = np.nan
    lc = LightCurves.from_frames(df, survey="ZTF")
    ext = EarlyFeatures(sigmoid=None)
    X, ok, reason = ext.extract_lc(lc)
    s, e = lc.offsets[0], lc.offsets[1]
    ref = reference(lc.mjd[s:e], lc.band[s:e], lc.flux[s:e], lc.flux_err[s:e], lc.detected[s:e])
    if ref is None:
        assert not ok[0] and reason[0] == "no detection"
        return
    assert ok[0]
    got = dict(zip([n.removeprefix("early_") for n in ext.names], X[0], strict=True))
    for k, v in ref.items():
        assert math.isclose(got[k], v, rel_tol=1e-7, abs_tol=1e-7), (k, got[k], v)


def test_rising_sn_vs_flat_star():
    t = np.arange(0, 12, 2.0)
    rising = 10 ** (-0.4 * (20 - 0.25 * t) + 11)  # brightening 0.25 mag/day
    flat = np.full_like(t, 10 ** (-0.4 * 19 + 11))
    rows = []
    for oid, f in (("sn", rising), ("star", flat)):
        for band in ("g", "r"):
            rows += [
                (oid, ti + (0.1 if band == "r" else 0), band, fi, 0.02 * fi, True)
                for ti, fi in zip(t, f, strict=True)
            ]
    lc = LightCurves.from_frames(
        pd.DataFrame(rows, columns=["object_id", "mjd", "band", "flux", "flux_err", "detected"]),
        survey="ZTF",
    )
    tab = EarlyFeatures(sigmoid=None).transform(lc).set_index("object_id")
    assert abs(tab.loc["sn", "early_rise_rate_g"] + 0.25) < 1e-6
    assert abs(tab.loc["star", "early_rise_rate_g"]) < 1e-9
    assert (
        tab.loc["sn", "early_brightening_sig"] > 10
        and abs(tab.loc["star", "early_brightening_sig"]) < 1e-9
    )
    assert tab.loc["sn", "early_n_colour"] == 6
