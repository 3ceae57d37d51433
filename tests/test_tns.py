"""TNS bulk report: the JSON (what Fink's fink-tns sends), human tables, and reading the TNS's
replies.

Sending against a local TNS-like server lives in ``test_tns_send.py``.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlyia.errors import ConfigError
from earlyia.report.candidates import CandidateRule, select_candidates
from earlyia.report.tns import (
    TNSConfig,
    TNSCredentials,
    build_bulk_report,
    bulk_report_reply_url,
    bulk_report_url,
    human_table,
    markdown_table,
    mjd_to_tns_datetime,
    redact_url,
)
from earlyia.report.tns_api import parse_bulk_report_reply, retry_after_seconds

CONFIG = TNSConfig(reporting_group_id="66", reporter="T. Ester on behalf of earlyia")


def _candidates(n: int = 2) -> pd.DataFrame:
    rows = []
    for i in range(n):
        rows.append(
            {
                "object_id": f"ZTF21abc{i:04d}",
                "alert_id": f"1600{i}",
                "mjd": 59400.5 + i,
                "score": 0.91 - 0.1 * i,
                "snn_snia_vs_nonia": 0.8,
                "snn_sn_vs_all": np.nan,
                "snn_used": True,
                "ra": 150.123456 + i,
                "dec": -12.5 + i,
                "n_detections": 4,
                "first_det_mjd": 59398.25 + i,
                "first_det_mag": 19.2344,
                "first_det_mag_err": 0.0512,
                "first_det_limit_mag": 20.31,
                "first_det_band": "r",
                "last_nondet_mjd": 59396.0 + i if i == 0 else np.nan,
                "last_nondet_limit_mag": 20.5 if i == 0 else np.nan,
                "last_nondet_band": "r" if i == 0 else "",
                "cdsxmatch": "Unknown",
            }
        )
    return pd.DataFrame(rows)


def test_mjd_to_datetime_against_known_dates():
    assert mjd_to_tns_datetime(51544.5) == "2000-01-01 12:00:00.000"
    assert mjd_to_tns_datetime(59000.0) == "2020-05-31 00:00:00.000"
    x = 59123.123456
    expect = datetime(1858, 11, 17, tzinfo=UTC) + timedelta(days=x)
    assert mjd_to_tns_datetime(x)[:19] == expect.strftime("%Y-%m-%d %H:%M:%S")


def test_bulk_report_carries_what_fink_sends():
    """fink-tns: first detection with magpsf, sigmapsf and diffmaglim; the last non-detection
    before it IN THE SAME FILTER; remarks that link to the object's page in the broker portal."""
    cand = _candidates(3)
    # object 2: its last non-detection is in g, the first detection in r: not the one to report
    cand.loc[2, ["last_nondet_mjd", "last_nondet_limit_mag", "last_nondet_band"]] = [
        59397.0,
        20.7,
        "g",
    ]
    bulk = build_bulk_report(cand, CONFIG, model_id="abc123")
    rep = json.loads(json.dumps(bulk.report))  # plain JSON
    assert list(rep["at_report"]) == ["0", "1", "2"] and bulk.object_ids == list(cand["object_id"])
    r0 = rep["at_report"]["0"]
    assert r0["internal_name"] == "ZTF21abc0000"
    assert float(r0["ra"]["value"]) == pytest.approx(150.123456) and r0["ra"]["units"] == "arcsec"
    assert r0["ra"]["error"] == "0.50"  # one position known: the configured error
    assert r0["reporting_group_id"] == "66" and r0["discovery_data_source_id"] == "48"
    assert r0["discovery_datetime"] == mjd_to_tns_datetime(59398.25)
    phot = r0["photometry"]["photometry_group"]["0"]
    assert (
        phot["obsdate"] == r0["discovery_datetime"]
        and phot["flux"] == "19.234"
        and phot["filter_value"] == "111"
    )
    assert phot["flux_error"] == "0.051" and phot["limiting_flux"] == "20.310"
    assert phot["instrument_value"] == "196" and phot["flux_units"] == "1"
    nd = r0["non_detection"]
    assert (
        nd["obsdate"] == mjd_to_tns_datetime(59396.0)
        and nd["limiting_flux"] == "20.500"
        and nd["filter_value"] == "111"
    )
    assert (
        "0.910" in r0["remarks"]
        and "abc123" in r0["remarks"]
        and "snn_snia_vs_nonia 0.800" in r0["remarks"]
    )
    assert r0["remarks"].endswith("Object data at https://fink-portal.org/ZTF21abc0000")
    # no non-detection known, or only in another filter: archival statement instead of made-up
    # numbers
    for k in ("1", "2"):
        assert (
            rep["at_report"][k]["non_detection"]["archiveid"] == "0"
            and "limiting_flux" not in rep["at_report"][k]["non_detection"]
        )
    # unknown error / limit: empty, never invented
    unknown = build_bulk_report(
        cand.assign(first_det_mag_err=np.nan, first_det_limit_mag=np.nan), CONFIG
    ).report
    assert unknown["at_report"]["0"]["photometry"]["photometry_group"]["0"]["limiting_flux"] == ""
    # the portal is configurable, or off
    other = TNSConfig(
        reporting_group_id="66", reporter="x", portal_url="https://portal.example/objects/"
    )
    assert (
        build_bulk_report(cand, other)
        .report["at_report"]["0"]["remarks"]
        .endswith("Object data at https://portal.example/objects/ZTF21abc0000")
    )
    off = TNSConfig(reporting_group_id="66", reporter="x", portal_url="")
    assert "Object data" not in build_bulk_report(cand, off).report["at_report"]["0"]["remarks"]


