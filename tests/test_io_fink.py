"""Fink concatenated-column parquet and long CSV readers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import reference, shared
from earlyia.errors import InputError, SchemaError
from earlyia.io import detect_format, read
from earlyia.io.fink import lightcurves_from_fink_frame
from earlyia.io.photometry import mag_to_fluxcal
from earlyia.io.table import JD_MJD_OFFSET, LightCurves


def _frame():
    return pd.DataFrame(
        {
            "objectId": ["ZTF1", "ZTF1", "ZTF2"],
            "candid": [11, 12, 21],
            "cjd": [
                [2459000.5, 2459001.5],
                [2459000.5, 2459001.5, 2459003.5],
                [2459010.5, 2459011.5],
            ],
            "cmagpsf": [[19.0, np.nan], [19.0, np.nan, 18.5], [20.0, 19.5]],
            "csigmapsf": [[0.1, np.nan], [0.1, np.nan, 0.05], [0.2, 0.1]],
            "cfid": [[1, 2], [1, 2, 1], [2, 2]],
            "cdiffmaglim": [[20.5, 20.0], [20.5, 20.0, 20.7], [21.0, 21.0]],
            "drb": [0.9, 0.95, 0.4],
            "anchor_score": [0.1, 0.7, 0.0],
            "TNS": [None, "SN Ia", "(TNS) SN II"],
        }
    )


def test_rows_merge_and_alerts():
    lc = lightcurves_from_fink_frame(_frame(), source="mem")
    assert lc.n_objects == 2
    i1 = lc.object_index(["ZTF1"])[0]
    s, e = lc.offsets[i1], lc.offsets[i1 + 1]
    assert e - s == 3  # 2 + 3 points, duplicated epochs merged
    assert np.allclose(lc.mjd[s:e], np.array([2459000.5, 2459001.5, 2459003.5]) - JD_MJD_OFFSET)
    # the upper limit: NaN flux, 1-sigma noise from the 5-sigma limit 20.0
    assert not lc.detected[s + 1] and np.isnan(lc.flux[s + 1])
    assert np.isclose(lc.flux_err[s + 1], 10 ** (-0.4 * 20.0 + 11) / 5)
    assert np.isclose(lc.flux[s + 2], mag_to_fluxcal(18.5, 0.05)[0])
    assert lc.alert_id[s + 2] == 12  # the alert's own point carries its candid
    assert list(lc.alerts["alert_id"]) == ["11", "12", "21"]
    assert np.allclose(
        lc.alerts["mjd"], np.array([2459001.5, 2459003.5, 2459011.5]) - JD_MJD_OFFSET
    )
    assert list(lc.alerts["anchor_score"]) == [0.1, 0.7, 0.0]
    assert list(lc.alerts["ndethist"]) == [1, 2, 2]  # detections in each row's history
    starts, ends = lc.alert_segments()
    assert list(ends - starts) == [2, 3, 2]
    labels = dict(zip(lc.objects["object_id"], lc.objects["label"], strict=True))
    assert labels == {"ZTF1": "SN Ia", "ZTF2": "SN II"}
    # object-level drb from the latest alert
    assert lc.objects.set_index("object_id").loc["ZTF1", "drb"] == 0.95


def test_alert_ids_without_candid():
    df = _frame().drop(columns="candid")
    lc = lightcurves_from_fink_frame(df, source="/x/file.parquet")
    assert list(lc.alerts["alert_id"]) == [
        "ZTF1@file.parquet:0",
        "ZTF1@file.parquet:1",
        "ZTF2@file.parquet:2",
    ]
    assert (lc.alert_id == -1).all()


def test_isdiffpos_list_gives_negative_flux():
    df = _frame()
    df["cisdiffpos"] = [["t", "t"], ["t", "t", "f"], ["1", "0"]]
    lc = lightcurves_from_fink_frame(df, source="mem")
    i2 = lc.object_index(["ZTF2"])[0]
    assert lc.flux[lc.offsets[i2] + 1] < 0 < lc.flux[lc.offsets[i2]]


def test_bad_rows_become_problems():
    df = _frame()
    df.at[2, "cmagpsf"] = [20.0]  # length mismatch
    lc = lightcurves_from_fink_frame(df, source="mem")
    assert lc.n_objects == 1
    assert any("different lengths" in p.reason and p.object_id == "ZTF2" for p in lc.problems)
    with pytest.raises(SchemaError, match="cmagpsf"):
        lightcurves_from_fink_frame(df.drop(columns="cmagpsf"), source="mem")
    with pytest.raises(InputError, match="no readable"):
        lightcurves_from_fink_frame(df.iloc[:0], source="mem")


def test_labelled_set_counts():
    d = shared("ztf_fink_tns_labelled/objects.csv").parent
    files = [*sorted(d.glob("fink_cross_tns_*.parquet")), d / "all_nonIa.csv.gz"]
    assert {detect_format(f) for f in files} == {"fink_parquet", "fink_csv"}
    lc = read(files)
    assert lc.n_objects == 1502
    assert (lc.objects["label"] == "SN Ia").sum() == 599
    truth = pd.read_csv(d / "objects.csv").set_index("objectId")["tns_type"]
    ours = lc.objects.set_index("object_id")["label"]
    agree = (ours.loc[truth.index] == truth).mean()
    assert agree > 0.99  # 4 objects have differing TNS strings between files (PROVENANCE.md)
    assert len(lc.alerts) == 1829  # one alert per monthly row; the CSV has no alert structure
    assert not lc.problems


def test_replay_file():
    path = reference("ztf_replay_alerts_with_anchor.parquet")
    lc = read(path)
    raw = pd.read_parquet(path, columns=["objectId", "candid", "ndethist", "anchor_score"])
    assert len(lc.alerts) == len(raw) == 19778
    assert lc.n_objects == raw["objectId"].nunique() == 1444
    a = lc.alerts.set_index("alert_id")
    r = raw.set_index("candid")
    assert (a.loc[r.index, "ndethist"].to_numpy() == r["ndethist"].to_numpy()).all()
    assert np.allclose(a.loc[r.index, "anchor_score"].to_numpy(), r["anchor_score"].to_numpy())
    # each alert "as of" sees exactly its ndethist detections
    starts, ends = lc.alert_segments()
    cum = np.concatenate([[0], np.cumsum(lc.detected)])
    assert np.array_equal(cum[ends] - cum[starts], lc.alerts["ndethist"].to_numpy())


@st.composite
def _fink_rows(draw):
    """Objects with a true light curve on a 0.01-day grid; each alert row is a random prefix of
    it (Fink-like)."""
    rows = []
    for k in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 12))
        steps = draw(st.lists(st.integers(1, 300), min_size=n, max_size=n))
        jd = 2459000.5 + np.cumsum(steps) * 0.01
        fid = np.array(draw(st.lists(st.sampled_from([1, 2, 3]), min_size=n, max_size=n)))
        mag = np.array(
            draw(st.lists(st.one_of(st.just(np.nan), st.floats(15, 22)), min_size=n, max_size=n))
        )
        sig = np.where(np.isnan(mag), np.nan, 0.05)
        order = draw(st.permutations(range(n)))  # Fink lists are not always sorted
        for cut in sorted(set(draw(st.lists(st.integers(1, n), min_size=1, max_size=4)))):
            idx = [i for i in order if i < cut]
            rows.append([f"ZTF{k}", list(jd[idx]), list(mag[idx]), list(sig[idx]), list(fid[idx])])
    return rows


def _reference(rows):
    """Plain Python: a dict per (object, time, band), a detection beating a non-detection."""
    best = {}
    for oid, jd, mag, sig, fid in rows:
        for t, m, s, f in zip(jd, mag, sig, fid, strict=True):
            key = (oid, round(t - JD_MJD_OFFSET, 8), "gri"[f - 1])
            det = not np.isnan(m)
            flux, err = (float(v) for v in mag_to_fluxcal(m, s)) if det else (np.nan, np.nan)
            if key not in best or (det and not best[key][2]):
                best[key] = (flux, err, det)
    return sorted(best.items())


@given(_fink_rows())
@settings(max_examples=60, deadline=None)
def test_fink_builder_against_reference(rows):
    lc = lightcurves_from_fink_frame(
        pd.DataFrame(rows, columns=["objectId", "cjd", "cmagpsf", "csigmapsf", "cfid"]), source="h"
    )
    ref = _reference(rows)
    oid = np.repeat(lc.object_ids, np.diff(lc.offsets))
    ours = sorted(
        ((o, round(t, 8), lc.bands[b]), (f, e, d))
        for o, t, b, f, e, d in zip(
            oid, lc.mjd, lc.band, lc.flux, lc.flux_err, lc.detected, strict=True
        )
    )
    assert [k for k, _ in ours] == [k for k, _ in ref]
    for (_, (f, e, d)), (_, (rf, re, rd)) in zip(ours, ref, strict=True):
        assert d == rd
        assert (np.isnan(f) and np.isnan(rf)) or np.isclose(f, rf)
        assert (np.isnan(e) and np.isnan(re)) or np.isclose(e, re)
    assert len(lc.alerts) == len(rows)
    # every alert's segment holds all the points of its own row and nothing later than the alert
    starts, ends = lc.alert_segments()
    for j, (s, e) in enumerate(zip(starts, ends, strict=True)):
        oid_j, jd, _, _, fid = rows[int(lc.alerts["row"].iloc[j])]
        seg = {(round(t, 8), lc.bands[b]) for t, b in zip(lc.mjd[s:e], lc.band[s:e], strict=True)}
        assert {
            (round(t - JD_MJD_OFFSET, 8), "gri"[f - 1]) for t, f in zip(jd, fid, strict=True)
        } <= seg
        assert lc.object_ids[lc.alerts["object_index"].iloc[j]] == oid_j
        assert lc.mjd[e - 1] <= lc.alerts["mjd"].iloc[j] + 1e-9


# ---------------------------------------------------------------------------- the array builder
# equals the frame builder
_JD = [2459000.5, 2459000.5 + 4e-6, 2459000.5 + 2e-5, 2459001.25, 2459003.0]


@st.composite
def _alert_rows(draw):
    """Alert rows as the readers give them to points_to_lightcurves: few objects (repeated over
    rows), epochs that repeat within and across rows, detections and limits, both signs,
    duplicate and unknown alert ids, forced points."""
    n_rows = draw(st.integers(1, 6))
    oids = draw(
        st.lists(st.sampled_from(["ZTF21b", "ZTF21a", "ZTF20c"]), min_size=n_rows, max_size=n_rows)
    )
    lengths = draw(st.lists(st.integers(1, 6), min_size=n_rows, max_size=n_rows))
    n = sum(lengths)
    pts = st.lists
    jd = draw(pts(st.sampled_from(_JD), min_size=n, max_size=n))
    fid = draw(
        pts(
            st.sampled_from(
                [1, 2, 2, 3, 1] + ([4] if draw(st.booleans()) and draw(st.booleans()) else [])
            ),
            min_size=n,
            max_size=n,
        )
    )
    mag = draw(pts(st.sampled_from([np.nan, 18.0, 19.5, 19.5]), min_size=n, max_size=n))
    sigma = draw(pts(st.sampled_from([0.1, 0.05]), min_size=n, max_size=n))
    isd = draw(pts(st.sampled_from(["t", "f", None]), min_size=n, max_size=n))
    lim = draw(pts(st.sampled_from([20.0, 20.5, np.nan]), min_size=n, max_size=n))
    candid = draw(pts(st.sampled_from([-1, 5, 7, 9]), min_size=n, max_size=n))
    row_candid = draw(pts(st.sampled_from([11, 12, 13]), min_size=n_rows, max_size=n_rows))
    forced = None
    if draw(st.booleans()):
        is_forced = np.array(draw(pts(st.booleans(), min_size=n, max_size=n))) & np.isnan(mag)
        f_flux = np.array(
            draw(pts(st.sampled_from([np.nan, 50.0, -30.0, 400.0]), min_size=n, max_size=n))
        )
        forced = (np.where(is_forced, f_flux, np.nan), np.where(is_forced, 20.0, np.nan), is_forced)
    if draw(st.booleans()):  # an absurd point: its object goes (the frame builder says why)
        mag[draw(st.integers(0, n - 1))] = -60.0
    alerts = pd.DataFrame(
        {
            "candid": row_candid,
            "ndethist": draw(pts(st.integers(1, 9), min_size=n_rows, max_size=n_rows)),
        }
    )
    alerts["alert_id"] = [str(c) for c in row_candid]
    return dict(
        row_object_ids=np.asarray(oids, object),
        lengths=np.asarray(lengths),
        jd=np.asarray(jd),
        mag=np.asarray(mag),
        sigma=np.asarray(sigma),
        fid=np.asarray(fid, float),
        isdiffpos=np.asarray(isd, object),
        diffmaglim=np.asarray(lim),
        candid=np.asarray(candid, np.int64),
        alert_columns=alerts,
        forced=forced,
    )


@given(_alert_rows())
def test_array_builder_gives_the_table_of_the_frame_builder(rows):
    """points_to_lightcurves sorts and dedups points as arrays (LightCurves.from_sorted_points);
    the table is the one the frame path (LightCurves.from_frames) gives, point for point, with
    the same objects, alerts and problems."""
    from unittest import mock

    from earlyia.io.fink import points_to_lightcurves

    fast = points_to_lightcurves(**rows, source="rows")
    with mock.patch.object(LightCurves, "from_sorted_points", return_value=None):
        ref = points_to_lightcurves(**rows, source="rows")
    pd.testing.assert_frame_equal(fast.objects, ref.objects)
    pd.testing.assert_frame_equal(fast.alerts, ref.alerts)
    for name in ("offsets", "mjd", "band", "flux", "flux_err", "detected", "alert_id"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(ref, name), err_msg=name)
        assert getattr(fast, name).dtype == getattr(ref, name).dtype, name
    assert fast.bands == ref.bands
    assert [str(p) for p in fast.problems] == [str(p) for p in ref.problems]
