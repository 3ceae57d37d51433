"""`followup notify` exactly once, against a Slack-like server on 127.0.0.1 (tests/fake_slack.py).

The bot sink (slack_sdk ``WebClient`` pointed at the local server) and the webhook sink face every
scripted failure: accept, reject, delayed reply, connection dropped after (or before) the request
was processed, a hang beyond the client timeout, 429 with Retry-After, a reply that is not HTTP.
Over two runs: no key twice in a channel, nothing lost, database states right, the CLI ends with a
clear line and no traceback, secrets never printed.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import fastavro
import numpy as np
import pandas as pd
import pytest

from earlyia.errors import ConfigError, FormatError
from earlyia.followup.config import EarlyList, RetryPolicy
from earlyia.followup.cutouts import CUTOUT_KINDS, TargetFiles, read_fits_image
from earlyia.followup.db import MIGRATIONS, FollowupDB
from earlyia.followup.notify import SlackSink, notify, target_key
from earlyia.followup.slackbot import SlackBotSink
from earlyia.followup.targets import select
from fake_slack import AL, EARLY, TOKEN, FakeSlackAPI
from test_followup_targets import CONSTRAINTS, make_scores, write_scores

FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, timeout=1.0)
N_AL, N_EARLY = 4, 2


def make_db(tmp_path: Path, seed: int = 21, df: pd.DataFrame | None = None) -> Path:
    path = tmp_path / "scores.parquet"
    write_scores(make_scores(300, seed=seed) if df is None else df, path, model_hash="feedc0ffee00")
    db_path = tmp_path / "loop.db"
    with FollowupDB(db_path) as db:
        sel = select(
            db, path, n=N_AL, constraints=CONSTRAINTS, early=EarlyList(n=N_EARLY), random_state=0
        )
        assert len(sel.al) == N_AL and len(sel.early) == N_EARLY
    return db_path


def requests_by_status(db_path: Path) -> dict[str, str]:
    with FollowupDB(db_path) as db:
        return {
            f"{r['list']}:{r['object_id']}": r["status"]
            for r in db.query("SELECT list, object_id, status FROM requests")
        }


def target_keys(db_path: Path) -> dict[str, list[str]]:
    with FollowupDB(db_path) as db:
        rows = db.query(
            "SELECT r.list, r.object_id, c.mjd, s.created_at FROM requests r JOIN candidates c ON "
            "c.selection_id = r.selection_id AND c.list = r.list AND c.object_id = r.object_id "
            "JOIN selections s ON s.id = r.selection_id"
        )
    from earlyia.followup.notify import night_of

    out: dict[str, list[str]] = {"al": [], "early": []}
    for r in rows:
        out[r["list"]].append(
            target_key(r["list"], night_of(r["mjd"], r["created_at"]), r["object_id"])
        )
    return out


def bot(srv: FakeSlackAPI, retry: RetryPolicy = FAST) -> SlackBotSink:
    return SlackBotSink(TOKEN, {"al": AL, "early": EARLY}, base_url=srv.api_url, retry=retry)


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    from earlyia.cli.main import main

    code = main(["followup", "notify", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_clean_output(out: str, err: str) -> None:
    text = out + err
    assert "Traceback" not in text
    assert "s3cr3t" not in text and TOKEN not in text
    assert " posted to " in out  # the summary line


# -- the bot, happy path
# -----------------------------------------------------------------------------
def _write_alerts(path: Path, object_ids: list[str], stamp: bytes) -> None:
    """A ZTF-like Avro container: one alert per object with the three cutouts."""
    schema = {
        "type": "record",
        "name": "alert",
        "fields": [
            {"name": "objectId", "type": "string"},
            {"name": "candid", "type": "long"},
            {
                "name": "candidate",
                "type": {
                    "type": "record",
                    "name": "candidate",
                    "fields": [{"name": "jd", "type": "double"}],
                },
            },
            *[
                {
                    "name": k,
                    "type": [
                        "null",
                        {
                            "type": "record",
                            "name": k,
                            "fields": [
                                {"name": "fileName", "type": "string"},
                                {"name": "stampData", "type": "bytes"},
                            ],
                        },
                    ],
                }
                for k in CUTOUT_KINDS
            ],
        ],
    }
    records = [
        {
            "objectId": o,
            "candid": 1000 + i,
            "candidate": {"jd": 2460000.5 + i},
            **{k: {"fileName": f"{o}_{k}.fits.gz", "stampData": stamp} for k in CUTOUT_KINDS},
        }
        for i, o in enumerate(object_ids)
    ]
    with open(path, "wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(schema), records)


def fits_bytes(image: np.ndarray, bitpix: int = -32, extra: dict | None = None) -> bytes:
    """A simple FITS primary HDU, gzipped (what ZTF's stamps are)."""
    cards = {
        "SIMPLE": "T",
        "BITPIX": str(bitpix),
        "NAXIS": "2",
        "NAXIS1": str(image.shape[1]),
        "NAXIS2": str(image.shape[0]),
        **(extra or {}),
    }
    header = "".join(f"{k:<8}= {v:>20}".ljust(80) for k, v in cards.items()) + "END".ljust(80)
    header = header.ljust(-(-len(header) // 2880) * 2880)
    dtype = {-32: ">f4", -64: ">f8", 16: ">i2", 32: ">i4"}[bitpix]
    data = image.astype(dtype).tobytes()
    data = data.ljust(-(-len(data) // 2880) * 2880, b"\0")
    return gzip.compress(header.encode("ascii") + data)


def test_bot_posts_summary_first_then_each_target_and_its_files_once(tmp_path):
    db_path = make_db(tmp_path)
    with FollowupDB(db_path) as db:
        oids = [r[0] for r in db.query("SELECT object_id FROM requests ORDER BY id")]
    stamp = fits_bytes(np.arange(63 * 63, dtype=float).reshape(63, 63))
    _write_alerts(tmp_path / "alerts.avro", oids[:3], stamp)
    sleeps: list[float] = []
    with FakeSlackAPI() as srv, FollowupDB(db_path) as db:
        rep = notify(
            db,
            bot(srv),
            summary=True,
            pace=3.0,
            sleep=sleeps.append,
            clock=lambda: 0.0,
            attachments_for=TargetFiles(alert_paths=tmp_path / "alerts.avro"),
        )
        assert rep.ok and len(rep.posted) == N_AL + N_EARLY and rep.summaries == ["al", "early"]
        assert sorted(rep.files) == sorted(oids[:3])
        keys = target_keys(db_path)
        for channel, list_, n in ((AL, "al", N_AL), (EARLY, "early", N_EARLY)):
            msgs = srv.messages(channel)
            assert msgs[0]["metadata"]["event_payload"]["key"].endswith("summary-1")
            assert (
                f"*{n}*" in msgs[0]["blocks"][0]["text"]["text"]
                and "feedc0ffee00" in msgs[0]["text"]
            )
            posted_keys = [k for k in srv.keys(channel)[1:] if k]
            assert sorted(posted_keys) == sorted(
                keys[list_]
            )  # each target once, in its list's channel
            for m in msgs:  # every file message follows its target's message
                if m.get("files"):
                    before = msgs[msgs.index(m) - 1]
                    oid = before["metadata"]["event_payload"]["key"].rsplit("/", 1)[1]
                    assert (
                        m["text"].startswith(oid) and m["files"][0]["name"] == f"{oid}_cutouts.png"
                    )
        assert len(srv.uploads) == 3 and all(
            b[:8] == b"\x89PNG\r\n\x1a\n" for b in srv.uploads.values()
        )
        n_sends = len(srv.calls_of("chat.postMessage")) + len(
            srv.calls_of("files.completeUploadExternal")
        )
        assert n_sends == 2 + N_AL + N_EARLY + 3
        assert sleeps == [3.0] * (n_sends - 1)  # Fink's pace between two posts
        with FollowupDB(db_path) as db2:
            states = {(r["kind"], r["status"]) for r in db2.query("SELECT kind, status FROM posts")}
        assert states == {("summary", "posted"), ("target", "posted"), ("files", "posted")}
        assert set(requests_by_status(db_path).values()) == {"posted"}
        # a second run posts nothing
        before = {c: len(srv.messages(c)) for c in (AL, EARLY)}
        rep2 = notify(
            db,
            bot(srv),
            summary=True,
            attachments_for=TargetFiles(alert_paths=tmp_path / "alerts.avro"),
        )
        assert rep2.ok and not rep2.posted and not rep2.summaries and not rep2.files
        assert {c: len(srv.messages(c)) for c in (AL, EARLY)} == before


def test_files_left_pending_are_posted_by_the_next_run_not_the_message(tmp_path):
    db_path = make_db(tmp_path)
    with FollowupDB(db_path) as db:
        oids = [r[0] for r in db.query("SELECT object_id FROM requests ORDER BY id")]
    _write_alerts(tmp_path / "alerts.avro", oids[:1], fits_bytes(np.ones((5, 5))))
    files = TargetFiles(alert_paths=tmp_path / "alerts.avro")
    with (
        FakeSlackAPI(script={"upload": ["drop-before"] * FAST.max_attempts}) as srv,
        FollowupDB(db_path) as db,
    ):
        rep = notify(db, bot(srv), attachments_for=files, lists=("al",))
        assert rep.posted == [oids[0]] and rep.deferred and rep.stopped and not rep.files
        n_messages = len(srv.messages(AL))
        rep2 = notify(db, bot(srv), attachments_for=files, lists=("al",))
        assert rep2.files == [oids[0]] and sorted(rep2.posted) == sorted(oids[1:N_AL])
        keys = [k for k in srv.keys(AL) if k]
        assert (
            len(keys) == len(set(keys)) == N_AL
            and len(srv.messages(AL)) == n_messages + (N_AL - 1) + 1
        )


# -- every failure, over two runs, through the CLI
# ------------------------------------------------------
#: scenario -> (script of chat.postMessage, script of conversations.history, state after run 1, exit
#: code of run 1)
BOT_SCENARIOS = {
    "accept": (["ok"], [], "posted", 0),
    "delayed reply": ([("delay", 0.3)], [], "posted", 0),
    "dropped after processing": (["drop"], [], "posted", 0),
    "dropped before processing": (["drop-before"], [], "posted", 0),
    "hang after processing": ([("hang", 3.0)], [], "posted", 0),
    "hang before processing": ([("hang-before", 3.0)], [], "posted", 0),
    "429 then ok": ([("429", 0)], [], "posted", 0),
    "not HTTP": (["garbage"], [], "posted", 0),
    "HTTP 502 page": ([("http", 502)], [], "posted", 0),
    "reject": ([("reject", "invalid_blocks")], [], "failed", 1),
    "dropped, history unreadable": (["drop"], [("reject", "internal_error")], "unknown", 1),
    "dropped before, history unreadable": (
        ["drop-before"],
        [("reject", "internal_error")],
        "unknown",
        1,
    ),
}


@pytest.mark.parametrize("scenario", list(BOT_SCENARIOS))
def test_bot_exactly_once_in_every_scenario(scenario, tmp_path, monkeypatch, capsys):
    post_script, history_script, state1, code1 = BOT_SCENARIOS[scenario]
    db_path = make_db(tmp_path)
    keys = target_keys(db_path)
    # the summary goes first, the scripted failure hits the first target's message
    with FakeSlackAPI(
        script={
            "chat.postMessage": ["ok", *post_script],
            "conversations.history": list(history_script),
        }
    ) as srv:
        monkeypatch.setenv("EARLYIA_SLACK_BOT_TOKEN", TOKEN)
        monkeypatch.setenv("EARLYIA_SLACK_API_URL", srv.api_url)
        args = [
            "--sink",
            "slack-bot",
            "--al-channel",
            AL,
            "--early-channel",
            EARLY,
            "--db",
            str(tmp_path / "loop.db"),
            "--pace",
            "0",
            "--verify-after",
            "0",
            "--timeout",
            "1",
            "--backoff",
            "0.01",
            "--max-attempts",
            "3",
        ]
        code, out, err = run_cli(args, capsys)
        assert code == code1, out + err
        assert_clean_output(out, err)
        states = requests_by_status(db_path)
        hit = [k for k, v in states.items() if v != "posted"]
        assert hit == [] if state1 == "posted" else len(hit) == 1 and states[hit[0]] == state1
        if state1 != "posted":
            assert hit[0].split(":", 1)[1] in err  # the target is named on its own line
        # run 2: nothing scripted any more
        code2, out2, err2 = run_cli(args, capsys)
        assert_clean_output(out2, err2)
        assert code2 == 0, out2 + err2
        states2 = requests_by_status(db_path)
        for channel, list_ in ((AL, "al"), (EARLY, "early")):
            posted = [k for k in srv.keys(channel) if k and "/summary-" not in k]
            assert len(posted) == len(set(posted)), f"duplicate post in {scenario}"  # never twice
            expected = keys[list_]
            if scenario == "reject" and list_ == "al":
                expected = [k for k in expected if k.rsplit("/", 1)[1] != hit[0].split(":", 1)[1]]
            assert sorted(posted) == sorted(expected)  # nothing lost
            summaries = [k for k in srv.keys(channel) if k and "/summary-" in k]
            assert (
                len(summaries) == 1 and srv.keys(channel)[0] == summaries[0]
            )  # summary once, first
        assert set(states2.values()) == (
            {"posted", "failed"} if scenario == "reject" else {"posted"}
        )
        with FollowupDB(db_path) as db:
            assert {r[0] for r in db.query("SELECT status FROM posts")} <= {"posted", "failed"}


#: scenario -> (webhook script, messages received for the hit target, state after run 1, exit code)
WEBHOOK_SCENARIOS = {
    "accept": (["ok"], 1, "posted", 0),
    "delayed reply": ([("delay", 0.3)], 1, "posted", 0),
    "dropped after processing": (["drop"], 1, "unknown", 1),
    "dropped before processing": (["drop-before"], 0, "unknown", 1),
    "hang after processing": ([("hang", 3.0)], 1, "unknown", 1),
    "429 then ok": ([("429", 0)], 1, "posted", 0),
    "500 then ok": ([("http", 500)], 1, "posted", 0),
    "not HTTP": (["garbage"], 1, "unknown", 1),
    "400": ([("http", 400)], 0, "failed", 1),
}


@pytest.mark.parametrize("scenario", list(WEBHOOK_SCENARIOS))
def test_webhook_at_most_once_and_unknown_is_reported_not_resent(
    scenario, tmp_path, monkeypatch, capsys
):
    script, received, state1, code1 = WEBHOOK_SCENARIOS[scenario]
    db_path = make_db(tmp_path)
    with FakeSlackAPI(script={"webhook": list(script)}) as srv:
        monkeypatch.setenv("EARLYIA_SLACK_WEBHOOK", srv.webhook_url)
        args = [
            "--db",
            str(db_path),
            "--pace",
            "0",
            "--timeout",
            "1",
            "--backoff",
            "0.01",
            "--max-attempts",
            "3",
        ]
        code, out, err = run_cli(args, capsys)
        assert code == code1, out + err
        assert_clean_output(out, err)
        states = requests_by_status(db_path)
        hit = [k for k, v in states.items() if v != "posted"]
        assert hit == [] if state1 == "posted" else len(hit) == 1 and states[hit[0]] == state1
        if state1 == "unknown":
            oid = hit[0].split(":", 1)[1]
            assert "outcome unknown" in err and "--retry-unknown" in err and oid in err
        n1 = len(srv.webhook)
        assert n1 == N_AL + N_EARLY - 1 + received if state1 != "posted" else n1 == N_AL + N_EARLY
        # run 2: the unknown one is not re-sent, and is reported again
        code2, out2, err2 = run_cli(args, capsys)
        assert code2 == 0 and len(srv.webhook) == n1
        assert_clean_output(out2, err2)
        if state1 == "unknown":
            assert "outcome unknown" in err2 and requests_by_status(db_path) == states
            # the user checked the channel: re-send only what is missing
            if received == 0:
                code3, _out3, _err3 = run_cli([*args, "--retry-unknown", oid], capsys)
                assert (
                    code3 == 0
                    and len(srv.webhook) == n1 + 1
                    and set(requests_by_status(db_path).values()) == {"posted"}
                )
        texts = [m["text"] for m in srv.webhook]
        assert len(texts) == len(set(texts))  # never the same target twice


# -- escaping
# -----------------------------------------------------------------------------------------
EVIL_ID = "ZTF<!channel>&"
EVIL_CLASS = "<https://evil.example|x> & <!here>"


def _evil_scores() -> pd.DataFrame:
    df = make_scores(300, seed=21)
    df["object_id"] = [f"{EVIL_ID}{o}" for o in df["object_id"]]
    df["classification"] = EVIL_CLASS
    df["last_band"] = "<@U123>"
    return df


def _strings(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k not in ("metadata", "image_url"):
                yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


def _assert_escaped(message: dict) -> None:
    for s in _strings(message):
        assert "<!" not in s and "<@" not in s and "<https://evil" not in s and "|x>" not in s, s
        for bad in ("&<", "&>", "& "):
            assert bad not in s.replace("&amp;", "").replace("&lt;", "").replace("&gt;", ""), s
    joined = " ".join(_strings(message))
    assert "&lt;!channel&gt;&amp;" in joined


def test_alert_fields_are_escaped_for_slack_mrkdwn(tmp_path, monkeypatch, capsys):
    db_path = make_db(tmp_path, df=_evil_scores())
    with FakeSlackAPI() as srv:
        monkeypatch.setenv("EARLYIA_SLACK_WEBHOOK", srv.webhook_url)
        code, _out, err = run_cli(
            ["--db", str(db_path), "--pace", "0", "--list", "al", "--summary"], capsys
        )
        assert code == 0, err
        assert len(srv.webhook) == N_AL + 1  # the summary, then the targets
        for m in srv.webhook[1:]:
            _assert_escaped(m)
            assert "&lt;https://evil.example|x&gt; &amp; &lt;!here&gt;" in json.dumps(m)
            assert (
                "https://fink-portal.org/ZTF%3C%21channel%3E%26" in m["blocks"][0]["text"]["text"]
            )
        monkeypatch.setenv("EARLYIA_SLACK_BOT_TOKEN", TOKEN)
        monkeypatch.setenv("EARLYIA_SLACK_API_URL", srv.api_url)
        code, _out, err = run_cli(
            [
                "--db",
                str(db_path),
                "--pace",
                "0",
                "--sink",
                "slack-bot",
                "--early-channel",
                EARLY,
                "--list",
                "early",
            ],
            capsys,
        )
        assert code == 0, err
        msgs = srv.messages(EARLY)
        assert len(msgs) == 1 + N_EARLY
        for m in msgs[1:]:
            _assert_escaped({"text": m["text"], "blocks": m["blocks"]})
            assert (
                m["metadata"]["event_payload"]["key"].rsplit("/", 1)[1].startswith(EVIL_ID)
            )  # the key keeps the id as is


# -- secrets and bad configuration
# -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.com:s3cr3t/services/T0/B0/x",
        "http://[::1/services/s3cr3t",
        "https://hooks.slack.com/services/s3cr3t\nX-Injected: 1",
        "hooks.slack.com/services/s3cr3t",
        "ftp://hooks.slack.com/services/s3cr3t",
    ],
)
def test_malformed_webhook_url_is_refused_without_showing_it(url, tmp_path, monkeypatch, capsys):
    db_path = make_db(tmp_path)
    monkeypatch.setenv("EARLYIA_SLACK_WEBHOOK", url)
    code, out, err = run_cli(["--db", str(db_path)], capsys)
    assert code == 2
    assert "EARLYIA_SLACK_WEBHOOK" in err and "not a valid" in err
    assert "s3cr3t" not in out + err and "Traceback" not in out + err
    assert set(requests_by_status(db_path).values()) == {"selected"}
    with pytest.raises(ConfigError) as info:
        SlackSink(url)
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(
    "token",
    ["xoxb-s3cr3t\nX-Injected: 1", "Bearer xoxb-s3cr3t0000", "xoxb-s3cr3t 0000", "s3cr3t000000"],
)
def test_malformed_bot_token_is_refused_without_showing_it(token, tmp_path, monkeypatch, capsys):
    db_path = make_db(tmp_path)
    monkeypatch.setenv("EARLYIA_SLACK_BOT_TOKEN", token)
    code, out, err = run_cli(
        ["--db", str(db_path), "--sink", "slack-bot", "--al-channel", AL, "--early-channel", EARLY],
        capsys,
    )
    assert code == 2 and "EARLYIA_SLACK_BOT_TOKEN" in err and "s3cr3t" not in out + err
    assert "s3cr3t" not in repr(SlackBotSink(TOKEN.replace("test", "s3cr3t"), {"al": AL}))


def test_bot_configuration_errors_are_one_clear_line(tmp_path, monkeypatch, capsys):
    db_path = make_db(tmp_path)
    monkeypatch.setenv("EARLYIA_SLACK_BOT_TOKEN", TOKEN)
    code, _out, err = run_cli(
        ["--db", str(db_path), "--sink", "slack-bot", "--al-channel", AL], capsys
    )
    assert code == 2 and "--early-channel" in err and err.count("\n") == 1
    code, _out, err = run_cli(
        ["--db", str(db_path), "--sink", "slack-bot", "--al-channel", "#followup", "--list", "al"],
        capsys,
    )
    assert code == 2 and "channel ID" in err
    monkeypatch.delenv("EARLYIA_SLACK_BOT_TOKEN")
    code, _out, err = run_cli(
        ["--db", str(db_path), "--sink", "slack-bot", "--al-channel", AL, "--list", "al"], capsys
    )
    assert code == 2 and "EARLYIA_SLACK_BOT_TOKEN" in err


def test_revoked_token_stops_the_run_and_leaves_targets_pending(tmp_path, capsys):
    db_path = make_db(tmp_path)
    with FakeSlackAPI() as srv, FollowupDB(db_path) as db:
        sink = SlackBotSink(
            TOKEN.replace("test", "revoked"),
            {"al": AL, "early": EARLY},
            base_url=srv.api_url,
            retry=FAST,
        )
        rep = notify(db, sink, summary=True)
        assert rep.stopped and "invalid_auth" in rep.stopped and not rep.posted
        assert (
            len(srv.calls_of("chat.postMessage")) == 1
        )  # the summary, refused: nothing else tried
        assert set(requests_by_status(db_path).values()) == {"selected"}


# -- interruptions and concurrency
# ----------------------------------------------------------------------
_CHILD = """
import sys
from earlyia.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_killed_during_a_post_is_checked_not_reposted(tmp_path):
    db_path = make_db(tmp_path)
    with FakeSlackAPI(script={"chat.postMessage": [("hang", 60.0)]}) as srv:
        env = {
            **os.environ,
            "EARLYIA_SLACK_BOT_TOKEN": TOKEN,
            "EARLYIA_SLACK_API_URL": srv.api_url,
            "PYTHONPATH": os.pathsep.join(
                [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
            ),
        }
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _CHILD,
                "followup",
                "notify",
                "--sink",
                "slack-bot",
                "--al-channel",
                AL,
                "--list",
                "al",
                "--no-summary",
                "--timeout",
                "60",
                "--db",
                str(db_path),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while not srv.messages(AL) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.messages(AL), (
            child.stderr.read().decode() if child.poll() is not None else "no post arrived"
        )
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        child.stdout.close()
        child.stderr.close()
        assert list(requests_by_status(db_path).values()).count("posting") == 1
        with FollowupDB(db_path) as db:
            # another notifier right now: the post may still be in flight, leave it alone
            rep = notify(db, bot(srv), lists=("al",), verify_after=0)
            assert rep.skipped and len(rep.posted) == N_AL - 1
            # later (older than the in-flight timeout): the channel is checked, the message is there
            rep2 = notify(db, bot(srv), lists=("al",), verify_after=0, in_flight_timeout=0)
            assert len(rep2.found) == 1 and not rep2.posted and rep2.ok
        keys = [k for k in srv.keys(AL) if k]
        assert sorted(keys) == sorted(target_keys(db_path)["al"])
        assert {v for k, v in requests_by_status(db_path).items() if k.startswith("al:")} == {
            "posted"
        }


def test_two_bot_notifiers_at_once_never_post_a_key_twice(tmp_path):
    path = tmp_path / "scores.parquet"
    write_scores(make_scores(400, seed=22), path)
    db_path = tmp_path / "loop.db"
    with FollowupDB(db_path) as db:
        select(db, path, n=12, constraints=CONSTRAINTS, early=EarlyList(n=4), random_state=0)
        n = len(db.query("SELECT * FROM requests"))
    with FakeSlackAPI(script={"chat.postMessage": [("delay", 0.05)] * 10}) as srv:
        results = []

        def run():
            with FollowupDB(db_path) as db:
                results.append(notify(db, bot(srv), summary=True))

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        keys = [k for c in (AL, EARLY) for k in srv.keys(c) if k]
        assert len(keys) == len(set(keys)) == n + 2  # every target and each summary exactly once
        assert sum(len(r.posted) for r in results) == n


# -- an existing database
# ----------------------------------------------------------------------------------
def test_version_1_database_is_migrated_and_its_posting_request_is_not_resent(
    tmp_path, monkeypatch
):
    import earlyia.followup.db as dbmod

    scores = tmp_path / "scores.parquet"
    write_scores(make_scores(300, seed=21), scores)
    db_path = tmp_path / "old.db"
    monkeypatch.setattr(dbmod, "MIGRATIONS", MIGRATIONS[:1])
    monkeypatch.setattr(dbmod, "SCHEMA_VERSION", 1)
    with FollowupDB(db_path) as db:
        select(
            db, scores, n=N_AL, constraints=CONSTRAINTS, early=EarlyList(n=N_EARLY), random_state=0
        )
        with db.transaction() as con:  # what the former notify left: one posted, one interrupted
            con.execute(
                "UPDATE requests SET status = 'posted', message_id = 'slack:200:ok' WHERE id = 1"
            )
            con.execute("UPDATE requests SET status = 'posting' WHERE id = 2")
        before = [tuple(r) for r in db.query("SELECT * FROM requests ORDER BY id")]
    monkeypatch.undo()
    with FollowupDB(db_path) as db:
        assert db.schema_version() == MIGRATIONS[-1][0]
        after = [tuple(r)[:-1] for r in db.query("SELECT * FROM requests ORDER BY id")]
        assert after == before  # every row kept as it was
        with FakeSlackAPI() as srv:
            rep = notify(db, SlackSink(srv.webhook_url, retry=FAST))
            assert len(rep.posted) == N_AL + N_EARLY - 2 and len(rep.still_unknown) == 1
            assert len(srv.webhook) == N_AL + N_EARLY - 2
        st = {r["id"]: r["status"] for r in db.query("SELECT id, status FROM requests")}
        assert st[1] == "posted" and st[2] == "unknown"


# -- cutouts
# -----------------------------------------------------------------------------------------------
def test_fits_stamp_reader_matches_the_pixels():
    rng = np.random.default_rng(5)
    image = rng.normal(100, 10, (63, 63))
    assert np.allclose(read_fits_image(fits_bytes(image)), image.astype(np.float32))
    ints = rng.integers(-300, 300, (7, 9))
    got = read_fits_image(fits_bytes(ints, bitpix=16, extra={"BSCALE": "2.0", "BZERO": "10.0"}))
    assert np.array_equal(got, ints * 2.0 + 10.0)
    raw = gzip.decompress(fits_bytes(image))
    with pytest.raises(FormatError, match="truncated"):
        read_fits_image(raw[: 2880 + 100])
    with pytest.raises(FormatError, match="END"):
        read_fits_image(raw[:2000])
    with pytest.raises(FormatError, match="gzip"):
        read_fits_image(fits_bytes(image)[:-100])


@pytest.mark.filterwarnings(
    "ignore:Found a SIMPLE card"
)  # astropy's note on ZTF's stamps (astropy is optional)
def test_real_ztf_cutouts_render_and_match_astropy(shared_data):
    alert = shared_data("external_alert_samples/fink_client/ZTF19acihgng.avro")
    with open(alert, "rb") as fh:
        rec = next(iter(fastavro.reader(fh)))
    images = {k: read_fits_image(rec[k]["stampData"]) for k in CUTOUT_KINDS}
    assert all(im.shape == (63, 63) and np.isfinite(im).mean() > 0.9 for im in images.values())
    try:
        from astropy.io import fits
    except ImportError:
        fits = None
    if fits is not None:
        for k, im in images.items():
            ref = fits.getdata(io.BytesIO(gzip.decompress(rec[k]["stampData"]))).astype(float)
            np.testing.assert_array_equal(
                np.nan_to_num(im, nan=-1e30), np.nan_to_num(ref, nan=-1e30)
            )
    files = TargetFiles(alert_paths=alert)
    files.prepare(
        [
            {"object_id": "ZTF19acihgng", "alert_id": str(rec["candid"])},
            {"object_id": "ZTF00000", "alert_id": None},
        ]
    )
    got = files({"object_id": "ZTF19acihgng"})
    assert [f.filename for f in got] == ["ZTF19acihgng_cutouts.png"] and got[0].data[
        :4
    ] == b"\x89PNG"
    assert files({"object_id": "ZTF00000"}) == []  # no stamps, no file


def test_unreadable_stamps_are_attached_as_fits(tmp_path):
    _write_alerts(
        tmp_path / "a.avro",
        ["ZTF1"],
        gzip.compress(b"SIMPLE  =                    F" + b" " * 3000),
    )
    files = TargetFiles(alert_paths=tmp_path / "a.avro")
    files.prepare([{"object_id": "ZTF1", "alert_id": None}])
    got = files({"object_id": "ZTF1"})
    assert [f.filename for f in got] == [f"ZTF1_{k}.fits.gz" for k in CUTOUT_KINDS]
    assert files.problems and "FITS" in files.problems[0]
