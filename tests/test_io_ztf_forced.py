"""ZTF forced photometry (fp_hists of schema 4.x, and forced records inside prv_candidates) is
read as measurements."""

from __future__ import annotations

import copy

import fastavro
import numpy as np
import pyarrow as pa
import pytest

from conftest import shared
from earlyia.io import read
from earlyia.io.ztf import lightcurves_from_alert_records, lightcurves_from_alert_table

FP = "external_alert_samples/ztf_avro_history/v3.5fp__forcedphot_test_1660293514215020000.avro"
FPVAR = "external_alert_samples/ztf_avro_history/v3.5fpvar__1661382530015060001.avro"


def _record(name):
    with open(shared(name), "rb") as fh:
        rec = next(iter(fastavro.reader(fh)))
    for k in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
        rec.pop(k, None)
    return rec


@pytest.mark.parametrize("name, n_forced", [(FP, 18), (FPVAR, 23)])
def test_forced_points_are_measurements_not_limits(name, n_forced):
    rec = _record(name)
    lc = read([shared(name)])
    assert lc.n_objects == 1 and lc.n_points == n_forced + 1 and not lc.problems
    assert (
        np.isfinite(lc.flux).all() and np.isfinite(lc.flux_err).all()
    )  # no upper limit among them
    # each forced point is forcediffimflux scaled from its zero point to FLUXCAL's 27.5, sign kept
    fp = sorted(rec["prv_candidates"], key=lambda p: p["jd"])
    expected = {
        round(p["jd"] - 2400000.5, 6): (
            p["forcediffimflux"] * 10 ** (0.4 * (27.5 - p["magzpsci"])),
            p["forcediffimfluxunc"] * 10 ** (0.4 * (27.5 - p["magzpsci"])),
        )
        for p in fp
    }
    got = {
        round(t, 6): (f, e)
        for t, f, e in zip(lc.mjd, lc.flux, lc.flux_err, strict=True)
        if round(t, 6) in expected
    }
    assert len(got) == n_forced
    for t, (f, e) in expected.items():
        assert got[t][0] == pytest.approx(f, rel=1e-6) and got[t][1] == pytest.approx(e, rel=1e-6)
        i = int(np.argmin(np.abs(lc.mjd - t)))
        assert lc.detected[i] == (abs(f) >= 5 * e)


def test_fp_hists_of_schema_4_read_like_forced_history_in_avro_records_and_parquet():
    rec = _record(FP)
    as4 = copy.deepcopy(rec)
    as4["fp_hists"], as4["prv_candidates"] = as4.pop("prv_candidates"), None
    a = lightcurves_from_alert_records([rec])
    b = lightcurves_from_alert_records([as4])
    c = lightcurves_from_alert_table(pa.Table.from_pylist([as4]))
    for other in (b, c):
        np.testing.assert_allclose(other.flux, a.flux)
        np.testing.assert_array_equal(other.detected, a.detected)


def test_unusable_forced_points_are_left_out_and_reported():
    rec = _record(FP)
    rec["prv_candidates"][0]["procstatus"] = "56"
    rec["prv_candidates"][1]["forcediffimflux"] = -99999.0
    lc = lightcurves_from_alert_records([rec], source="x.avro")
    assert lc.n_points == 17 and len(lc.problems) == 1
    p = lc.problems[0]
    assert (
        p.object_id == rec["objectId"]
        and "2 forced-photometry point(s)" in p.reason
        and "procstatus" in p.reason
    )
