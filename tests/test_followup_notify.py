"""`followup notify` against a real local HTTP server (127.0.0.1): format, retries, idempotency,
secrecy."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from earlyia.errors import ConfigError
from earlyia.followup.config import EarlyList, RetryPolicy
from earlyia.followup.db import FollowupDB
from earlyia.followup.notify import FileSink, SlackSink, format_message, notify, pending_targets
from earlyia.followup.targets import select
from fake_slack import FakeSlackAPI
from test_followup_targets import CONSTRAINTS, make_scores, write_scores

SECRET_PATH = "/services/T000/B000/s3cr3tT0k3n"
FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, timeout=5)


class FakeSlack:
    """A webhook that records every request and answers from a script (then 200 'ok')."""

    def __init__(self, script=()):
        self.script = list(script)  # items: (status, headers) consumed one per request
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    outer.requests.append(
                        {"path": self.path, "ctype": self.headers.get("Content-Type"), "body": body}
                    )
                    status, headers = outer.script.pop(0) if outer.script else (200, {})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                payload = (
                    b"ok" if status == 200 else b"invalid_payload" if status == 400 else b"error"
                )
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def posted(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture
def loop_db(tmp_path):
    path = tmp_path / "scores.parquet"
    write_scores(make_scores(300, seed=21), path, model_hash="feedc0ffee00")
    db = FollowupDB(tmp_path / "loop.db")
    sel = select(db, path, n=4, constraints=CONSTRAINTS, early=EarlyList(n=2), random_state=0)
    assert len(sel.al) == 4 and len(sel.early) == 2
    yield db
    db.close()


def _statuses(db):
    return {r["object_id"]: r["status"] for r in db.query("SELECT object_id, status FROM requests")}


def test_message_has_link_coordinates_score_class_and_age():
    m = format_message(
        {
            "object_id": "ZTF21abcdefg",
            "list": "al",
            "ra": 12.3456789,
            "dec": -5.5,
            "score": 0.123456,
            "classification": "Galaxy",
            "days_since_first": 3.26,
            "last_mag": 18.2,
            "last_band": "r",
        }
    )
    text = json.dumps(m)
    assert "<https://fink-portal.org/ZTF21abcdefg|ZTF21abcdefg>" in text
    assert "0.123" in text and "0.1235" not in text
    assert "12.34568" in text and "-5.50000" in text and "Galaxy" in text and "3.3" in text
    assert m["text"] and m["blocks"][0]["type"] == "section"


def test_posts_each_target_once_and_rerun_posts_nothing(loop_db):
    with FakeSlack() as srv:
        rep = notify(loop_db, SlackSink(srv.url, retry=FAST))
        assert rep.ok and len(rep.posted) == 6
        posted = srv.posted()
        assert len(posted) == 6 and all(
            r["ctype"].startswith("application/json") for r in srv.requests
        )
        assert {r["path"] for r in srv.requests} == {SECRET_PATH}
        ids = [b["blocks"][0]["text"]["text"].split("|")[1].split(">")[0] for b in posted]
        assert sorted(ids) == sorted(_statuses(loop_db))
        assert set(_statuses(loop_db).values()) == {"posted"}
        rep2 = notify(loop_db, SlackSink(srv.url, retry=FAST))
        assert rep2.posted == [] and len(srv.requests) == 6


def test_429_honours_retry_after_then_succeeds(loop_db):
    delays = []
    with FakeSlack([(429, {"Retry-After": "2"}), (200, {})]) as srv:
        sink = SlackSink(
            srv.url,
            retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=30),
            sleep=delays.append,
        )
        rep = notify(loop_db, sink, limit=1)
        assert rep.ok and len(rep.posted) == 1
        assert delays == [2.0]  # the server's value, not the 0.01 s backoff
        assert len(srv.requests) == 2 and srv.requests[0]["body"] == srv.requests[1]["body"]


def test_500_then_200_uses_exponential_backoff(loop_db):
    delays = []
    with FakeSlack([(500, {}), (503, {}), (200, {})]) as srv:
        sink = SlackSink(
            srv.url,
            retry=RetryPolicy(max_attempts=5, base_delay=0.5, factor=2.0, max_delay=30),
            sleep=delays.append,
        )
        rep = notify(loop_db, sink, limit=1)
        assert rep.ok and delays == [0.5, 1.0]
        assert list(_statuses(loop_db).values()).count("posted") == 1


def test_400_marks_failed_exits_nonzero_and_others_still_go(loop_db):
    with FakeSlack([(400, {})]) as srv:
        rep = notify(loop_db, SlackSink(srv.url, retry=FAST))
        assert not rep.ok and len(rep.failed) == 1 and len(rep.posted) == 5
        assert len(srv.requests) == 6  # a 4xx is not retried
        st = _statuses(loop_db)
        assert list(st.values()).count("failed") == 1
        err = loop_db.query("SELECT error FROM requests WHERE status = 'failed'")[0][0]
        assert "400" in err and "s3cr3t" not in err
        # failed ones are not re-sent unless asked
        assert notify(loop_db, SlackSink(srv.url, retry=FAST)).posted == []
        again = notify(loop_db, SlackSink(srv.url, retry=FAST), retry_failed=True)
        assert len(again.posted) == 1 and set(_statuses(loop_db).values()) == {"posted"}


def test_revoked_webhook_stops_and_leaves_the_rest_pending(loop_db):
    with FakeSlack([(404, {})]) as srv:
        rep = notify(loop_db, SlackSink(srv.url, retry=FAST))
        assert rep.stopped and len(srv.requests) == 1
        assert sorted(_statuses(loop_db).values()) == ["failed"] + ["selected"] * 5


def test_persistent_5xx_gives_up_and_keeps_target_pending(loop_db):
    with FakeSlack([(500, {})] * FAST.max_attempts) as srv:
        rep = notify(loop_db, SlackSink(srv.url, retry=FAST))
        assert not rep.ok and rep.deferred and len(srv.requests) == FAST.max_attempts
        assert set(_statuses(loop_db).values()) == {"selected"}
        rep2 = notify(loop_db, SlackSink(srv.url, retry=FAST))
        assert rep2.ok and len(rep2.posted) == 6


def test_unreachable_server_is_transient(loop_db):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    rep = notify(loop_db, SlackSink(f"http://127.0.0.1:{port}/x", retry=FAST), limit=1)
    assert rep.deferred and set(_statuses(loop_db).values()) == {"selected"}


def test_interrupted_send_is_not_reposted_automatically(loop_db):
    class Boom:
        channel = "slack"

        def send(self, post):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        notify(loop_db, Boom())
    # the interruption is recorded: the message may or may not have gone out
    assert sorted(_statuses(loop_db).values()) == ["selected"] * 5 + ["unknown"]
    with FakeSlack() as srv:
        rep = notify(loop_db, SlackSink(srv.url, retry=FAST))
        assert len(rep.posted) == 5 and len(rep.still_unknown) == 1 and rep.ok
        rep2 = notify(loop_db, SlackSink(srv.url, retry=FAST), retry_unknown=True)
        assert len(rep2.posted) == 1 and set(_statuses(loop_db).values()) == {"posted"}


def test_two_concurrent_notifiers_never_double_post(tmp_path):
    path = tmp_path / "scores.parquet"
    write_scores(make_scores(400, seed=22), path)
    db_path = tmp_path / "loop.db"
    with FollowupDB(db_path) as db:
        select(db, path, n=15, constraints=CONSTRAINTS, early=EarlyList(n=5), random_state=0)
        n = len(db.query("SELECT * FROM requests"))
    with FakeSlack() as srv:
        results = []

        def run():
            with FollowupDB(db_path) as db:
                results.append(notify(db, SlackSink(srv.url, retry=FAST)))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(srv.requests) == n
        assert sum(len(r.posted) for r in results) == n
        assert len({r["body"] for r in srv.requests}) == n


def test_file_and_stdout_sinks(loop_db, tmp_path, capsys):
    out = tmp_path / "msgs.jsonl"
    rep = notify(loop_db, FileSink(out), lists=("al",))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 4 == len(rep.posted)
    assert {x["object_id"] for x in lines} == set(rep.posted)
    assert len(pending_targets(loop_db)) == 2  # the early list is still pending
    from earlyia.followup.notify import StdoutSink

    notify(loop_db, StdoutSink())
    printed = capsys.readouterr().out
    assert printed.count("https://fink-portal.org/") == 2


def test_webhook_url_is_never_printed(tmp_path, monkeypatch, capsys):
    from earlyia.cli.main import main

    path = tmp_path / "scores.parquet"
    write_scores(make_scores(300, seed=23), path)
    db = str(tmp_path / "loop.db")
    with FollowupDB(db) as d:
        select(d, path, n=3, constraints=CONSTRAINTS, early=EarlyList(n=1))
    with FakeSlack([(400, {}), (500, {}), (500, {})]) as srv:
        monkeypatch.setenv("EARLYIA_SLACK_WEBHOOK", srv.url)
        code = main(["followup", "notify", "--db", db, "--backoff", "0.01", "--max-attempts", "2"])
        out = capsys.readouterr()
        assert code == 1
        assert (
            "s3cr3t" not in out.out + out.err
            and str(srv.server.server_address[1]) not in out.out + out.err
        )
        assert "400" in out.err
    monkeypatch.delenv("EARLYIA_SLACK_WEBHOOK")
    with pytest.raises(ConfigError, match="EARLYIA_SLACK_WEBHOOK"):
        SlackSink()
    assert "s3cr3t" not in repr(SlackSink("http://127.0.0.1:1/s3cr3t"))


class FakeUploader(FakeSlack):
    """An image host on loopback: stores PNGs and answers their public URL."""

    def __init__(self):
        super().__init__()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                oid = self.headers.get("X-Object-Id")
                with outer.lock:
                    outer.requests.append(
                        {
                            "path": self.path,
                            "ctype": self.headers.get("Content-Type"),
                            "body": body,
                            "oid": oid,
                        }
                    )
                payload = json.dumps({"url": f"http://127.0.0.1/img/{oid}.png"}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server.RequestHandlerClass = Handler


def test_light_curve_png_uploaded_and_linked(loop_db):
    import numpy as np
    import pandas as pd

    from earlyia.followup.notify import ImageUploader
    from earlyia.io.table import LightCurves

    targets = [t["object_id"] for t in pending_targets(loop_db)]
    rng = np.random.default_rng(0)
    phot = pd.DataFrame(
        [
            {
                "object_id": o,
                "mjd": 60000.0 + k,
                "band": "gr"[k % 2],
                "flux": 100.0 + 10 * k + rng.normal(),
                "flux_err": 5.0,
            }
            for o in targets[:3]
            for k in range(6)
        ]
    )
    lc = LightCurves.from_frames(phot, survey="ZTF", bands=["g", "r"])
    with FakeSlack() as slack, FakeUploader() as up:
        rep = notify(
            loop_db,
            SlackSink(slack.url, retry=FAST),
            image_for=ImageUploader(lc, up.url, retry=FAST),
        )
        assert rep.ok and len(rep.posted) == 6
        assert len(up.requests) == 3 and all(
            r["body"][:8] == b"\x89PNG\r\n\x1a\n" for r in up.requests
        )
        assert {r["ctype"] for r in up.requests} == {"image/png"}
        images = {
            b["alt_text"].split()[-1]: b["image_url"]
            for m in slack.posted()
            for b in m["blocks"]
            if b["type"] == "image"
        }
        assert images == {
            o: f"http://127.0.0.1/img/{o}.png" for o in targets[:3]
        }  # objects without photometry: no image


def test_retry_after_parsing_and_backoff_schedule():
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    from earlyia.followup.notify import _retry_after

    assert (
        _retry_after("3") == 3.0
        and _retry_after(" 0 ") == 0.0
        and _retry_after(None) is None
        and _retry_after("soon") is None
    )
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= _retry_after(when) <= 31
    p = RetryPolicy(base_delay=0.5, factor=3.0, max_delay=5.0)
    assert [p.delay(k) for k in range(1, 5)] == [0.5, 1.5, 4.5, 5.0]
    with pytest.raises(ConfigError):
        RetryPolicy(max_attempts=0)


@pytest.mark.parametrize(
    "action", ["drop", ("hang", 3.0), "garbage"], ids=["dropped", "hang", "not-http"]
)
def test_webhook_that_got_the_post_but_gave_no_answer_is_not_sent_again(loop_db, action):
    """The webhook received the message, then the connection dropped, timed out or answered
    non-HTTP."""
    sink_retry = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, timeout=1.0)
    with FakeSlackAPI(script={"webhook": [action]}) as srv:
        rep = notify(loop_db, SlackSink(srv.webhook_url, retry=sink_retry))
        texts = [m["text"] for m in srv.webhook]
        assert len(texts) == len(set(texts)) == 6  # every target once, the unanswered one included
        assert sorted(_statuses(loop_db).values()) == ["posted"] * 5 + ["unknown"]
        assert not rep.ok and len(rep.unknown) == 1 and "--retry-unknown" in rep.unknown[0][1]
        rep2 = notify(loop_db, SlackSink(srv.webhook_url, retry=sink_retry))
        assert len(srv.webhook) == 6 and rep2.ok and len(rep2.still_unknown) == 1


def test_alert_fields_cannot_mention_or_link():
    m = format_message(
        {
            "object_id": "ZTF<!channel>",
            "list": "al",
            "classification": "<https://evil.example|click> & co",
            "last_band": "<@U1>",
            "model_version": "<!here>",
            "ra": 1.0,
            "dec": 2.0,
            "score": 0.5,
        }
    )
    text = json.dumps(m)
    for raw in ("<!channel>", "<!here>", "<https://evil", "<@U1>", "& co"):
        assert raw not in text
    assert (
        "&lt;!channel&gt;" in m["text"]
        and "&lt;https://evil.example|click&gt; &amp; co" in m["text"]
    )
    assert m["blocks"][0]["text"]["text"].startswith(
        "*<https://fink-portal.org/ZTF%3C%21channel%3E|ZTF&lt;!channel&gt;>*"
    )
    fields = " ".join(f["text"] for f in m["blocks"][1]["fields"])
    assert "&lt;@U1&gt;" in fields and "&lt;!here&gt;" in fields


@pytest.mark.parametrize(
    "url",
    ["https://hooks.slack.com:s3cr3t/services/x", "http://[::1/s3cr3t", "https://h/s3cr3t\nX: 1"],
)
def test_malformed_webhook_url_is_a_config_error_that_hides_it(loop_db, url):
    with pytest.raises(ConfigError) as info:
        notify(loop_db, SlackSink(url, retry=FAST))
    assert "s3cr3t" not in str(info.value) and "not a valid" in str(info.value)
    assert set(_statuses(loop_db).values()) == {"selected"}
