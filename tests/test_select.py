"""Early selection cuts: each cut, its order, the reasons, and a slow reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlyia.io.table import LightCurves
from earlyia.select import EXTRAGALACTIC_TYPES, fink_cuts, select_early


def _lc(objects, phot_rows, alerts=None):
    phot = pd.DataFrame(
        phot_rows, columns=["object_id", "mjd", "band", "flux", "flux_err", "detected"]
    )
    return LightCurves.from_frames(phot, pd.DataFrame(objects), alerts, survey="ZTF")


def _rising(oid, n=3, step=100.0):
    rows = []
    for k in range(n):
        rows.append((oid, 10.0 + k, "g", step * (k + 1), 5.0, True))
        rows.append((oid, 10.2 + k, "r", step * (k + 1), 5.0, True))
    return rows


def test_each_cut_and_reason():
    rows = (
        _rising("ok") + _rising("old") + _rising("star") + _rising("short", n=2) + _rising("nan_xm")
    )
    rows += [("fall", 10.0 + k, b, 1000.0 - 200 * k, 5.0, True) for k in range(4) for b in "gr"]
    objects = {
        "object_id": ["ok", "old", "star", "short", "nan_xm", "fall"],
        "ndethist": [6, 34, 6, 4, 6, 8],
        "cdsxmatch": ["SN", "Unknown", "RRLyr", "Galaxy", None, "Unknown"],
    }
    out = select_early(_lc(objects, rows), per="object").set_index("object_id")
    assert out.loc["ok", "passed"] and out.loc["ok", "reason"] == ""
    assert out.loc["nan_xm", "passed"]  # missing cdsxmatch = Unknown
    assert out.loc["old", "reason"] == "ndethist 34 > 20"
    assert out.loc["star", "reason"] == "SIMBAD type 'RRLyr' is not a possible SN host or transient"
    assert out.loc["short", "reason"] == "band g: 2 points < 3"
    assert out.loc["fall", "reason"] == "not rising in g"
    # thresholds are parameters
    relaxed = select_early(
        _lc(objects, rows),
        per="object",
        max_ndethist=40,
        min_points_per_band=2,
        require_rising=False,
    )
    assert relaxed.set_index("object_id").loc[["old", "short", "fall"], "passed"].all()
    assert "RRLyr" not in EXTRAGALACTIC_TYPES and "GravLens_Candidate" in EXTRAGALACTIC_TYPES


def test_per_alert_uses_each_alerts_history():
    rows = _rising("a", n=4)
    alerts = pd.DataFrame(
        {"object_id": ["a", "a"], "alert_id": ["a1", "a2"], "mjd": [11.2, 13.2], "ndethist": [4, 8]}
    )
    out = select_early(_lc({"object_id": ["a"]}, rows, alerts), per="alert").set_index("alert_id")
    assert out.loc["a1", "reason"] == "band g: 2 points < 3"
    assert out.loc["a2", "passed"]
    assert fink_cuts(_lc({"object_id": ["a"]}, rows, alerts), per="alert").tolist() == [True, True]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6))
def test_matches_slow_reference(seed):
    rng = np.random.default_rng(seed)
    rows, objects = [], {"object_id": [], "ndethist": [], "cdsxmatch": []}
    for i in range(6):
        oid = f"o{i}"
        objects["object_id"].append(oid)
        objects["ndethist"].append(int(rng.integers(1, 30)))
        objects["cdsxmatch"].append(rng.choice(["Unknown", "SN", "Star", "Galaxy", "RRLyr"]))
        for b in "gr":
            for k in range(int(rng.integers(0, 5))):
                rows.append(
                    (
                        oid,
                        10.0 + 2 * k + (0.1 if b == "r" else 0),
                        b,
                        rng.uniform(-50, 500),
                        rng.uniform(5, 20),
                        True,
                    )
                )
        rows.append((oid, 5.0, "g", np.nan, 3.0, False))
    lc = _lc(objects, rows)
    out = select_early(lc, per="object").set_index("object_id")
    phot, obj, _ = lc.to_frames()
    for oid, o in obj.set_index("object_id").iterrows():
        p = phot[(phot.object_id == oid) & phot.detected]
        expect = ""
        if o.ndethist > 20:
            expect = f"ndethist {o.ndethist} > 20"
        elif o.cdsxmatch not in EXTRAGALACTIC_TYPES:
            expect = f"SIMBAD type {o.cdsxmatch!r} is not a possible SN host or transient"
        else:
            for b in "gr":
                n = p[p.band == b].mjd.apply(lambda t: np.floor(t + 0.3)).nunique()
                if n < 3:
                    expect = f"band {b}: {n} points < 3"
                    break
            else:
                for b in "gr":
                    q = p[p.band == b]
                    w = 1 / q.flux_err**2
                    tm = np.average(q.mjd, weights=w)
                    ym = np.average(q.flux, weights=w)
                    slope = np.sum(w * (q.mjd - tm) * (q.flux - ym)) / np.sum(w * (q.mjd - tm) ** 2)
                    se = 1 / np.sqrt(np.sum(w * (q.mjd - tm) ** 2))
                    if slope / se < -2:
                        expect = f"not rising in {b}"
                        break
        assert out.loc[oid, "reason"] == expect
        assert out.loc[oid, "passed"] == (expect == "")


def test_select_command(tmp_path, capsys):
    from conftest import shared
    from earlyia.cli.main import main

    src = shared("ztf_fink_alerts_pool/ztf_alerts_pool.parquet")
    out = tmp_path / "sel.parquet"
    assert main(["select", str(src), "--out", str(out)]) == 0
    sel = pd.read_parquet(out)
    assert list(sel.columns) == ["object_id", "alert_id", "passed", "reason"]
    assert sel["passed"].any() and (~sel["passed"]).any()
    assert sel.loc[~sel["passed"], "reason"].str.len().gt(0).all()
    assert "passed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("raw", "read"),
    [
        ("Supernova", "SN"),
        ("(SIMBAD) Supernova", "SN"),
        ("SuperNova_Candidate", "SN*_Candidate"),
        ("", "Unknown"),
        (None, "Unknown"),
        ("(TNS) SN Ia", "SN"),
        ("RRLyr", "RRLyr"),
    ],
)
def test_simbad_long_names_read_as_fink_short_names(raw, read):
    from earlyia.select import simbad_type

    assert simbad_type(raw) == read
    assert (read in EXTRAGALACTIC_TYPES) == (read != "RRLyr")
