"""Score alerts as they arrive from Kafka, exactly once, into Parquet partitioned by night.

``earlyia stream`` (this module's :func:`run_stream`) is a thin adapter: messages -> alert records
(:class:`Decoder`) -> the canonical light curves (the same readers as files) -> the one scoring core
(:func:`earlyia.score.pipeline.score_lightcurves`) -> SCORES parts. What it adds is the delivery
guarantee, built on the output directory itself:

1. a batch of messages is decoded and scored; a message that cannot be decoded, or an alert that
   cannot be scored, becomes a reason row (``passed`` False), never a lost batch;
2. its rows are written per night (``scores/night=YYYY-MM-DD/<topic>-<partition>-<first>-<last>.parquet``,
   and the rows above the model's candidate threshold under ``candidates/``), each file atomically and
   flushed to disk, then the batch's manifest (``_batches/<topic>-<partition>-<first>-<last>.json``);
3. only then are the offsets committed to Kafka.

A process killed at any moment (``kill -9`` included) restarts from Kafka's committed offsets: every
message of a batch whose manifest exists is skipped, files of a batch without a manifest are removed,
and alerts already written (by alert id) are not written again. So no alert is lost and none is
written twice. Offsets are committed per partition, and every record keeps its ``topic``,
``partition`` and ``offset``.

Messages: Fink's livestream (the alert's Avro schema as JSON in the message key, the alert schemaless
in the value, as fink-client reads them), Rubin's Kafka wire format (a zero byte, a 4-byte schema id
and the schemaless alert; the schema from a Confluent-compatible schema registry or a schema file),
schemaless Avro with a given schema file, or an Avro container file per message.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from earlyia.errors import ConfigError, InputError, Problem, RemoteError

#: Nights split at this fraction of a day after 0h UTC (daytime in California and Chile).
NIGHT_SHIFT = 0.3
MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)
ENV_PASSWORD = "EARLYIA_KAFKA_PASSWORD"
_PART = re.compile(r"^(?P<topic>.+)-(?P<partition>\d+)-(?P<first>\d+)-(?P<last>\d+)\.(parquet|json)$")


# ---------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class KafkaSettings:
    """Where to consume from. With ``username`` and ``password`` the connection uses SASL SCRAM-SHA-512 over
    ``sasl_plaintext``, as Fink's livestream does (fink-client); the password never appears in any output."""

    servers: str
    topics: tuple[str, ...]
    group_id: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    offset_reset: str = "earliest"
    extra: Mapping[str, str] = field(default_factory=dict)

    def check(self) -> None:
        if not self.servers or not str(self.servers).strip():
            raise ConfigError("--servers: give the Kafka bootstrap servers (host:port[,host:port])")
        if not self.topics:
            raise ConfigError("--topic: give at least one topic")
        if not self.group_id:
            raise ConfigError("--group-id: give a consumer group id (offsets are committed under it)")
        if (self.username is None) != (self.password is None):
            raise ConfigError(f"--username needs a password (from ${ENV_PASSWORD} or the credentials file), and a password a username")
        if self.offset_reset not in ("earliest", "latest"):
            raise ConfigError(f"offset reset must be 'earliest' or 'latest', got {self.offset_reset!r}")

    def consumer_config(self) -> dict[str, Any]:
        self.check()
        conf: dict[str, Any] = {
            "bootstrap.servers": self.servers,
            "group.id": self.group_id,
            "auto.offset.reset": self.offset_reset,
            "enable.auto.commit": False,  # committed only after the outputs are durable
            "enable.auto.offset.store": False,
        }
        if self.username is not None:
            conf.update({"security.protocol": "sasl_plaintext", "sasl.mechanism": "SCRAM-SHA-512",
                         "sasl.username": self.username, "sasl.password": self.password})
        conf.update(dict(self.extra))
        return conf

    @classmethod
    def from_fink_credentials(cls, path: str | Path, **overrides: Any) -> KafkaSettings:
        """Settings from a fink-client credentials file (``~/.finkclient/<survey>_credentials.yml``: ``servers``,
        ``groupid``, ``username``, ``password``, ``topics`` or ``mytopics``); ``overrides`` win when not None."""
        import yaml

        path = Path(path).expanduser()
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the fink-client credentials ({type(exc).__name__})") from exc
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: not a fink-client credentials file (expected a mapping)")
        topics = doc.get("topics") or doc.get("mytopics") or []
        topics = tuple(topics.keys()) if isinstance(topics, dict) else tuple(topics)
        password = doc.get("password")
        values = {
            "servers": str(doc.get("servers", "")).replace(" ", ""),
            "topics": topics,
            "group_id": doc.get("groupid") or doc.get("group_id"),
            "username": doc.get("username") if password not in (None, "None", "") else None,
            "password": None if password in (None, "None", "") else str(password),
        }
        values.update({k: v for k, v in overrides.items() if v not in (None, (), [])})
        return cls(**values)