def _vector_mean(ra: list[float], dec: list[float]) -> tuple[float, float]:
    """Mean direction on the sphere (an independent reference for the mean position)."""
    r, d = np.radians(ra), np.radians(dec)
    v = np.array([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)]).mean(axis=1)
    return math.degrees(math.atan2(v[1], v[0])) % 360.0, math.degrees(
        math.atan2(v[2], math.hypot(v[0], v[1]))
    )


def test_report_position_is_the_mean_of_the_detections_with_their_scatter():
    """Fink reports the mean RA/Dec of the detections and their scatter; across RA = 0 the mean
    must stay near 0."""
    good = {
        "passed": True,
        "score": 0.9,
        "ndethist": 3.0,
        "drb": 0.9,
        "classtar": 0.9,
        "cdsxmatch": "SN",
        "first_det_mjd": 1.0,
        "first_det_mag": 19.0,
        "first_det_band": "g",
        "n_detections": 3,
    }
    ra = [359.99990, 0.00005, 0.00020, 359.99995]
    dec = [10.0000, 10.0001, 9.99995, 10.00002]
    rows = [
        {**good, "object_id": "X", "alert_id": "x1", "mjd": 1.0, "ra": ra[0], "dec": dec[0]},
        {
            **good,
            "object_id": "X",
            "alert_id": "x2",
            "mjd": 2.0,
            "ra": ra[1],
            "dec": dec[1],
            "drb": 0.1,
        },  # fails, still a detection
        {**good, "object_id": "X", "alert_id": "x3", "mjd": 3.0, "ra": ra[2], "dec": dec[2]},
        {
            **good,
            "object_id": "X",
            "alert_id": "x4",
            "mjd": 3.5,
            "ra": ra[3],
            "dec": dec[3],
            "drb": 0.1,
        },  # the reported alert's? no: later
        {
            **good,
            "object_id": "X",
            "alert_id": "x5",
            "mjd": 9.0,
            "ra": 180.0,
            "dec": -40.0,
            "drb": 0.1,
        },  # after the reported alert
        {
            **good,
            "object_id": "Y",
            "alert_id": "y1",
            "mjd": 2.0,
            "ra": 33.0,
            "dec": 4.0,
        },  # a single position
    ]
    rule = CandidateRule(min_snn=None, xmatch=())
    cand = select_candidates(
        pd.DataFrame(rows).sample(frac=1, random_state=2), rule
    ).candidates.set_index("object_id")
    x = cand.loc["X"]
    assert (
        x["alert_id"] == "x3" and x["ra"] == ra[2]
    )  # every other field still comes from the reported alert
    want_ra, want_dec = _vector_mean(ra[:3], dec[:3])
    assert abs(((x["ra_mean"] - want_ra + 180) % 360) - 180) < 1e-9 and x[
        "dec_mean"
    ] == pytest.approx(want_dec, abs=1e-9)
    # scatter on the sky, population standard deviation (as Fink's np.std), arcsec
    dra = [
        ((r - want_ra + 180) % 360 - 180) * math.cos(math.radians(want_dec)) * 3600 for r in ra[:3]
    ]
    ddec = [(d - want_dec) * 3600 for d in dec[:3]]
    assert x["ra_err_arcsec"] == pytest.approx(np.std(dra), rel=1e-6) and x[
        "dec_err_arcsec"
    ] == pytest.approx(np.std(ddec), rel=1e-6)
    assert x["n_positions"] == 3
    rep = build_bulk_report(cand.reset_index(), CONFIG).report["at_report"]
    got = {e["internal_name"]: e for e in rep.values()}
    assert (
        got["X"]["ra"]["value"] == f"{x['ra_mean']:.6f}"
        and got["X"]["ra"]["error"] == f"{x['ra_err_arcsec']:.2f}"
    )
    assert got["X"]["dec"]["error"] == f"{x['dec_err_arcsec']:.2f}"
    assert (
        got["Y"]["ra"]["value"] == "33.000000" and got["Y"]["ra"]["error"] == "0.50"
    )  # one position: the configured error


