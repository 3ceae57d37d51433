"""Sending to the TNS exactly once: `earlyia candidates --send` against a local TNS-like server.

The server (a real ``http.server`` on 127.0.0.1, in a thread) checks the API key and the bot's
User-Agent, and answers each request from a script: accept, reject per object, a reply that is not
ready for N polls, a connection dropped after the request, a hang longer than the client's timeout,
429/503 with Retry-After (seconds, an HTTP date, garbage), bytes that are not HTTP, a JSON list.
Whatever happens: no object reaches the TNS twice, none is lost (each ends accepted, rejected,
unknown, awaiting an answer, or free to be sent again), the record says which, and the command
exits 0 or 2 with one clear line.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from earlyia.cli.main import main
from earlyia.report.record import ReportedRecord
from earlyia.report.tns import TNSCredentials
from earlyia.report.tns_api import post_bulk_report

API_KEY = "s3cr3t-key-0123456789"
CREDS = TNSCredentials("12345", "earlyia_bot", API_KEY)
MARKER = {"tns_id": 12345, "type": "bot", "name": "earlyia_bot"}
SRC = str(Path(__file__).resolve().parents[1] / "src")
#: Answers after which the TNS cannot have stored the report (a refusal): any other answer may
#: follow processing.
REFUSALS = {429, 503, 400, 401}


class FakeTNS:
    """A TNS-like /api/bulk-report and /api/bulk-report-reply on 127.0.0.1, scripted per request.

    ``post`` / ``reply``: actions for successive requests to each endpoint (then "accept" /
    "ready"): ``"accept"``, ``"drop"`` (read the request, close without a reply), ``"hang"`` (read
    it, wait ``hang`` s), ``"raw"`` (answer bytes that are not HTTP), ``"not_ready"`` (reply: 404
    not processed yet), ``"ready"``, or ``("http", status, headers, body)``. ``reject``: object id
    -> message, per-entry rejections in the reply.
    """

    def __init__(self, post=(), reply=(), reject=None, hang=3.0, delay=0.0):
        self.post_script, self.reply_script = list(post), list(reply)
        self.reject = dict(reject or {})
        self.hang, self.delay = hang, delay
        self.posts: list[dict] = []  # every bulk report read in full: {"names", "action", "status"}
        self.reports: dict[str, list[str]] = {}  # report id -> internal names (reports given an id)
        self.names: dict[str, str] = {}  # internal name -> TNS name (accepted)
        self.reply_asks = 0
        self.auth: list[str | None] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output quiet
                pass

            def _fields(self) -> dict:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                msg = BytesParser(policy=HTTP).parsebytes(
                    f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
                )
                return {
                    part.get_param("name", header="content-disposition"): part.get_content()
                    for part in msg.iter_parts()
                }

            def _send(self, status: int, body, headers=None):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _act(self, action) -> bool:
                """The transport-level actions; True when handled."""
                if action == "drop":
                    self.close_connection = True
                    return True
                if action == "hang":
                    time.sleep(fake.hang)
                    self.close_connection = True
                    return True
                if action == "raw":
                    self.wfile.write(b"SSH-2.0-OpenSSH_9.6 not http\r\n\r\n\x00\x01")
                    self.close_connection = True
                    return True
                if isinstance(action, tuple) and action[0] == "http":
                    self._send(action[1], action[3], action[2])
                    return True
                return False

            def do_POST(self):
                fields = self._fields()
                fake.auth.append(self.headers.get("Authorization"))
                ok = (
                    fields.get("api_key") == API_KEY
                    and self.headers["User-Agent"].startswith("tns_marker{")
                    and json.loads(self.headers["User-Agent"][len("tns_marker") :]) == MARKER
                )
                if self.path == "/api/bulk-report":
                    self._report(fields, ok)
                elif self.path == "/api/bulk-report-reply":
                    self._reply(fields, ok)
                else:
                    self._send(404, {"id_code": 404, "id_message": "no such endpoint"})

            def _report(self, fields, ok):
                report = json.loads(fields.get("data", "{}"))
                names = [e["internal_name"] for e in report.get("at_report", {}).values()]
                with fake.lock:
                    action = fake.post_script.pop(0) if fake.post_script else "accept"
                    if not ok:
                        action = ("http", 401, {}, {"id_code": 401, "id_message": "Unauthorized"})
                    status = action[1] if isinstance(action, tuple) else None
                    fake.posts.append(
                        {
                            "names": names,
                            "action": action if isinstance(action, str) else "http",
                            "status": status,
                            "remarks": [e["remarks"] for e in report.get("at_report", {}).values()],
                            "rejected": [n for n in names if n in fake.reject],
                        }
                    )
                    rid = None
                    if action == "accept":
                        rid = str(1000 + len(fake.reports))
                        fake.reports[rid] = names
                if fake.delay:
                    time.sleep(fake.delay)
                if rid is not None:
                    self._send(
                        200, {"id_code": 200, "id_message": "OK", "data": {"report_id": int(rid)}}
                    )
                elif not self._act(action):
                    raise AssertionError(f"unknown action {action!r}")

            def _reply(self, fields, ok):
                with fake.lock:
                    fake.reply_asks += 1
                    action = fake.reply_script.pop(0) if fake.reply_script else "ready"
                rid = str(fields.get("report_id"))
                if not ok or rid not in fake.reports:
                    self._send(404, {"id_code": 404, "id_message": "Report not found"})
                elif action == "not_ready":
                    self._send(404, {"id_code": 404, "id_message": "Report not processed yet"})
                elif action == "ready":
                    feedback = []
                    with fake.lock:
                        for name in fake.reports[rid]:
                            if name in fake.reject:
                                feedback.append(
                                    {
                                        "discovery_datetime": {
                                            "message_id": 52,
                                            "message": fake.reject[name],
                                        }
                                    }
                                )
                            else:
                                tns = fake.names.setdefault(name, f"2024a{len(fake.names):03d}")
                                feedback.append(
                                    {
                                        "100": {
                                            "message": "Report added successfully",
                                            "message_id": 100,
                                            "objname": tns,
                                        }
                                    }
                                )
                    data = {"report_id": int(rid), "feedback": {"at_report": feedback}}
                    self._send(200, {"id_code": 200, "id_message": "OK", "data": data})
                elif not self._act(action):
                    raise AssertionError(f"unknown action {action!r}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def processed(self) -> dict[str, int]:
        """Per object, the bulk reports that the TNS may have stored it from (every request read,
        but refusals and the entries it rejected)."""
        counts: dict[str, int] = {}
        for p in self.posts:
            if p["status"] in REFUSALS:
                continue
            for n in set(p["names"]) - set(p["rejected"]):
                counts[n] = counts.get(n, 0) + 1
        return counts


@pytest.fixture
def tns():
    servers = []

    def start(**script) -> FakeTNS:
        s = FakeTNS(**script).__enter__()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.__exit__()


@pytest.fixture
def env(monkeypatch):
    for k, v in (
        ("EARLYIA_TNS_BOT_ID", "12345"),
        ("EARLYIA_TNS_BOT_NAME", "earlyia_bot"),
        ("EARLYIA_TNS_API_KEY", API_KEY),
    ):
        monkeypatch.setenv(k, v)


def _scores_file(tmp_path: Path, n_obj: int = 3) -> Path:
    rows = []
    for i in range(n_obj):
        rows.append(
            {
                "object_id": f"ZTF22obj{i}",
                "alert_id": f"9{i}",
                "mjd": 59400.5,
                "score": 0.91,
                "passed": True,
                "reason": "",
                "ra": 150.1 + i,
                "dec": -12.5,
                "ndethist": 5.0,
                "drb": 0.99,
                "classtar": 0.9,
                "cdsxmatch": "Unknown",
                "n_detections": 4,
                "first_det_mjd": 59398.25,
                "first_det_mag": 19.23,
                "first_det_mag_err": 0.05,
                "first_det_limit_mag": 20.3,
                "first_det_band": "r",
                "last_nondet_mjd": 59396.0,
                "last_nondet_limit_mag": 20.5,
                "last_nondet_band": "r",
            }
        )
    path = tmp_path / "scores.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return path


def _args(tmp_path, url, *extra, out="o", n_obj=3):
    scores = tmp_path / "scores.parquet"
    if not scores.exists():
        _scores_file(tmp_path, n_obj)
    return [
        "candidates",
        str(scores),
        "--record",
        str(tmp_path / "reported.sqlite"),
        "--reporting-group-id",
        "66",
        "--reporter",
        "T. Ester",
        "--min-score",
        "0.5",
        "--out",
        str(tmp_path / out),
        "--send",
        "--tns-url",
        url,
        "--retry-wait",
        "0.01",
        "--reply-wait",
        "0.01",
        "--reply-polls",
        "4",
        "--tns-timeout",
        "2",
        *extra,
    ]


def _run(capsys, args) -> tuple[int, str, str]:
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _states(tmp_path) -> dict[str, str]:
    return {k: v.state for k, v in ReportedRecord(tmp_path / "reported.sqlite").objects().items()}


def _one_clear_line(code: int, err: str) -> None:
    assert code in (0, 2)
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert (code == 0 and not lines) or (
        code == 2 and len(lines) == 1 and lines[0].startswith("earlyia candidates: error: ")
    ), err


OBJ = ["ZTF22obj0", "ZTF22obj1", "ZTF22obj2"]
RA_SOON = formatdate(
    time.time() + 1, usegmt=True
)  # an HTTP date (by the time it is read, just past: no wait)

#: scenario -> (server script, extra CLI args, exit code, states after the run)
SCENARIOS = {
    "accept": ({}, (), 0, dict.fromkeys(OBJ, "accepted")),
    "reject one object": (
        {"reject": {"ZTF22obj1": "Discovery date is in the future"}},
        (),
        2,
        {"ZTF22obj0": "accepted", "ZTF22obj1": "rejected", "ZTF22obj2": "accepted"},
    ),
    "reply ready after 2 polls": (
        {"reply": ["not_ready", "not_ready"]},
        (),
        0,
        dict.fromkeys(OBJ, "accepted"),
    ),
    "reply not ready within the polls": (
        {"reply": ["not_ready"] * 6},
        ("--reply-polls", "2"),
        0,
        dict.fromkeys(OBJ, "sent"),
    ),
    "connection dropped after the request": (
        {"post": ["drop"]},
        (),
        2,
        dict.fromkeys(OBJ, "unknown"),
    ),
    "hang longer than the timeout": (
        {"post": ["hang"], "hang": 3.0},
        ("--tns-timeout", "0.5"),
        2,
        dict.fromkeys(OBJ, "unknown"),
    ),
    "reply that is not HTTP": ({"post": ["raw"]}, (), 2, dict.fromkeys(OBJ, "unknown")),
    "JSON list body": (
        {"post": [("http", 200, {}, [1, 2, 3])]},
        (),
        2,
        dict.fromkeys(OBJ, "unknown"),
    ),
    "HTTP 500 after the request": (
        {"post": [("http", 500, {}, {"id_code": 500})]},
        (),
        2,
        dict.fromkeys(OBJ, "unknown"),
    ),
    "report refused (400)": (
        {"post": [("http", 400, {}, {"id_code": 400, "id_message": "Bad request"})]},
        (),
        2,
        dict.fromkeys(OBJ, "rejected"),
    ),
    "429 Retry-After seconds": (
        {"post": [("http", 429, {"Retry-After": "1"}, {"id_code": 429})]},
        (),
        0,
        dict.fromkeys(OBJ, "accepted"),
    ),
    "429 Retry-After HTTP date": (
        {"post": [("http", 429, {"Retry-After": RA_SOON}, {"id_code": 429})]},
        (),
        0,
        dict.fromkeys(OBJ, "accepted"),
    ),
    "429 Retry-After nan": (
        {"post": [("http", 429, {"Retry-After": "nan"}, {"id_code": 429})] * 2},
        (),
        0,
        dict.fromkeys(OBJ, "accepted"),
    ),
    "503 Retry-After": (
        {"post": [("http", 503, {"Retry-After": "0"}, b"busy")]},
        (),
        0,
        dict.fromkeys(OBJ, "accepted"),
    ),
    "429 until the attempts run out": (
        {"post": [("http", 429, {"Retry-After": "0"}, {"id_code": 429})] * 5},
        (),
        2,
        {},
    ),
    "reply is a JSON list": (
        {"reply": [("http", 200, {}, [1])]},
        (),
        2,
        dict.fromkeys(OBJ, "unknown"),
    ),
    "reply drops, then ready": ({"reply": ["drop", "raw"]}, (), 0, dict.fromkeys(OBJ, "accepted")),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_tns_behaviour_reports_each_object_at_most_once(name, tns, env, tmp_path, capsys):
    script, extra, want_code, want_states = SCENARIOS[name]
    server = tns(**script)
    code, out, err = _run(capsys, _args(tmp_path, server.url, *extra))
    _one_clear_line(code, err)
    assert code == want_code, (out, err)
    assert _states(tmp_path) == want_states
    assert all(n == 1 for n in server.processed().values()), server.posts
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    rec = ReportedRecord(tmp_path / "reported.sqlite").objects()
    for oid, state in want_states.items():
        if state == "accepted":  # only what the TNS accepted, with its TNS name
            assert (
                rec[oid].tns_name == server.names[oid]
                and summary["tns"]["accepted"][oid] == server.names[oid]
            )
        if state == "rejected":  # surfaced with the TNS's message
            assert summary["tns"]["rejected"][oid] and f"rejected by the TNS: {oid}: " in out
    if name == "reject one object":
        assert "Discovery date is in the future" in summary["tns"]["rejected"]["ZTF22obj1"]
        assert "rejected by the TNS: ZTF22obj1: Discovery date is in the future" in out
    if want_states and set(want_states.values()) == {"unknown"}:
        assert "check on the TNS" in out or "outcome unknown" in out
    # the same command again, the TNS now well: nothing reported twice, nothing lost
    server.post_script.clear()
    server.reply_script.clear()
    server.reject.clear()
    code2, out2, err2 = _run(capsys, _args(tmp_path, server.url, out="o2"))
    _one_clear_line(code2, err2)
    after = _states(tmp_path)
    assert all(n == 1 for n in server.processed().values()), server.posts
    for oid in OBJ:
        before = want_states.get(oid)
        if before == "unknown" and not rec[oid].report_id:
            assert (
                after[oid] == "unknown" and oid in out2
            )  # never re-sent blindly; listed for a person to check
        else:
            assert after[oid] == "accepted" and server.names.get(oid)
    # every report carries its key, the one recorded for its objects
    for p in server.posts:
        keys = {r.rsplit("(earlyia report ", 1)[1].rstrip(")") for r in p["remarks"]}
        assert len(keys) == 1


def test_unknown_outcome_is_checked_then_released_and_sent_again(tns, env, tmp_path, capsys):
    server = tns(post=["drop"])
    code, out, err = _run(capsys, _args(tmp_path, server.url))
    assert (
        code == 2
        and "with an unknown outcome" in err
        and "earlyia candidates --release-unknown" in out
    )
    # the next runs never re-send them, and say which objects to check
    code, out, err = _run(capsys, _args(tmp_path, server.url, out="o2"))
    assert code == 0 and len(server.posts) == 1 and "check on the TNS: 3 object(s)" in out
    summary = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert sorted(o["object_id"] for o in summary["tns"]["to_check_on_tns"]) == OBJ
    # a person checked the TNS: two are not there; releasing an object that is not unknown is
    # refused, nothing changes
    rec = str(tmp_path / "reported.sqlite")
    code, out, err = _run(
        capsys, ["candidates", "--release-unknown", "ZTF22obj0", "ZTF22nope", "--record", rec]
    )
    assert (
        code == 2
        and "ZTF22nope (not recorded)" in err
        and _states(tmp_path)["ZTF22obj0"] == "unknown"
    )
    code, out, err = _run(
        capsys, ["candidates", "--release-unknown", "ZTF22obj0", "ZTF22obj2", "--record", rec]
    )
    assert code == 0 and "released 2 object(s)" in out
    code, out, err = _run(capsys, _args(tmp_path, server.url, out="o3"))
    assert code == 0 and _states(tmp_path) == {
        "ZTF22obj0": "accepted",
        "ZTF22obj1": "unknown",
        "ZTF22obj2": "accepted",
    }
    assert [sorted(p["names"]) for p in server.posts] == [OBJ, ["ZTF22obj0", "ZTF22obj2"]]


def test_connection_refused_is_retried_then_nothing_is_recorded(env, tmp_path, capsys, tns):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    code, _out, err = _run(capsys, _args(tmp_path, f"http://127.0.0.1:{port}"))
    _one_clear_line(code, err)
    assert code == 2 and "3 object(s) not sent" in err and "gave up after 5 attempt(s)" in err
    assert _states(tmp_path) == {}  # certainly not sent: free to go next time
    server = tns()
    assert _run(capsys, _args(tmp_path, server.url, out="o2"))[0] == 0
    assert _states(tmp_path) == dict.fromkeys(
        OBJ, "accepted"
    ) and server.processed() == dict.fromkeys(OBJ, 1)


def test_reply_collected_by_the_next_run_and_batches_stop_at_an_unknown(tns, env, tmp_path, capsys):
    _scores_file(tmp_path, n_obj=5)
    server = tns(post=["accept", "drop"], reply=["not_ready"] * 3)
    code, out, err = _run(
        capsys, _args(tmp_path, server.url, "--batch-size", "2", "--reply-polls", "3")
    )
    assert (
        code == 2 and len(server.posts) == 2
    )  # the third batch is not attempted after an unknown outcome
    first, second = (sorted(p["names"]) for p in server.posts)
    states = _states(tmp_path)
    assert (
        {states[o] for o in first} == {"sent"}
        and {states[o] for o in second} == {"unknown"}
        and len(states) == 4
    )
    assert (
        "awaiting the TNS's answer: 2 object(s)" in out
        and "not attempted after that failure: 1 object(s)" in out
    )
    code, out, err = _run(capsys, _args(tmp_path, server.url, "--batch-size", "2", out="o2"))
    _one_clear_line(code, err)
    states = _states(tmp_path)
    assert (
        code == 0
        and all(states[o] == "accepted" for o in first)
        and all(states[o] == "unknown" for o in second)
    )
    assert all(n == 1 for n in server.processed().values()) and len(states) == 5
    assert sum(1 for s in states.values() if s == "accepted") == 3


def test_url_credentials_are_never_shown_or_stored(tns, env, tmp_path, capsys):
    server = tns(post=[("http", 400, {}, {"id_code": 400, "id_message": "Bad request"})])
    url = server.url.replace("http://", "http://botuser:hunter2pw@")
    code, out, err = _run(capsys, _args(tmp_path, url))
    assert code == 2 and "Bad request" in err
    summary_text = (tmp_path / "o" / "summary.json").read_text()
    record_bytes = (tmp_path / "reported.sqlite").read_bytes()
    for where in (out, err, summary_text, record_bytes.decode("latin-1")):
        assert "hunter2pw" not in where and API_KEY not in where
    assert json.loads(summary_text)["tns_url"] == server.url.replace("http://", "http://***@")
    assert server.auth[0] and server.auth[0].startswith(
        "Basic "
    )  # the credentials are used, as HTTP basic auth
    code, out, err = _run(capsys, _args(tmp_path, "ftp://u:hunter2pw@h/x", out="o2"))
    assert code == 2 and "hunter2pw" not in err and "***@h" in err


def test_library_post_retries_only_what_cannot_have_been_processed(tns):
    waits: list[float] = []
    report = {"at_report": {"0": {"internal_name": "A", "remarks": "r"}}}
    server = tns(
        post=[
            ("http", 429, {"Retry-After": "3"}, {}),
            ("http", 429, {"Retry-After": "nan"}, {}),
            ("http", 503, {"Retry-After": RA_SOON}, b""),
            "accept",
        ]
    )
    res = post_bulk_report(report, server.url, CREDS, sleep=waits.append, retry_wait=0.5)
    assert res.outcome == "received" and res.report_id == "1000" and res.attempts == 4
    assert (
        waits[0] == 3.0 and waits[1] == 1.0 and 0.0 <= waits[2] <= 2.0
    )  # hint, backoff for garbage, HTTP date
    for script, outcome in (
        (["drop"], "unknown"),
        ([("http", 503, {}, b"")], "not_sent"),
        ([("http", 502, {}, b"")], "unknown"),
        ([("http", 200, {}, {"id_code": 200, "data": {}})], "unknown"),
        ([("http", 200, {}, {"id_code": 403, "id_message": "Forbidden"})], "rejected"),
    ):
        s = tns(post=script)
        res = post_bulk_report(report, s.url, CREDS, sleep=waits.append)
        assert res.outcome == outcome and len(s.posts) == 1, (script, res)


def test_an_interrupted_run_leaves_unknown_never_resent(tns, env, tmp_path):
    """A real process killed (SIGKILL) while its report is on the wire: the next run does not
    send it again."""
    _scores_file(tmp_path)
    server = tns(post=["hang"], hang=30.0)
    envp = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "earlyia.cli.main",
            *_args(tmp_path, server.url, "--tns-timeout", "60"),
        ],
        env=envp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not server.posts and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert server.posts, proc.communicate(timeout=5)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)  # reaps it and closes its pipes
    assert _states(tmp_path) == dict.fromkeys(OBJ, "pending")
    code = subprocess.run(
        [sys.executable, "-m", "earlyia.cli.main", *_args(tmp_path, server.url, out="o2")],
        env=envp,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        code.returncode == 2
        and "Traceback" not in code.stderr
        and "check on the TNS: 3 object(s)" in code.stdout
    )
    assert _states(tmp_path) == dict.fromkeys(OBJ, "unknown") and len(server.posts) == 1


def test_two_concurrent_processes_report_each_object_once(tns, env, tmp_path):
    _scores_file(tmp_path, n_obj=6)
    server = tns(delay=0.3)  # slow answers: the two runs overlap
    envp = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "earlyia.cli.main",
                *_args(tmp_path, server.url, "--batch-size", "2", out=f"o{i}"),
            ],
            env=envp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert server.processed() == {f"ZTF22obj{i}": 1 for i in range(6)}
    assert _states(tmp_path) == {f"ZTF22obj{i}": "accepted" for i in range(6)}


def test_record_written_before_states_is_read_as_accepted(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE reported (object_id TEXT PRIMARY KEY, alert_id TEXT, reported_at TEXT "
        "NOT NULL, destination TEXT, "
        "report_id TEXT)"
    )
    con.execute(
        "INSERT INTO reported VALUES ('ZTF1', '1', '2024-01-01T00:00:00+00:00', "
        "'https://sandbox.wis-tns.org', '55')"
    )
    con.commit()
    con.close()
    rec = ReportedRecord(path)
    assert (
        rec.reported() == {"ZTF1"}
        and rec.objects()["ZTF1"].state == "accepted"
        and rec.objects()["ZTF1"].report_id == "55"
    )
    # a claim never takes an object another writer holds
    assert rec.claim("k1", ["ZTF1", "ZTF2"], ["1", "2"], night="2024-01-02", destination="d") == [
        "ZTF2"
    ]
    assert rec.claim("k2", ["ZTF2", "ZTF3"], ["2", "3"], night="2024-01-02", destination="d") == [
        "ZTF3"
    ]
    assert (
        rec.recover_interrupted() == ["ZTF2", "ZTF3"] and rec.objects()["ZTF3"].state == "unknown"
    )


def test_cli_calibration_thresholds_the_calibrated_probability(tmp_path):
    from earlyia.report.calibration import ScoreCalibrator

    scores = _scores_file(tmp_path)  # every alert scores 0.91
    cal = tmp_path / "cal.json"
    ScoreCalibrator.from_dict(
        {"format": "earlyia.calibration/1", "method": "isotonic", "x": [0.0, 1.0], "y": [0.0, 0.4]}
    ).save(cal)
    base = ["candidates", str(scores), "--record", str(tmp_path / "r.sqlite")]
    assert main([*base, "--out", str(tmp_path / "raw")]) == 0
    assert main([*base, "--out", str(tmp_path / "cal"), "--calibration", str(cal)]) == 0
    assert len(pd.read_csv(tmp_path / "raw" / "candidates.csv")) == 3
    assert json.loads((tmp_path / "cal" / "summary.json").read_text())["n_candidates"] == 0
    low = main(
        [*base, "--out", str(tmp_path / "cal2"), "--calibration", str(cal), "--min-score", "0.3"]
    )
    got = pd.read_csv(tmp_path / "cal2" / "candidates.csv")
    assert (
        low == 0 and np.allclose(got["score"], 0.91 * 0.4) and np.allclose(got["score_raw"], 0.91)
    )