# ---------------------------------------------------------------------------- decoding
class Decoder:
    """Kafka message -> alert records (dicts), whatever the producer's convention (see the module docstring).

    ``schema_registry``: base URL of a Confluent-compatible registry (``GET /schemas/ids/<id>``); ``schema``: an
    Avro schema (``.avsc`` path or parsed dict) for schemaless messages without a schema in their key.
    """

    def __init__(self, *, schema_registry: str | None = None, schema: str | Path | Mapping | None = None, timeout: float = 10.0):
        import fastavro

        self._fastavro = fastavro
        self.registry = schema_registry.rstrip("/") if schema_registry else None
        self.timeout = timeout
        self._by_id: dict[int, Any] = {}
        self._by_key: dict[bytes, Any] = {}
        self._fixed = None
        if schema is not None:
            if isinstance(schema, Mapping):
                doc = dict(schema)
            else:
                try:
                    doc = json.loads(Path(schema).read_text())
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"{schema}: cannot read the Avro schema ({exc})") from exc
            self._fixed = self._parse(doc, f"schema {schema if not isinstance(schema, Mapping) else '(given)'}")

    def _parse(self, doc, what: str):
        try:
            return self._fastavro.parse_schema(doc)
        except (self._fastavro.schema.SchemaParseException, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{what}: not an Avro schema ({exc})") from exc

    def _registry_schema(self, schema_id: int):
        if schema_id in self._by_id:
            return self._by_id[schema_id]
        if self.registry is None:
            if self._fixed is not None:
                return self._fixed
            raise InputError(f"message in the Kafka wire format with schema id {schema_id}: give --schema-registry or --schema")
        url = f"{self.registry}/schemas/ids/{schema_id}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                doc = json.loads(resp.read().decode())
            schema = json.loads(doc["schema"]) if isinstance(doc.get("schema"), str) else doc["schema"]
        except (urllib.error.URLError, TimeoutError, OSError, ValueError, KeyError, TypeError) as exc:
            raise RemoteError(f"schema registry: cannot fetch schema id {schema_id} ({type(exc).__name__}: {exc})") from exc
        parsed = self._parse(schema, f"schema id {schema_id} of the registry")
        self._by_id[schema_id] = parsed
        return parsed

    def __call__(self, value: bytes | None, key: bytes | None = None) -> list[dict]:
        if not value:
            raise InputError("empty message")
        fa = self._fastavro
        if value[:4] == b"Obj\x01":  # an Avro container file: one or more alerts with their schema
            return [r for r in fa.reader(io.BytesIO(value)) if isinstance(r, dict)]
        if value[0] == 0 and len(value) > 5 and (self.registry is not None or key is None or not _json_key(key)):
            schema_id = struct.unpack(">I", value[1:5])[0]
            rec = fa.schemaless_reader(io.BytesIO(value[5:]), self._registry_schema(schema_id))
            return [rec]
        if key and _json_key(key):
            schema = self._by_key.get(key)
            if schema is None:
                schema = self._parse(json.loads(key), "the schema in the message key")
                self._by_key[key] = schema
            return [fa.schemaless_reader(io.BytesIO(value), schema)]
        if self._fixed is not None:
            return [fa.schemaless_reader(io.BytesIO(value), self._fixed)]
        raise InputError("cannot decode: no schema in the message key, not the Kafka wire format, and no --schema given")


def _json_key(key: bytes) -> bool:
    k = key.lstrip()
    return k[:1] == b"{"


def records_to_lightcurves(records: Sequence[Mapping], source: str):
    """Alert records of any supported survey -> :class:`~earlyia.io.table.LightCurves` (the files' readers)."""
    from earlyia.io.ztf import lightcurves_from_alert_records

    if not records:
        raise InputError("no alert record", source=source)
    first = records[0]
    if "candidate" in first:
        return lightcurves_from_alert_records(list(records), source=source, survey="ZTF")
    if "diaSource" in first:
        from earlyia.io import rubin

        return rubin.lightcurves_from_records(list(records), source=source)
    raise InputError(f"unrecognised alert record (fields {sorted(first)[:8]}...): neither ZTF nor Rubin", source=source)


# ---------------------------------------------------------------------------- the output directory
def night_of(mjd: np.ndarray) -> np.ndarray:
    """The night of each observation time as 'YYYY-MM-DD': the UTC date of the evening it began
    (nights split at ~17 h UTC, daytime in California and Chile)."""
    mjd = np.asarray(mjd, np.float64)
    day = np.floor(np.where(np.isfinite(mjd), mjd, 0.0) + NIGHT_SHIFT) - 1
    out = np.empty(len(mjd), dtype=object)
    for d in np.unique(day):
        out[day == d] = (MJD_EPOCH + timedelta(days=float(d))).strftime("%Y-%m-%d")
    out[~np.isfinite(mjd)] = "unknown"
    return out


def _fsync_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (temporary file, fsync, rename, fsync of the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class OutputState:
    """What the output directory already holds durably: the last offset written per (topic, partition), the
    alert ids written, and the cleanup of what a killed process left."""

    root: Path
    written: dict[tuple[str, int], int] = field(default_factory=dict)
    alert_ids: set[str] = field(default_factory=set)
    removed: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, root: str | Path) -> OutputState:
        root = Path(root)
        state = cls(root)
        if not root.exists():
            return state
        if not root.is_dir():
            raise ConfigError(f"--out {root}: is a file; give a directory for the stream's outputs")
        done: set[str] = set()
        for man in sorted((root / "_batches").glob("*.json")):
            m = _PART.match(man.name)
            if not m:
                continue
            key = (m["topic"], int(m["partition"]))
            state.written[key] = max(state.written.get(key, -1), int(m["last"]))
            done.add(man.stem)
        for tmp in root.rglob(".*.tmp"):  # temporaries of a killed process
            tmp.unlink(missing_ok=True)
            state.removed.append(str(tmp))
        for part in list(root.glob("scores/night=*/*.parquet")) + list(root.glob("candidates/night=*/*.parquet")):
            if part.stem not in done:  # a batch killed before its manifest: written again from Kafka
                part.unlink(missing_ok=True)
                state.removed.append(str(part))
        for part in root.glob("scores/night=*/*.parquet"):
            try:
                ids = pq.read_table(part, columns=["alert_id"]).column("alert_id").to_pylist()
            except (OSError, pa.ArrowException) as exc:
                raise ConfigError(f"{part}: unreadable part in the stream's output ({exc}); move it away and restart") from exc
            state.alert_ids.update(str(i) for i in ids if i)
        return state

    def already(self, topic: str, partition: int, offset: int) -> bool:
        return offset <= self.written.get((topic, partition), -1)


# ---------------------------------------------------------------------------- one batch
@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def score_messages(messages: Sequence[Message], model, decoder: Decoder, extractor=None) -> pd.DataFrame:
    """SCORES rows of a batch of messages, with ``topic``, ``partition``, ``offset``, ``night``; an undecodable
    message or unusable alert is a reason row, never an exception."""
    from earlyia.errors import EarlyIAError
    from earlyia.io.table import LightCurves
    from earlyia.score.pipeline import problem_rows, score_lightcurves

    names = list(extractor.names) if extractor is not None else model.features
    by_survey: dict[str, list] = {}
    origin: dict[str, tuple[str, int, int]] = {}
    problems: list[tuple[Problem, Message]] = []
    for msg in messages:
        src = f"{msg.topic}[{msg.partition}]@{msg.offset}"
        try:
            records = decoder(msg.value, msg.key)
        except (EarlyIAError, ValueError, EOFError, IndexError, KeyError, TypeError, StopIteration, struct.error,
                UnicodeDecodeError) as exc:
            problems.append((Problem(src, None, f"undecodable message ({type(exc).__name__}: {exc})"), msg))
            continue
        for rec in records:
            survey = "ZTF" if "candidate" in rec else "LSST" if "diaSource" in rec else "?"
            if survey == "?":
                problems.append((Problem(src, None, f"unrecognised alert record (fields {sorted(rec)[:6]})"), msg))
                continue
            by_survey.setdefault(survey, []).append(rec)
            aid = _alert_id(rec)
            if aid is not None:
                origin[aid] = (msg.topic, msg.partition, msg.offset)
    frames = []
    for survey, recs in by_survey.items():
        try:
            lc = records_to_lightcurves(recs, source=f"stream:{survey}")
        except EarlyIAError as exc:
            for rec in recs:
                aid = _alert_id(rec)
                t, p, o = origin.get(aid, ("", -1, -1))
                problems.append((Problem(f"{t}[{p}]@{o}", None, str(exc)), Message(t, p, o, None, None)))
            continue
        if not isinstance(lc, LightCurves):
            continue
        df = score_lightcurves(lc, model, extractor)
        where = [origin.get(str(a), ("", -1, -1)) for a in df["alert_id"]]
        df.insert(2, "topic", [w[0] for w in where])
        df.insert(3, "partition", np.array([w[1] for w in where], np.int64))
        df.insert(4, "offset", np.array([w[2] for w in where], np.int64))
        frames.append(df)
        if lc.problems:
            prob = problem_rows(lc.problems, names)
            prob.insert(2, "topic", "")
            prob.insert(3, "partition", np.int64(-1))
            prob.insert(4, "offset", np.int64(-1))
            frames.append(prob)
    if problems:
        prob = problem_rows([p for p, _ in problems], names)
        prob.insert(2, "topic", [m.topic for _, m in problems])
        prob.insert(3, "partition", np.array([m.partition for _, m in problems], np.int64))
        prob.insert(4, "offset", np.array([m.offset for _, m in problems], np.int64))
        frames.append(prob)
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    out["night"] = night_of(out["mjd"].to_numpy(np.float64))
    return out


def _alert_id(rec: Mapping) -> str | None:
    for key in ("candid", "diaSourceId", "alertId"):
        if rec.get(key) is not None:
            return str(rec[key])
    cand = rec.get("candidate") or rec.get("diaSource")
    if isinstance(cand, Mapping):
        for key in ("candid", "diaSourceId"):
            if cand.get(key) is not None:
                return str(cand[key])
    return None


# ---------------------------------------------------------------------------- the consumer loop
@dataclass
class StreamReport:
    n_messages: int = 0
    n_rows: int = 0
    n_candidates: int = 0
    n_skipped: int = 0
    n_duplicates: int = 0
    n_batches: int = 0
    seconds: float = 0.0
    removed: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.n_messages / self.seconds if self.seconds > 0 else float("nan")


def write_batch(state: OutputState, rows: pd.DataFrame, batch: Sequence[Message], metadata: dict, threshold: float) -> tuple[int, int]:
    """Write one batch durably (parts per night, then the manifest per partition); rows and candidates written."""
    from earlyia.score.pipeline import METADATA_KEY, to_arrow

    meta = {METADATA_KEY: json.dumps(metadata, default=str).encode()}
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for m in batch:
        lo, hi = ranges.get((m.topic, m.partition), (m.offset, m.offset))
        ranges[(m.topic, m.partition)] = (min(lo, m.offset), max(hi, m.offset))
    n_rows = n_cand = 0
    files: dict[tuple[str, int], list[str]] = {k: [] for k in ranges}
    if len(rows):
        fresh = ~rows["alert_id"].astype(str).isin(state.alert_ids) | rows["alert_id"].isna() | (rows["alert_id"].astype(str) == "")
        rows = rows[fresh.to_numpy()]
        rows = rows.drop_duplicates("alert_id", keep="first") if rows["alert_id"].astype(bool).all() else rows
    for (topic, part), (lo, hi) in ranges.items():
        name = f"{_safe(topic)}-{part}-{lo}-{hi}"
        mine = rows[(rows["topic"] == topic) & (rows["partition"] == part)] if len(rows) else rows
        for night, grp in (mine.groupby("night", sort=True) if len(mine) else []):
            grp = grp.drop(columns=["night"])
            for kind, sub in (("scores", grp), ("candidates", grp[grp["passed"].to_numpy(bool) & (grp["score"] > threshold)])):
                if kind == "candidates" and not len(sub):
                    continue
                path = state.root / kind / f"night={night}" / f"{name}.parquet"
                sink = pa.BufferOutputStream()
                table = to_arrow(sub.reset_index(drop=True))
                pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **meta}), sink, compression="zstd")
                _fsync_write(path, sink.getvalue().to_pybytes())
                files[(topic, part)].append(str(path.relative_to(state.root)))
                if kind == "scores":
                    n_rows += len(sub)
                else:
                    n_cand += len(sub)
        manifest = {"topic": topic, "partition": part, "first_offset": lo, "last_offset": hi, "files": files[(topic, part)],
                    "written_at": datetime.now(UTC).isoformat(timespec="seconds")}
        _fsync_write(state.root / "_batches" / f"{name}.json", json.dumps(manifest).encode())
        state.written[(topic, part)] = max(state.written.get((topic, part), -1), hi)
    if len(rows):
        state.alert_ids.update(str(a) for a in rows["alert_id"] if a)
    return n_rows, n_cand