def test_unreportable_candidate_is_left_out_not_fatal():
    cand = _candidates(3)
    cand.loc[1, "first_det_band"] = "fid=9"
    bulk = build_bulk_report(cand, CONFIG)
    assert bulk.object_ids == [cand.loc[0, "object_id"], cand.loc[2, "object_id"]]
    assert len(bulk.problems) == 1 and bulk.problems[0].object_id == cand.loc[1, "object_id"]
    with pytest.raises(ConfigError, match="reporting group"):
        build_bulk_report(cand, TNSConfig(reporting_group_id="", reporter="x"))
    draft = build_bulk_report(cand, TNSConfig(reporting_group_id="", reporter=""), validate=False)
    assert len(draft.object_ids) == 2


def test_human_tables():
    t = human_table(_candidates(2))
    assert (
        t.loc[0, "score"] == "0.910"
        and t.loc[0, "discovery (UTC)"] == mjd_to_tns_datetime(59398.25)[:16]
    )
    md = markdown_table(t)
    assert md.count("\n") == 4 and "ZTF21abc0001" in md


# ---------------------------------------------------------------------------------------------- the
# TNS's replies
def test_urls_credentials_and_redaction():
    assert (
        bulk_report_url("https://sandbox.wis-tns.org")
        == "https://sandbox.wis-tns.org/api/bulk-report"
    )
    assert bulk_report_url("http://h/api/") == "http://h/api/bulk-report"
    assert bulk_report_url("http://h/api/bulk-report") == "http://h/api/bulk-report"
    assert bulk_report_reply_url("http://h/api/bulk-report") == "http://h/api/bulk-report-reply"
    assert bulk_report_reply_url("http://h") == "http://h/api/bulk-report-reply"
    assert (
        redact_url("https://bot:s3cret@tns.example:8443/api?x=1")
        == "https://***@tns.example:8443/api?x=1"
    )
    assert redact_url("https://tns.example/api") == "https://tns.example/api"
    with pytest.raises(ConfigError, match="EARLYIA_TNS_API_KEY"):
        TNSCredentials.from_env({"EARLYIA_TNS_BOT_ID": "1", "EARLYIA_TNS_BOT_NAME": "b"})
    assert "k3y" not in repr(TNSCredentials("1", "b", "k3y"))


