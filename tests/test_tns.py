"""TNS bulk report: the JSON, sending to a local TNS-like server, and the `earlyia candidates` command."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from earlyia.cli.main import main
from earlyia.errors import ConfigError, RemoteError
from earlyia.report.candidates import ReportedRecord
from earlyia.report.tns import (
    TNSConfig,
    TNSCredentials,
    build_bulk_report,
    bulk_report_url,
    human_table,
    markdown_table,
    mjd_to_tns_datetime,
    send_bulk_report,
)

API_KEY = "s3cr3t-key-0123456789"
CREDS = TNSCredentials("12345", "earlyia_bot", API_KEY)
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
                "first_det_band": "r",
                "last_nondet_mjd": 59396.0 + i if i == 0 else np.nan,
                "last_nondet_limit_mag": 20.5 if i == 0 else np.nan,
                "last_nondet_band": "g" if i == 0 else "",
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


def test_bulk_report_fields_come_from_the_first_detection_and_last_nondetection():
    cand = _candidates(2)
    bulk = build_bulk_report(cand, CONFIG, model_id="abc123")
    rep = json.loads(json.dumps(bulk.report))  # plain JSON
    assert list(rep["at_report"]) == ["0", "1"] and bulk.object_ids == list(cand["object_id"])
    r0 = rep["at_report"]["0"]
    assert r0["internal_name"] == "ZTF21abc0000"
    assert float(r0["ra"]["value"]) == pytest.approx(150.123456) and r0["ra"]["units"] == "arcsec"
    assert r0["reporting_group_id"] == "66" and r0["discovery_data_source_id"] == "48"
    assert r0["discovery_datetime"] == mjd_to_tns_datetime(59398.25)
    phot = r0["photometry"]["photometry_group"]["0"]
    assert phot["obsdate"] == r0["discovery_datetime"] and phot["flux"] == "19.234" and phot["filter_value"] == "111"
    assert phot["instrument_value"] == "196" and phot["flux_units"] == "1"
    nd = r0["non_detection"]
    assert nd["obsdate"] == mjd_to_tns_datetime(59396.0) and nd["limiting_flux"] == "20.500" and nd["filter_value"] == "110"
    assert "0.910" in r0["remarks"] and "abc123" in r0["remarks"] and "snn_snia_vs_nonia 0.800" in r0["remarks"]
    # no non-detection known: archival statement instead of made-up numbers
    r1 = rep["at_report"]["1"]
    assert r1["non_detection"]["archiveid"] == "0" and "limiting_flux" not in r1["non_detection"]


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
    assert t.loc[0, "score"] == "0.910" and t.loc[0, "discovery (UTC)"] == mjd_to_tns_datetime(59398.25)[:16]
    md = markdown_table(t)
    assert md.count("\n") == 4 and "ZTF21abc0001" in md


# ---------------------------------------------------------------------------------------------- local TNS server
class FakeTNS:
    """A TNS-like /api/bulk-report on 127.0.0.1 that checks each request and answers from a script."""

    def __init__(self, script: list[int]):
        self.script = list(script)
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                msg = BytesParser(policy=HTTP).parsebytes(
                    f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
                )
                fields = {part.get_param("name", header="content-disposition"): part.get_content() for part in msg.iter_parts()}
                fake.requests.append({"path": self.path, "ua": self.headers["User-Agent"], "fields": fields})
                status = fake.script.pop(0) if fake.script else 200
                marker = {"tns_id": 12345, "type": "bot", "name": "earlyia_bot"}
                ok = (
                    self.path == "/api/bulk-report"
                    and fields.get("api_key") == API_KEY
                    and self.headers["User-Agent"].startswith("tns_marker{")
                    and json.loads(self.headers["User-Agent"][len("tns_marker"):]) == marker
                    and "at_report" in json.loads(fields.get("data", "{}"))
                )
                if not ok:
                    status = 401
                reply = {200: {"id_code": 200, "id_message": "OK", "data": {"report_id": 777}},
                         400: {"id_code": 400, "id_message": "Bad request", "data": {"ra": "missing"}},
                         401: {"id_code": 401, "id_message": "Unauthorized"},
                         429: {"id_code": 429, "id_message": "Too many requests"}}
                reply = reply.get(status, {"id_code": status, "id_message": "server error"})
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("x-rate-limit-reset", "3")
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_send_success_after_rate_limit_and_server_error(caplog):
    report = build_bulk_report(_candidates(2), CONFIG).report
    waits: list[float] = []
    with caplog.at_level(logging.DEBUG), FakeTNS([429, 503, 200]) as tns:
        res = send_bulk_report(report, tns.url, CREDS, sleep=waits.append, backoff=0.5)
    assert res.report_id == "777" and res.attempts == 3
    assert waits == [3.0, 1.0]  # the server's reset hint, then exponential backoff
    assert json.loads(tns.requests[-1]["fields"]["data"]) == report
    assert API_KEY not in caplog.text and API_KEY not in repr(CREDS)


def test_send_rejection_is_a_clear_permanent_error():
    report = build_bulk_report(_candidates(1), CONFIG).report
    with FakeTNS([400]) as tns, pytest.raises(RemoteError) as err:
        send_bulk_report(report, tns.url, CREDS, sleep=lambda s: None)
    assert err.value.status == 400 and err.value.permanent and "Bad request" in str(err.value)
    assert API_KEY not in str(err.value) and len(tns.requests) == 1
    with FakeTNS([500] * 5) as tns, pytest.raises(RemoteError) as err:
        send_bulk_report(report, tns.url, CREDS, sleep=lambda s: None, max_attempts=3)
    assert not err.value.permanent and len(tns.requests) == 3
    bad = TNSCredentials("12345", "earlyia_bot", "wrong-key")
    with FakeTNS([]) as tns, pytest.raises(RemoteError) as err:
        send_bulk_report(report, tns.url, bad, sleep=lambda s: None)
    assert err.value.status == 401


def test_url_and_credentials_from_environment():
    assert bulk_report_url("https://sandbox.wis-tns.org") == "https://sandbox.wis-tns.org/api/bulk-report"
    assert bulk_report_url("http://h/api/") == "http://h/api/bulk-report"
    assert bulk_report_url("http://h/api/bulk-report") == "http://h/api/bulk-report"
    with pytest.raises(ConfigError, match="EARLYIA_TNS_API_KEY"):
        TNSCredentials.from_env({"EARLYIA_TNS_BOT_ID": "1", "EARLYIA_TNS_BOT_NAME": "b"})


# ---------------------------------------------------------------------------------------------- CLI
def _scores_file(tmp_path, n_obj=3):
    rows = []
    for i in range(n_obj):
        c = _candidates(1).iloc[0].to_dict()
        c.update(object_id=f"ZTF22obj{i}", alert_id=f"9{i}", passed=True, reason="", ndethist=5.0, drb=0.99, classtar=0.9)
        rows.append(c)
    path = tmp_path / "scores.parquet"
    pd.DataFrame(rows).drop(columns=["snn_used"]).to_parquet(path)
    return path


def test_cli_writes_reports_sends_and_records_only_after_success(tmp_path, monkeypatch, capsys):
    scores = _scores_file(tmp_path)
    rec = tmp_path / "reported.sqlite"
    monkeypatch.setenv("EARLYIA_TNS_BOT_ID", "12345")
    monkeypatch.setenv("EARLYIA_TNS_BOT_NAME", "earlyia_bot")
    monkeypatch.setenv("EARLYIA_TNS_API_KEY", API_KEY)
    base = ["candidates", str(scores), "--record", str(rec), "--reporting-group-id", "66", "--reporter", "T. Ester"]
    # rejected: nothing recorded, exit code 2, summary says why
    with FakeTNS([400]) as tns:
        assert main([*base, "--out", str(tmp_path / "o1"), "--send", "--tns-url", tns.url]) == 2
    assert ReportedRecord(rec).reported() == set()
    assert "Bad request" in json.loads((tmp_path / "o1" / "summary.json").read_text())["send_error"]
    # accepted: recorded
    with FakeTNS([200]) as tns:
        assert main([*base, "--out", str(tmp_path / "o2"), "--send", "--tns-url", tns.url]) == 0
    assert ReportedRecord(rec).reported() == {"ZTF22obj0", "ZTF22obj1", "ZTF22obj2"}
    out2 = tmp_path / "o2"
    assert len(pd.read_csv(out2 / "candidates.csv")) == 3 and "ZTF22obj1" in (out2 / "candidates.md").read_text()
    assert len(json.loads((out2 / "tns_report.json").read_text())["at_report"]) == 3
    # a second run reports nothing new
    assert main([*base, "--out", str(tmp_path / "o3")]) == 0
    summary = json.loads((tmp_path / "o3" / "summary.json").read_text())
    assert summary["n_candidates"] == 0 and len(summary["excluded_already_reported"]) == 3
    assert API_KEY not in capsys.readouterr().out


def test_cli_sends_in_batches_and_records_each_accepted_batch(tmp_path, monkeypatch):
    scores = _scores_file(tmp_path, n_obj=5)
    rec = tmp_path / "reported.sqlite"
    for k, v in (("EARLYIA_TNS_BOT_ID", "12345"), ("EARLYIA_TNS_BOT_NAME", "earlyia_bot"), ("EARLYIA_TNS_API_KEY", API_KEY)):
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("EARLYIA_TNS_REPORTING_GROUP_ID", "66")
    monkeypatch.setenv("EARLYIA_TNS_REPORTER", "T. Ester")
    args = ["candidates", str(scores), "--record", str(rec), "--send", "--batch-size", "2", "--out", str(tmp_path / "o")]
    with FakeTNS([200, 400]) as tns:  # first batch accepted, second rejected, third never sent
        assert main([*args, "--tns-url", tns.url]) == 2
    assert len(tns.requests) == 2 and all(len(json.loads(r["fields"]["data"])["at_report"]) == 2 for r in tns.requests)
    first_two = [json.loads(tns.requests[0]["fields"]["data"])["at_report"][k]["internal_name"] for k in ("0", "1")]
    assert ReportedRecord(rec).reported() == set(first_two)
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["sent_objects"] == first_two and "Bad request" in summary["send_error"]
    with FakeTNS([200, 200]) as tns:  # the rest goes on the next run
        assert main([*args, "--tns-url", tns.url]) == 0
    assert len(ReportedRecord(rec).reported()) == 5 and len(tns.requests) == 2


def test_cli_calibration_thresholds_the_calibrated_probability(tmp_path):
    from earlyia.report.calibration import ScoreCalibrator

    scores = _scores_file(tmp_path)  # every alert scores 0.91
    cal = tmp_path / "cal.json"
    ScoreCalibrator.from_dict({"format": "earlyia.calibration/1", "method": "isotonic", "x": [0.0, 1.0], "y": [0.0, 0.4]}).save(cal)
    base = ["candidates", str(scores), "--record", str(tmp_path / "r.sqlite")]
    assert main([*base, "--out", str(tmp_path / "raw")]) == 0
    assert main([*base, "--out", str(tmp_path / "cal"), "--calibration", str(cal)]) == 0
    assert len(pd.read_csv(tmp_path / "raw" / "candidates.csv")) == 3
    assert json.loads((tmp_path / "cal" / "summary.json").read_text())["n_candidates"] == 0
    low = main([*base, "--out", str(tmp_path / "cal2"), "--calibration", str(cal), "--min-score", "0.3"])
    got = pd.read_csv(tmp_path / "cal2" / "candidates.csv")
    assert low == 0 and np.allclose(got["score"], 0.91 * 0.4) and np.allclose(got["score_raw"], 0.91)