def _safe(topic: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", topic)


def run_stream(
    settings: KafkaSettings,
    model,
    out: str | Path,
    *,
    decoder: Decoder | None = None,
    batch_size: int = 5000,
    batch_seconds: float = 5.0,
    idle_exit: float | None = None,
    max_messages: int | None = None,
    progress_every: float = 10.0,
    log: Callable[[str], None] | None = None,
    consumer_factory: Callable[[dict], Any] | None = None,
) -> StreamReport:
    """Consume ``settings.topics``, score every alert with ``model`` and write it exactly once under ``out``.

    Stops after ``idle_exit`` seconds without a message, after ``max_messages`` messages, or on SIGINT/SIGTERM
    (the current batch is not committed; a restart resumes it). ``log`` receives the progress lines
    (alerts/s, lag per partition).
    """
    from earlyia.features import get_extractor
    from earlyia.score.pipeline import scores_metadata

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    decoder = decoder or Decoder()
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    extractor = get_extractor(model.card["extractor"])
    model.check_features(list(extractor.names))
    from earlyia.errors import ModelError

    try:
        threshold = float(model.threshold(20)["threshold"])
    except ModelError:  # a card without an operating point: candidates above 0.5
        threshold = 0.5
    if not np.isfinite(threshold):
        threshold = 0.5
    state = OutputState.load(out)
    report = StreamReport(removed=list(state.removed))
    if state.removed:
        say(f"removed {len(state.removed)} incomplete file(s) a stopped run left behind")
    meta = scores_metadata(model, extractor, stream={"topics": list(settings.topics), "group_id": settings.group_id})
    if consumer_factory is None:
        import confluent_kafka

        def consumer_factory(conf):
            return confluent_kafka.Consumer(conf)

    consumer = consumer_factory(settings.consumer_config())
    consumer.subscribe(list(settings.topics))
    t0 = time.perf_counter()
    last_msg = time.perf_counter()
    last_progress = t0
    try:
        while True:
            batch: list[Message] = []
            deadline = time.perf_counter() + batch_seconds
            while len(batch) < batch_size and time.perf_counter() < deadline:
                want = min(batch_size - len(batch), 1000)
                for m in consumer.consume(want, timeout=max(0.05, min(1.0, deadline - time.perf_counter()))):
                    if m.error() is not None:
                        if getattr(m.error(), "code", lambda: None)() == -191:  # partition EOF
                            continue
                        raise RemoteError(f"Kafka: {m.error()}")
                    batch.append(Message(m.topic(), m.partition(), m.offset(), m.key(), m.value()))
                if max_messages is not None and report.n_messages + len(batch) >= max_messages:
                    break
            now = time.perf_counter()
            if batch:
                last_msg = now
                todo = [m for m in batch if not state.already(m.topic, m.partition, m.offset)]
                report.n_skipped += len(batch) - len(todo)
                rows = score_messages(todo, model, decoder, extractor) if todo else pd.DataFrame()
                n_before = len(rows)
                n_rows, n_cand = write_batch(state, rows, batch, meta, threshold)
                report.n_duplicates += max(n_before - n_rows, 0) if len(rows) else 0
                _commit(consumer, batch)
                report.n_batches += 1
                report.n_messages += len(batch)
                report.n_rows += n_rows
                report.n_candidates += n_cand
            if now - last_progress >= progress_every and report.n_messages:
                say(_progress(report, now - t0, consumer))
                last_progress = now
            if max_messages is not None and report.n_messages >= max_messages:
                break
            if idle_exit is not None and not batch and now - last_msg >= idle_exit:
                break
    finally:
        report.seconds = time.perf_counter() - t0
        try:
            consumer.close()
        except (RuntimeError, _kafka_error()):  # closing a broken connection must not hide the real error
            pass
    say(_progress(report, report.seconds, None))
    return report


def _kafka_error() -> type[BaseException]:
    from confluent_kafka import KafkaException

    return KafkaException


def _commit(consumer, batch: Sequence[Message]) -> None:
    from confluent_kafka import TopicPartition

    last: dict[tuple[str, int], int] = {}
    for m in batch:
        last[(m.topic, m.partition)] = max(last.get((m.topic, m.partition), -1), m.offset)
    consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()], asynchronous=False)


def _progress(report: StreamReport, seconds: float, consumer) -> str:
    rate = report.n_messages / seconds if seconds > 0 else 0.0
    lag = ""
    if consumer is not None:
        try:
            parts = consumer.assignment()
            total = 0
            for tp in parts:
                lo, hi = consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
                pos = consumer.position([tp])[0].offset
                total += max(hi - (pos if pos >= 0 else lo), 0)
            lag = f", lag {total} message(s)"
        except (RuntimeError, _kafka_error()):  # the lag is informative only
            lag = ""
    return (f"{report.n_messages} message(s), {report.n_rows} row(s) written, {report.n_candidates} candidate(s), "
            f"{report.n_skipped} already written, {rate:,.0f} alerts/s{lag}")