def test_retry_after_numeric_http_date_and_garbage():
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds({"Retry-After": "3"}, now) == 3.0
    assert retry_after_seconds({"retry-after": " 0.5 "}, now) == 0.5
    assert (
        retry_after_seconds(
            {"Retry-After": format_datetime(now + timedelta(seconds=7), usegmt=True)}, now
        )
        == 7.0
    )
    assert (
        retry_after_seconds(
            {"Retry-After": format_datetime(now - timedelta(seconds=7), usegmt=True)}, now
        )
        == 0.0
    )
    for garbage in (
        "nan",
        "NaN",
        "inf",
        "-3",
        "soon",
        "",
        "Mon, 99 Foo 2024 25:61:61 GMT",
        "1e999",
    ):
        assert retry_after_seconds({"Retry-After": garbage}, now) is None, garbage
    assert retry_after_seconds({"x-rate-limit-reset": "4"}, now) == 4.0  # the TNS's own header
    assert retry_after_seconds({"Retry-After": "nan", "x-rate-limit-reset": "2"}, now) == 2.0
    assert retry_after_seconds({}, now) is None


def _ready(entries) -> str:
    return json.dumps(
        {
            "id_code": 200,
            "id_message": "OK",
            "data": {"report_id": 9, "feedback": {"at_report": entries}},
        }
    )


ACCEPT = {
    "100": {
        "message": "Report added successfully",
        "message_id": 100,
        "objname": "2024abc",
        "new_object": 1,
    }
}
EXISTING = {
    "101": {"message": "The object already exists", "message_id": 101, "objname": "2023xyz"}
}
REJECT = {"discovery_datetime": {"message_id": 52, "message": "Discovery date is in the future"}}


@pytest.mark.parametrize(
    "status, body, n, outcome, states",
    [
        (
            200,
            _ready([ACCEPT, REJECT, EXISTING]),
            3,
            "ready",
            [("accepted", "2024abc"), ("rejected", None), ("accepted", "2023xyz")],
        ),
        (
            200,
            _ready({"1": ACCEPT, "0": REJECT}),
            2,
            "ready",
            [("rejected", None), ("accepted", "2024abc")],
        ),  # keyed by entry
        (
            200,
            _ready([ACCEPT]),
            2,
            "ready",
            [("accepted", "2024abc"), ("unknown", None)],
        ),  # no word on entry 1
        (
            200,
            _ready([ACCEPT, "???", {}]),
            3,
            "ready",
            [("accepted", "2024abc"), ("unknown", None), ("unknown", None)],
        ),
        (
            404,
            json.dumps({"id_code": 404, "id_message": "Report not processed yet"}),
            1,
            "processing",
            [],
        ),
        (
            200,
            json.dumps({"id_code": 200, "id_message": "The report is still being processed"}),
            1,
            "processing",
            [],
        ),
        (
            400,
            json.dumps({"id_code": 400, "id_message": "Bad request", "data": {}}),
            2,
            "ready",
            [("rejected", None)] * 2,
        ),
        (200, json.dumps([1, 2, 3]), 1, "unknown", []),
        (200, "<html>Service</html>", 1, "unknown", []),
        (200, json.dumps({"id_code": 200, "data": {"report_id": 9}}), 1, "unknown", []),
        (200, json.dumps({"id_code": "weird"}), 1, "unknown", []),
        (503, "busy", 1, "unavailable", []),
        (429, json.dumps({"id_code": 429}), 1, "unavailable", []),
    ],
)
def test_bulk_report_reply_shapes(status, body, n, outcome, states):
    res = parse_bulk_report_reply(status, body, n)
    assert res.outcome == outcome
    got = [(res.entries[i].state, res.entries[i].tns_name) for i in range(len(states))]
    assert got == states
    if states and states[0][0] == "rejected" and status == 200:
        assert "future" in res.entries[0].message or "future" in res.entries[1].message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda c: (
        st.lists(c, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id_code",
                    "data",
                    "feedback",
                    "at_report",
                    "objname",
                    "message",
                    "0",
                    "1",
                    "100",
                    "x",
                ]
            ),
            c,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(body=JSON, status=st.sampled_from([200, 400, 404, 429, 500]), n=st.integers(0, 4))
def test_any_reply_is_read_without_an_exception(body, status, n):
    res = parse_bulk_report_reply(status, json.dumps(body), n)
    assert res.outcome in ("ready", "processing", "unavailable", "unknown")
    if res.outcome == "ready":
        assert sorted(res.entries) == list(range(n))
        for e in res.entries.values():
            assert e.state in ("accepted", "rejected", "unknown") and (
                e.state != "accepted" or e.tns_name
            )
