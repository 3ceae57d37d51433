"""Score alerts as they arrive from Kafka, exactly once, into Parquet partitioned by night.

``earlyia stream`` (this module's :func:`run_stream`) is a thin adapter: messages -> alert records
(:class:`Decoder`) -> the canonical light curves (the same readers as files) -> the one scoring core
(:func:`earlyia.score.pipeline.score_lightcurves`) -> SCORES parts. What it adds is the delivery
guarantee, built on the output directory itself:

1. a batch of messages is decoded and scored; a message that cannot be decoded, or an alert that
   cannot be scored, becomes a reason row (``passed`` False), never a lost batch; every message
   gives at least one row;
2. per Kafka partition, its rows are written per night
   (``scores/night=YYYY-MM-DD/<topic>-<partition>-<first>-<last>.parquet``, and the rows at or above
   the candidate threshold under ``candidates/``), each file atomically and flushed to disk (the
   parts of all the batch's partitions, each folder flushed once), then the partitions' offset files
   (``_offsets/<topic>-<partition>.json``: the last offset written);
3. only then are the offsets committed to Kafka.

A process killed at any moment (``kill -9`` included) restarts from Kafka's committed offsets: a
message at or below the offset file's offset is skipped, a part whose last offset is above it (a
batch killed half-way) is removed before anything else, and an alert already written (same alert
id, in the night's scores) is not written again (an alert sent twice, or on two topics). So no
alert is lost and none is written twice. One process writes to an output directory at a time (a
lock file refuses a second one).

Each alert is scored on its own packet (its history as the alert carries it), whatever else shares
its batch: the scores do not depend on how messages were batched, so a restart gives the same rows.

Messages: Fink's livestream (the alert's Avro schema as JSON in the message key, the alert
schemaless in the value, as fink-client reads them), the Confluent wire format (a zero byte, a
4-byte schema id and the schemaless alert; the schema from a Confluent-compatible schema registry or
a schema file), schemaless Avro with a given schema file, or an Avro container file per message.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import struct
import sys
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from earlyia.errors import ConfigError, EarlyIAError, InputError, ModelError, Problem, RemoteError
from earlyia.features import get_extractor
from earlyia.io import rubin
from earlyia.io.avro_columns import Program, compile_schema, decode_columns
from earlyia.io.fink import CANDIDATE_ALERT_FIELDS
from earlyia.io.ztf import (
    FORCED_FIELDS,
    POINT_FIELDS,
    lightcurves_from_alert_records,
    lightcurves_from_alert_table,
)
from earlyia.score.pipeline import problem_rows, score_lightcurves, scores_metadata
from earlyia.score.scores_file import METADATA_KEY, to_arrow

#: Nights split at this fraction of a day after 0h UTC (~17 h UTC: daytime in California and Chile).
NIGHT_SHIFT = 0.3
MJD_EPOCH = datetime(1858, 11, 17, tzinfo=UTC)
UNIX_EPOCH_MJD = 40587.0
ENV_PASSWORD = "EARLYIA_KAFKA_PASSWORD"
#: Columns the stream adds to the SCORES rows (where the alert came from).
ORIGIN_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset")
#: Nights whose alert ids are kept in memory (older nights are read back from disk when an alert
#: needs them).
NIGHTS_IN_MEMORY = 4
_PART = re.compile(r"^(?P<topic>.+)-(?P<partition>\d+)-(?P<first>\d+)-(?P<last>\d+)\.parquet$")
_OFFSETS = re.compile(r"^(?P<topic>.+)-(?P<partition>\d+)\.json$")
#: What decoding an arbitrary byte string with fastavro raises (besides earlyia's own errors).
_DECODE_ERRORS = (
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    OverflowError,
    StopIteration,
    struct.error,
    AttributeError,
)
#: Image stamps of an alert packet: never scored, dropped as soon as a message is decoded.
_CUTOUTS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")
#: librdkafka error names that mean the credentials were refused.
_AUTH_ERRORS = {
    "_AUTHENTICATION",
    "SASL_AUTHENTICATION_FAILED",
    "TOPIC_AUTHORIZATION_FAILED",
    "GROUP_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
}
#: librdkafka error names that mean the brokers cannot be reached.
_CONNECT_ERRORS = {"_ALL_BROKERS_DOWN", "_TRANSPORT", "_RESOLVE"}


# ---------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class KafkaSettings:
    """Where to consume from. With ``username`` and ``password`` the connection uses SASL
    SCRAM-SHA-512 over ``sasl_plaintext``, as Fink's livestream does (fink-client); the password
    never appears in any output.

    ``assign``: read every partition of the topics without joining the consumer group (offsets
    are still committed under ``group_id``); restarts then never wait for the group to rebalance.
    ``extra``: further librdkafka consumer properties (``session.timeout.ms``,
    ``ssl.ca.location``...)."""

    servers: str
    topics: tuple[str, ...]
    group_id: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    offset_reset: str = "earliest"
    assign: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    def check(self) -> None:
        if not self.servers or not str(self.servers).strip():
            raise ConfigError(
                "--bootstrap: give the Kafka bootstrap servers (host:port[,host:port]) or a "
                "--credentials file"
            )
        if not self.topics:
            raise ConfigError(
                "--topic: give at least one topic (or a --credentials file that lists them)"
            )
        if not self.group_id:
            raise ConfigError("--group: give a consumer group id (offsets are committed under it)")
        if (self.username is None) != (self.password is None):
            raise ConfigError(
                f"a username needs a password (from ${ENV_PASSWORD} or the --credentials "
                "file), and a password a username"
            )
        if self.offset_reset not in ("earliest", "latest"):
            raise ConfigError(
                f"offset reset must be 'earliest' or 'latest', got {self.offset_reset!r}"
            )
        bad = sorted(
            k
            for k in self.extra
            if k.startswith("sasl.") or k in ("enable.auto.commit", "enable.auto.offset.store")
        )
        if bad:
            raise ConfigError(
                f"--kafka-option {bad[0]}: set by earlyia itself (credentials come from "
                "--credentials; "
                "offsets are committed after the outputs are written)"
            )

    def consumer_config(self) -> dict[str, Any]:
        self.check()
        conf: dict[str, Any] = {
            "bootstrap.servers": self.servers,
            "group.id": self.group_id,
            "auto.offset.reset": self.offset_reset,
            "enable.auto.commit": False,  # committed only after the outputs are durable
            "enable.auto.offset.store": False,
            # librdkafka prefetches up to 64 MB per partition by default: a few MB keep memory flat
            # at full speed
            "queued.max.messages.kbytes": 8192,
        }
        conf.update(dict(self.extra))
        if self.username is not None:
            conf.update(
                {
                    "security.protocol": "sasl_plaintext",
                    "sasl.mechanism": "SCRAM-SHA-512",
                    "sasl.username": self.username,
                    "sasl.password": self.password,
                }
            )
        return conf

    def describe(self) -> str:
        """Where it connects, without the password."""
        who = f" as {self.username}" if self.username else ""
        return f"{self.servers}{who}, group {self.group_id}, topic(s) {', '.join(self.topics)}"

    @classmethod
    def from_fink_credentials(cls, path: str | Path, **overrides: Any) -> KafkaSettings:
        """Settings from a fink-client credentials file
        (``~/.finkclient/<survey>_credentials.yml``: ``servers``, ``groupid``, ``username``,
        ``password``, ``topics`` (a mapping, as ``finkctl topic subscribe`` writes it) or
        ``mytopics`` (a list, older clients)); ``overrides`` win when not None."""
        import yaml

        path = Path(path).expanduser()
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(
                f"--credentials {path}: cannot read the fink-client credentials "
                f"({type(exc).__name__})"
            ) from exc
        if not isinstance(doc, dict):
            raise ConfigError(
                f"--credentials {path}: not a fink-client credentials file (expected a YAML "
                "mapping with servers, "
                "groupid, username, topics)"
            )
        topics = doc.get("topics") or doc.get("mytopics") or []
        if isinstance(topics, str):
            topics = [topics]
        topics = tuple(str(t) for t in (topics.keys() if isinstance(topics, dict) else topics))
        password = doc.get("password")
        password = None if password in (None, "None", "") else str(password)
        username = doc.get("username")
        servers = doc.get("servers")
        values = {
            "servers": ",".join(s.strip() for s in str(servers or "").split(",") if s.strip()),
            "topics": topics,
            "group_id": str(doc.get("groupid") or doc.get("group_id") or "") or None,
            # fink-client uses SASL only when the file holds a password
            "username": str(username)
            if username not in (None, "") and password is not None
            else None,
            "password": password,
        }
        values.update({k: v for k, v in overrides.items() if v not in (None, (), [])})
        return cls(**values)


# ---------------------------------------------------------------------------- decoding
class Decoder:
    """Kafka message -> alert records (dicts), whatever the producer's convention (see the module
    docstring).

    ``schema_registry``: base URL of a Confluent-compatible registry (``GET /schemas/ids/<id>``);
    ``schema``: an Avro schema (``.avsc`` path or parsed dict) for schemaless messages without a
    schema in their key.
    """

    def __init__(
        self,
        *,
        schema_registry: str | None = None,
        schema: str | Path | Mapping | None = None,
        timeout: float = 10.0,
    ):
        import fastavro

        self._fastavro = fastavro
        self.registry = schema_registry.rstrip("/") if schema_registry else None
        self.timeout = timeout
        self._by_id: dict[int, Any] = {}
        self._by_key: dict[bytes, Any] = {}
        self._last_key: bytes | None = None
        self._last_schema = None
        self._fixed = None
        self._programs: dict[int, tuple[Any, Any]] = {}
        if schema is not None:
            if isinstance(schema, Mapping):
                doc, what = dict(schema), "--schema (given)"
            else:
                what = f"--schema {schema}"
                try:
                    doc = json.loads(Path(schema).read_text())
                except (OSError, UnicodeDecodeError, ValueError) as exc:
                    raise ConfigError(
                        f"{what}: cannot read the Avro schema ({type(exc).__name__}: {exc})"
                    ) from exc
            self._fixed = self._parse(doc, what, ConfigError)

    def _parse(self, doc, what: str, error=InputError):
        try:
            return self._fastavro.parse_schema(doc)
        except (
            self._fastavro.schema.SchemaParseException,
            self._fastavro.schema.UnknownType,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
        ) as exc:
            raise error(f"{what}: not an Avro schema ({type(exc).__name__}: {exc})") from exc

    def _registry_schema(self, schema_id: int):
        if schema_id in self._by_id:
            return self._by_id[schema_id]
        url = f"{self.registry}/schemas/ids/{schema_id}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                doc = json.loads(resp.read().decode())
            schema = (
                json.loads(doc["schema"]) if isinstance(doc.get("schema"), str) else doc["schema"]
            )
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # this id is unknown: the message is bad, not the registry
                raise InputError(f"schema id {schema_id} is not in the schema registry") from exc
            raise RemoteError(
                f"--schema-registry: cannot fetch schema id {schema_id} (HTTP {exc.code})",
                status=exc.code,
            ) from exc
        except (
            urllib.error.URLError,
            TimeoutError,
            OSError,
            ValueError,
            KeyError,
            TypeError,
        ) as exc:
            raise RemoteError(
                f"--schema-registry: cannot fetch schema id {schema_id} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        parsed = self._parse(schema, f"schema id {schema_id} of the registry")
        self._by_id[schema_id] = parsed
        return parsed

    def _key_schema(self, key: bytes):
        if (
            key == self._last_key
        ):  # Fink sends the same schema with every message: compare, do not re-parse
            return self._last_schema
        schema = self._by_key.get(key)
        if schema is None:
            try:
                doc = json.loads(key)
            except (UnicodeDecodeError, ValueError) as exc:
                raise InputError(
                    f"the message key is not a JSON Avro schema ({type(exc).__name__})"
                ) from exc
            schema = self._parse(doc, "the schema in the message key")
            if len(self._by_key) > 64:
                self._by_key.clear()
            self._by_key[key] = schema
        self._last_key, self._last_schema = key, schema
        return schema

    def _read(self, data: bytes, schema) -> dict:
        buf = io.BytesIO(data)
        rec = self._fastavro.schemaless_reader(buf, schema)
        if buf.tell() != len(data):
            raise InputError(
                f"{len(data) - buf.tell()} byte(s) left after the alert: not written with "
                "this schema"
            )
        return rec

    def schema_of(self, value: bytes | None, key: bytes | None) -> tuple[Any, bytes] | None:
        """The parsed writer schema and the schemaless payload of a message, when that needs no
        guess (Fink's key schema, or the wire format with a registry); None otherwise (the
        message is then decoded by ``__call__``)."""
        if not value or value[:4] == b"Obj\x01":
            return None
        try:
            if key and key.lstrip()[:1] == b"{":
                return self._key_schema(key), value
            if self.registry is not None and value[0] == 0 and len(value) > 5:
                return self._registry_schema(struct.unpack(">I", value[1:5])[0]), value[5:]
        except InputError:
            return None
        return None

    def program(self, schema):
        """The compiled column walk of a ZTF-like schema (``objectId`` and a ``candidate``
        record) or of a Rubin schema (a ``diaSource`` record:
        :func:`earlyia.io.rubin.rubin_program`), else None."""

        key = id(schema)
        if key not in self._programs:
            prog = None
            names = (
                {f.get("name") for f in schema.get("fields", [])}
                if isinstance(schema, dict)
                else set()
            )
            if {"objectId", "candidate"} <= names:
                try:
                    prog = compile_schema(schema, _wanted())
                except (ValueError, KeyError, TypeError):
                    prog = None
            elif "diaSource" in names:
                prog = rubin.rubin_program(schema)
            self._programs[key] = (
                schema,
                prog,
            )  # the schema is kept alive so that its id stays its own
        return self._programs[key][1]

    def __call__(self, value: bytes | None, key: bytes | None = None) -> list[dict]:
        if not value:
            raise InputError("empty message")
        if value[:4] == b"Obj\x01":  # an Avro container file: one or more alerts with their schema
            return [r for r in self._fastavro.reader(io.BytesIO(value)) if isinstance(r, dict)]
        if key and key.lstrip()[:1] == b"{":  # Fink: the alert's schema in the key
            return [self._read(value, self._key_schema(key))]
        if (
            value[0] == 0
            and len(value) > 5
            and (self.registry is not None or self._fixed is not None)
        ):
            schema_id = struct.unpack(">I", value[1:5])[0]
            if self.registry is not None:
                return [self._read(value[5:], self._registry_schema(schema_id))]
            try:  # a schema file and a zero first byte: the wire format, else plain schemaless Avro
                return [self._read(value[5:], self._fixed)]
            except (InputError, *_DECODE_ERRORS):
                pass
        if self._fixed is not None:
            return [self._read(value, self._fixed)]
        if value[0] == 0 and len(value) > 5:
            raise InputError(
                "message in the Kafka wire format (schema id "
                f"{struct.unpack('>I', value[1:5])[0]}): give --schema-registry or --schema"
            )
        raise InputError(
            "cannot decode: no schema in the message key, not an Avro file, and no --schema given"
        )


def _wanted() -> dict[str, set[str]]:
    """What the ZTF reader reads of a packet besides its top-level scalars."""

    points = set(POINT_FIELDS) | set(FORCED_FIELDS)
    return {
        "candidate": points | set(CANDIDATE_ALERT_FIELDS),
        "prv_candidates": points,
        "fp_hists": points,
    }


def records_to_lightcurves(records: Sequence[Mapping], source: str):
    """Alert records of any supported survey -> :class:`~earlyia.io.table.LightCurves` (the
    files' readers)."""

    if not records:
        raise InputError("no alert record", source=source)
    first = records[0]
    if "candidate" in first:
        return lightcurves_from_alert_records(list(records), source=source, survey="ZTF")
    if "diaSource" in first:
        return rubin.lightcurves_from_records(list(records), source=source)
    raise InputError(
        f"unrecognised alert record (fields {sorted(first)[:8]}...): neither ZTF nor Rubin",
        source=source,
    )


def _survey(rec: Mapping) -> str | None:
    if "candidate" in rec:
        return "ZTF"
    if "diaSource" in rec:
        return "LSST"
    return None


def _object_key(rec: Mapping) -> str:
    if rec.get("objectId") is not None:
        return str(rec["objectId"])
    for sub in ("diaObject", "diaSource"):
        inner = rec.get(sub)
        if isinstance(inner, Mapping) and inner.get("diaObjectId") is not None:
            return str(inner["diaObjectId"])
    return ""


def _has_object(rec: Mapping) -> bool:
    """A Rubin alert with a ``diaSource`` and a usable ``diaObjectId`` (not null, not 0) in
    ``diaObject`` or ``diaSource``."""
    src = rec.get("diaSource")
    if not isinstance(src, Mapping):
        return False
    for inner in (rec.get("diaObject"), src):
        if isinstance(inner, Mapping):
            try:
                if int(inner.get("diaObjectId") or 0) != 0:
                    return True
            except (TypeError, ValueError):
                continue
    return False


def _alert_keys(rec: Mapping) -> list[str]:
    """The ids a reader may give this alert (ZTF: candid; Rubin: diaSourceId or alertId)."""
    out = []
    for key in ("candid", "diaSourceId", "alertId"):
        if rec.get(key) is not None:
            out.append(str(rec[key]))
    for sub, key in (("candidate", "candid"), ("diaSource", "diaSourceId")):
        inner = rec.get(sub)
        if isinstance(inner, Mapping) and inner.get(key) is not None:
            out.append(str(inner[key]))
    return out


# ---------------------------------------------------------------------------- nights
def night_of(mjd: np.ndarray) -> np.ndarray:
    """The night of each observation time as 'YYYY-MM-DD': the UTC date of the evening it began
    (nights split at ~17 h UTC, daytime in California and Chile); 'unknown' without a time."""
    mjd = np.asarray(mjd, np.float64)
    ok = np.isfinite(mjd) & (np.abs(mjd) < 1e6)
    day = np.floor(np.where(ok, mjd, 0.0) + NIGHT_SHIFT) - 1
    out = np.full(len(mjd), "unknown", dtype=object)
    for d in np.unique(day[ok]):
        out[ok & (day == d)] = (MJD_EPOCH + timedelta(days=float(d))).strftime("%Y-%m-%d")
    return out


# ---------------------------------------------------------------------------- the output directory
def _fsync_write_all(files: Sequence[tuple[Path, bytes]]) -> None:
    """Write each ``(path, data)`` atomically and durably: every temporary file written and
    fsynced, renamed onto its path, then each folder fsynced once (not once per file). When this
    returns, all of them are on disk."""
    folders: dict[Path, None] = {}
    for path, data in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        folders[path.parent] = None
    for folder in folders:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _id_hashes(ids: Sequence[str]) -> np.ndarray:
    """64-bit hashes of alert ids (stable across runs: pandas' keyed hash with its fixed key)."""
    return pd.util.hash_array(np.asarray(ids, dtype=object)).astype(np.uint64)


class _NightIds:
    """The alert ids already written, per night, as sorted 64-bit hashes; the nights used least
    recently leave memory (and are read back from their parts when an alert of theirs comes
    again)."""

    def __init__(self, root: Path, keep: int = NIGHTS_IN_MEMORY):
        self.root = root
        self.keep = keep
        self._nights: OrderedDict[str, np.ndarray] = OrderedDict()

    def _load(self, night: str) -> np.ndarray:
        ids: list[str] = []
        for part in sorted((self.root / "scores" / f"night={night}").glob("*.parquet")):
            try:
                col = pq.read_table(part, columns=["alert_id"]).column("alert_id").to_pylist()
            except (OSError, pa.ArrowException) as exc:
                raise ConfigError(
                    f"{part}: unreadable part in the stream's output ({exc}); move it away "
                    "and restart"
                ) from exc
            ids.extend(str(i) for i in col if i)
        return np.sort(_id_hashes(ids)) if ids else np.zeros(0, np.uint64)

    def get(self, night: str) -> np.ndarray:
        if night in self._nights:
            self._nights.move_to_end(night)
            return self._nights[night]
        arr = self._load(night)
        self._nights[night] = arr
        while len(self._nights) > self.keep:
            self._nights.popitem(last=False)
        return arr

    def seen(self, night: str, hashes: np.ndarray) -> np.ndarray:
        arr = self.get(night)
        if not len(arr) or not len(hashes):
            return np.zeros(len(hashes), bool)
        pos = np.minimum(np.searchsorted(arr, hashes), len(arr) - 1)
        return arr[pos] == hashes

    def add(self, night: str, hashes: np.ndarray) -> None:
        arr = self.get(night)
        self._nights[night] = np.sort(np.concatenate([arr, hashes]), kind="stable")

    def __len__(self) -> int:
        return sum(len(a) for a in self._nights.values())


@dataclass
class OutputState:
    """What the output directory holds durably: the last offset written per (topic, partition),
    the alert ids written per night, and the cleanup of what a killed process left behind."""

    root: Path
    written: dict[tuple[str, int], int] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    ids: _NightIds | None = None

    @classmethod
    def load(cls, root: str | Path) -> OutputState:
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise ConfigError(f"--out {root}: is a file; give a directory for the stream's outputs")
        state = cls(root, ids=_NightIds(root))
        if not root.exists():
            return state
        for off in sorted((root / "_offsets").glob("*.json")):
            m = _OFFSETS.match(off.name)
            if not m:
                continue
            try:
                doc = json.loads(off.read_text())
                state.written[(str(doc["topic"]), int(doc["partition"]))] = int(doc["last_offset"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(
                    f"{off}: unreadable offset file in the stream's output ({exc}); it is "
                    "written atomically, "
                    "so something else changed it: restore it or start a new --out"
                ) from exc
        for tmp in root.rglob(".*.tmp"):  # temporaries of a killed process
            tmp.unlink(missing_ok=True)
            state.removed.append(str(tmp))
        for kind in ("scores", "candidates"):
            for part in root.glob(f"{kind}/night=*/*.parquet"):
                m = _PART.match(part.name)
                if m is None:
                    continue
                if int(m["last"]) > state.written.get((m["topic"], int(m["partition"])), -1):
                    part.unlink(
                        missing_ok=True
                    )  # a batch killed before its offsets were recorded: read again from Kafka
                    state.removed.append(str(part))
        return state

    def already(self, topic: str, partition: int, offset: int) -> bool:
        return offset <= self.written.get((topic, partition), -1)


def lock_output(root: str | Path):
    """Hold ``<root>/.lock`` for this process (released when it exits, even killed); a second
    writer is refused."""
    import fcntl

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fh = open(root / ".lock", "a+")  # noqa: SIM115 - held open for the process's life
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.close()
        raise ConfigError(
            f"--out {root}: another earlyia stream is writing there; stop it or give "
            "another directory"
        ) from exc
    return fh


# ---------------------------------------------------------------------------- one batch
@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


def _rounds(items: list[tuple[int, Mapping]]) -> list[list[tuple[int, Mapping]]]:
    """Split records so that no object occurs twice in a round: each alert is then scored on its
    own packet."""
    rounds: list[list[tuple[int, Mapping]]] = []
    seen: dict[str, int] = {}
    for item in items:
        key = _object_key(item[1])
        k = seen.get(key, 0) if key else 0
        seen[key] = k + 1
        while len(rounds) <= k:
            rounds.append([])
        rounds[k].append(item)
    return rounds


def _score_round(
    items: list[tuple[int, Mapping]], model, extractor, source: str
) -> tuple[list[pd.DataFrame], list[tuple[int, str]]]:
    """Score records whose objects are distinct; rows carry ``_msg`` (the message index). On a
    reader failure each record is tried alone, so one bad alert costs only its own row."""

    try:
        lc = records_to_lightcurves([r for _, r in items], source=source)
    except ConfigError:
        raise
    except (EarlyIAError, *_DECODE_ERRORS) as exc:
        if len(items) == 1:
            return [], [(items[0][0], f"unusable alert ({type(exc).__name__}: {exc})")]
        frames, problems = [], []
        for item in items:
            f, p = _score_round([item], model, extractor, source)
            frames += f
            problems += p
        return frames, problems
    df = score_lightcurves(lc, model, extractor)
    by_alert: dict[str, int] = {}
    by_object: dict[str, int] = {}
    for i, rec in items:
        for k in _alert_keys(rec):
            by_alert.setdefault(k, i)
        by_object.setdefault(_object_key(rec), i)
    alert_ids = df["alert_id"].astype(str).to_numpy(object)
    object_ids = df["object_id"].astype(str).to_numpy(object)
    msg = np.array(
        [by_alert.get(a, by_object.get(o, -1)) for a, o in zip(alert_ids, object_ids, strict=True)],
        np.int64,
    )
    df["_msg"] = msg
    problems = [
        (by_object.get(str(p.object_id), items[0][0] if len(items) == 1 else -1), p.reason)
        for p in lc.problems
    ]
    lost = [(i, r) for i, r in problems if i < 0]
    # a reader problem that names no object of this round: charge it to every message of the round
    if lost:
        problems = [(i, r) for i, r in problems if i >= 0] + [
            (i, r) for i, _ in items for _, r in lost
        ]
    return [df], problems


def _score_columnar(
    messages: Sequence[Message],
    model,
    extractor,
    decoder: Decoder,
    frames: list[pd.DataFrame],
    problems: list[tuple[int, str]] | None = None,
) -> set[int]:
    """Score the ZTF messages whose schema is known without decoding them one by one: their bytes
    go to Arrow columns in one compiled pass (:mod:`earlyia.io.avro_columns`), then through the
    Arrow reader of ZTF alert tables; one alert per object per round, as the record path. Returns
    the messages left for the record path (other conventions, Rubin, and any message the columnar
    pass could not read exactly)."""

    groups: dict[int, tuple[Any, list[int], list[bytes]]] = {}
    rest: set[int] = set()
    for i, msg in enumerate(messages):
        found = decoder.schema_of(msg.value, msg.key)
        prog = decoder.program(found[0]) if found is not None else None
        if prog is None:
            rest.add(i)
            continue
        g = groups.setdefault(id(prog), (prog, [], []))
        g[1].append(i)
        g[2].append(found[1])
    for prog, idx, payloads in groups.values():
        if not isinstance(prog, Program):  # a Rubin schema
            rest |= _score_rubin_columnar(
                messages, prog, idx, payloads, model, extractor, frames, problems
            )
            continue
        try:
            table, bad = decode_columns(prog, payloads)
        except (ValueError, TypeError, IndexError, pa.ArrowException):
            rest.update(idx)
            continue
        rest.update(i for i, b in zip(idx, bad, strict=True) if b)
        good = np.flatnonzero(~bad)
        if not len(good):
            continue
        if len(good) < len(bad):
            table = table.take(pa.array(good))
        msg_of = np.asarray(idx, np.int64)[good]
        oids = table.column("objectId").to_pylist()
        seen: dict[object, int] = {}
        round_of = np.zeros(len(oids), np.int64)
        for k, o in enumerate(oids):
            round_of[k] = seen.get(o, 0)
            seen[o] = round_of[k] + 1
        for r in range(int(round_of.max()) + 1 if len(round_of) else 0):
            sel = np.flatnonzero(round_of == r)
            sub = table if len(sel) == table.num_rows else table.take(pa.array(sel))
            try:
                lc = lightcurves_from_alert_table(sub, source=f"stream:ZTF:{r}")
            except (EarlyIAError, *_DECODE_ERRORS, pa.ArrowException):
                rest.update(
                    int(msg_of[k]) for k in sel
                )  # the record path says which alert is at fault
                continue
            if len(lc.alerts) != len(sel) or (lc.problems and problems is None):
                rest.update(int(msg_of[k]) for k in sel)
                continue
            df = score_lightcurves(lc, model, extractor)
            by_alert = (
                {
                    str(c): int(msg_of[k])
                    for k, c in zip(sel, sub.column("candid").to_pylist(), strict=True)
                    if c is not None
                }
                if "candid" in sub.column_names
                else {}
            )
            by_object = {
                str(o): int(msg_of[k])
                for k, o in zip(sel, sub.column("objectId").to_pylist(), strict=True)
            }
            df["_msg"] = [
                by_alert.get(a, by_object.get(o, -1))
                for a, o in zip(
                    df["alert_id"].astype(str), df["object_id"].astype(str), strict=True
                )
            ]
            if (df["_msg"] < 0).any():
                rest.update(int(msg_of[k]) for k in sel)
                continue
            for p in (
                lc.problems
            ):  # e.g. forced-photometry points left out: a reason row beside the alert's row
                i = by_object.get(str(p.object_id), -1)
                problems.extend(
                    [(i, p.reason)] if i >= 0 else [(int(msg_of[k]), p.reason) for k in sel]
                )
            frames.append(df)
            for k in sel:
                m = messages[int(msg_of[k])]
                m.key = m.value = None
    return rest


def _score_rubin_columnar(
    messages: Sequence[Message],
    prog,
    idx: list[int],
    payloads: list[bytes],
    model,
    extractor,
    frames: list[pd.DataFrame],
    problems: list[tuple[int, str]] | None,
) -> set[int]:
    """:func:`_score_columnar` for Rubin messages of one schema: the columnar walk, then
    :func:`earlyia.io.rubin.lightcurves_from_columns` (the records' reader's table), one alert
    per object per round as the record path. Returns the messages left for the record path: those
    the walk cannot read exactly, the alerts without an object (the record path gives their
    reason row), and any round whose alerts do not all give a row."""

    rest: set[int] = set()
    try:
        table, bad = decode_columns(prog.program, payloads)
    except (ValueError, TypeError, IndexError, pa.ArrowException):
        return set(idx)
    n = table.num_rows

    def ids(name: str, field_name: str | None = None) -> list:
        if name not in table.column_names:
            return [None] * n
        col = table.column(name).combine_chunks()
        if field_name is None:
            return col.to_pylist()
        if not pa.types.is_struct(col.type) or col.type.get_field_index(field_name) < 0:
            return [None] * n
        return pc.struct_field(col, [col.type.get_field_index(field_name)]).to_pylist()

    dob_obj, src_obj, src_sid = (
        ids("diaObject", "diaObjectId"),
        ids("diaSource", "diaObjectId"),
        ids("diaSource", "diaSourceId"),
    )
    top_sid, top_alert = ids("diaSourceId"), ids("alertId")
    has_src = np.zeros(n, bool)
    if "diaSource" in table.column_names:
        has_src = (
            table.column("diaSource").combine_chunks().is_valid().to_numpy(zero_copy_only=False)
        )
    keep = []
    for k in range(n):
        if (
            not bad[k]
            and has_src[k]
            and (rubin._valid_id(dob_obj[k]) or rubin._valid_id(src_obj[k])) is not None
        ):
            keep.append(k)
        # undecodable, or no object (a solar-system alert): the record path gives its row and reason
        else:
            rest.add(idx[k])
    if not keep:
        return rest
    # the record path's keys: the object (_object_key) and the alert's ids (_alert_keys)
    obj_key = [
        str(dob_obj[k])
        if dob_obj[k] is not None
        else (str(src_obj[k]) if src_obj[k] is not None else "")
        for k in keep
    ]
    alert_keys = [
        [str(v) for v in (top_sid[k], top_alert[k], src_sid[k]) if v is not None] for k in keep
    ]
    table = table.take(pa.array(keep))
    msg_of = np.asarray(idx, np.int64)[keep]
    seen: dict[str, int] = {}
    round_of = np.zeros(len(keep), np.int64)
    for j, o in enumerate(obj_key):
        round_of[j] = seen.get(o, 0) if o else 0
        seen[o] = seen.get(o, 0) + 1
    for r in range(int(round_of.max()) + 1):
        sel = np.flatnonzero(round_of == r)
        sub = table if len(sel) == table.num_rows else table.take(pa.array(sel))
        try:
            lc = rubin.lightcurves_from_columns(sub, prog, source=f"stream:LSST:{r}")
        except (EarlyIAError, *_DECODE_ERRORS, pa.ArrowException):
            lc = None  # the record path says which alert is at fault
        if lc is None or len(lc.alerts) != len(sel) or (lc.problems and problems is None):
            rest.update(int(msg_of[j]) for j in sel)
            continue
        df = score_lightcurves(lc, model, extractor)
        by_alert: dict[str, int] = {}
        by_object: dict[str, int] = {}
        for j in sel:
            for a in alert_keys[j]:
                by_alert.setdefault(a, int(msg_of[j]))
            by_object.setdefault(obj_key[j], int(msg_of[j]))
        df["_msg"] = [
            by_alert.get(a, by_object.get(o, -1))
            for a, o in zip(df["alert_id"].astype(str), df["object_id"].astype(str), strict=True)
        ]
        if (df["_msg"] < 0).any():
            rest.update(int(msg_of[j]) for j in sel)
            continue
        for p in lc.problems:  # points left out: a reason row beside the alert's row
            i = by_object.get(str(p.object_id), -1)
            problems.extend(
                [(i, p.reason)] if i >= 0 else [(int(msg_of[j]), p.reason) for j in sel]
            )
        frames.append(df)
        for j in sel:
            m = messages[int(msg_of[j])]
            m.key = m.value = None
    return rest


def score_messages(
    messages: Sequence[Message], model, decoder: Decoder, extractor=None
) -> pd.DataFrame:
    """SCORES rows of a batch of messages, with :data:`ORIGIN_COLUMNS` and ``night``; an
    undecodable message or an unusable alert is a reason row, never an exception, and every
    message gives at least one row. The messages' ``key`` and ``value`` are released once
    decoded."""

    if extractor is None:
        extractor = get_extractor(model.card["extractor"])
    names = list(extractor.names)
    by_survey: dict[str, list[tuple[int, Mapping]]] = {}
    problems: list[tuple[int, str]] = []
    frames: list[pd.DataFrame] = []
    slow = _score_columnar(messages, model, extractor, decoder, frames, problems)
    for i, msg in enumerate(messages):
        if i not in slow:
            continue
        try:
            records = decoder(msg.value, msg.key)
        except (InputError, *_DECODE_ERRORS) as exc:
            problems.append((i, f"undecodable message ({type(exc).__name__}: {exc})"))
            continue
        finally:
            msg.key = msg.value = (
                # the raw bytes are no longer needed: memory stays that of one batch of records
                None
            )
        for rec in records:
            if isinstance(rec, dict):
                for name in _CUTOUTS:
                    rec.pop(name, None)
        if not records:
            problems.append((i, "the message holds no alert"))
        for rec in records:
            survey = _survey(rec) if isinstance(rec, Mapping) else None
            if survey is None:
                fields = sorted(rec)[:6] if isinstance(rec, Mapping) else type(rec).__name__
                problems.append(
                    (i, f"unrecognised alert record (fields {fields}): neither ZTF nor Rubin")
                )
                continue
            by_survey.setdefault(survey, []).append((i, rec))
    for survey, items in by_survey.items():
        # a Rubin alert without an object (a solar-system object's) is read alone: its reason row is
        # its own, whatever shares its batch (in a round, a reason that names no object of the round
        # is charged to all its messages)
        alone = [survey == "LSST" and not _has_object(rec) for _, rec in items]
        for item, solo in zip(items, alone, strict=True):
            if solo:
                f, p = _score_round([item], model, extractor, source=f"stream:{survey}")
                frames += f
                problems += p
        for k, chunk in enumerate(
            _rounds([item for item, solo in zip(items, alone, strict=True) if not solo])
        ):
            f, p = _score_round(chunk, model, extractor, source=f"stream:{survey}:{k}")
            frames += f
            problems += p
    frames = [f for f in frames if len(f)]
    covered = set()
    for f in frames:
        covered.update(int(i) for i in f["_msg"])
    problems += [
        (i, "the alert gave no row (no usable photometry)")
        for i in range(len(messages))
        if i not in covered and i not in {j for j, _ in problems}
    ]
    if problems:
        prob = problem_rows(
            [Problem(messages[i].where if i >= 0 else "", None, r) for i, r in problems], names
        )
        prob["_msg"] = np.array([i for i, _ in problems], np.int64)
        frames.append(prob)
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    idx = out.pop("_msg").to_numpy(np.int64)
    known = idx >= 0
    safe = np.where(known, idx, 0)
    mjd = out["mjd"].to_numpy(np.float64).copy()
    stamp = np.array(
        [
            np.nan
            if m.timestamp_ms is None or m.timestamp_ms <= 0
            else m.timestamp_ms / 86_400_000.0 + UNIX_EPOCH_MJD
            for m in messages
        ],
        np.float64,
    )[safe]
    no_time = ~np.isfinite(mjd) & known
    mjd[no_time] = stamp[
        no_time
    ]  # a reason row without an alert time: the night the message was sent
    added = {
        "kafka_topic": np.where(
            known, np.array([m.topic for m in messages], dtype=object)[safe], ""
        ),
        "kafka_partition": np.where(
            known, np.array([m.partition for m in messages], np.int64)[safe], -1
        ),
        "kafka_offset": np.where(known, np.array([m.offset for m in messages], np.int64)[safe], -1),
        "night": night_of(mjd),
    }
    # added at once: the rows of a wide model (hundreds of feature columns) are many blocks, and a
    # column set one by one on such a frame warns (and copies)
    return pd.concat(
        [
            out.drop(columns=[c for c in added if c in out.columns]),
            pd.DataFrame(added, index=out.index),
        ],
        axis=1,
    )


# ---------------------------------------------------------------------------- writing
@dataclass
class StreamReport:
    n_messages: int = 0
    n_rows: int = 0
    n_candidates: int = 0
    n_problems: int = 0
    n_skipped: int = 0
    n_duplicates: int = 0
    n_batches: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    threshold: float = float("nan")
    removed: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.n_messages / self.seconds if self.seconds > 0 else float("nan")


def _part_name(topic: str, partition: int, lo: int, hi: int) -> str:
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', topic)}-{partition}-{lo}-{hi}"


def _offsets_name(topic: str, partition: int) -> str:
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', topic)}-{partition}"


def _table_bytes(table: pa.Table, meta: dict[bytes, bytes]) -> bytes:
    sink = pa.BufferOutputStream()
    # snappy: a part of a few hundred rows and ~100 columns is written 3x faster than with zstd, ~6
    # % larger
    pq.write_table(
        table.replace_schema_metadata({**(table.schema.metadata or {}), **meta}),
        sink,
        compression="snappy",
    )
    return sink.getvalue().to_pybytes()


def write_batch(
    state: OutputState,
    rows: pd.DataFrame,
    batch: Sequence[Message],
    metadata: dict,
    threshold: float,
) -> tuple[int, int, int]:
    """Write one batch durably: per partition its parts per night, then its offset file. Returns
    the rows and candidates written and the duplicate alerts dropped (already written, or twice
    in the batch)."""

    meta = {METADATA_KEY: json.dumps(metadata, default=str).encode()}
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for m in batch:
        lo, hi = ranges.get((m.topic, m.partition), (m.offset, m.offset))
        ranges[(m.topic, m.partition)] = (min(lo, m.offset), max(hi, m.offset))
    n_dup = 0
    if len(rows):
        ids = rows["alert_id"].fillna("").astype(str).to_numpy(object)
        has_id = ids != ""
        hashes = _id_hashes(ids)
        nights = rows["night"].to_numpy(object)
        keep = np.ones(len(rows), bool)
        keep[has_id] = (
            ~pd.Series(hashes[has_id]).duplicated().to_numpy()
        )  # twice in this batch: the first stays
        for night in pd.unique(nights[has_id]):
            sel = np.flatnonzero(has_id & (nights == night))
            keep[sel[state.ids.seen(night, hashes[sel])]] = False
        n_dup = int((~keep).sum())
        rows = rows[keep]
    n_rows = n_cand = 0
    table = None
    if len(rows):
        table = to_arrow(
            rows.drop(columns=["night"]).reset_index(drop=True)
        )  # once per batch; parts are slices of it
        r_topic = rows["kafka_topic"].to_numpy(object)
        r_part = rows["kafka_partition"].to_numpy(np.int64)
        r_night = rows["night"].to_numpy(object)
        r_cand = rows["passed"].to_numpy(bool) & (rows["score"].to_numpy(np.float64) >= threshold)
        r_ids = rows["alert_id"].fillna("").astype(str).to_numpy(object)
    parts: list[
        tuple[Path, bytes]
    ] = []  # every partition's parts, durable before any offset file says so
    offsets: list[tuple[Path, bytes]] = []
    new_ids: list[tuple[str, np.ndarray]] = []
    done: dict[tuple[str, int], int] = {}
    for (topic, part), (lo, hi) in ranges.items():
        if hi <= state.written.get((topic, part), -1):
            continue  # everything of this partition was written before
        name = _part_name(topic, part, lo, hi)
        mine = (
            np.flatnonzero((r_topic == topic) & (r_part == part))
            if table is not None
            else np.zeros(0, np.int64)
        )
        for night in sorted(set(r_night[mine])) if len(mine) else []:
            idx = mine[r_night[mine] == night]
            cand = idx[r_cand[idx]]
            for kind, sel in (("scores", idx), ("candidates", cand)):
                if kind == "candidates" and not len(sel):
                    continue
                parts.append(
                    (
                        state.root / kind / f"night={night}" / f"{name}.parquet",
                        _table_bytes(table.take(pa.array(sel)), meta),
                    )
                )
            ids = r_ids[idx]
            new_ids.append((night, _id_hashes(ids[ids != ""])))
            n_rows += len(idx)
            n_cand += len(cand)
        doc = {
            "topic": topic,
            "partition": part,
            "last_offset": hi,
            "batch_first_offset": lo,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        offsets.append(
            (
                state.root / "_offsets" / f"{_offsets_name(topic, part)}.json",
                json.dumps(doc).encode(),
            )
        )
        done[(topic, part)] = hi
    _fsync_write_all(
        parts
    )  # a kill before the offset files leaves parts beyond them: removed at the restart
    _fsync_write_all(offsets)
    for night, hashes in new_ids:
        state.ids.add(night, hashes)
    state.written.update(done)
    return n_rows, n_cand, n_dup


# ---------------------------------------------------------------------------- the consumer loop
def candidate_threshold(model, threshold: float | None = None) -> float:
    """The score from which a scored alert is a candidate: ``threshold`` when given, else the
    model card's (purity 0.8 within 20 detections at the training prevalence), else 0.5 for a
    card without one."""

    if threshold is not None:
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"--min-score must be within [0, 1], got {threshold}")
        return float(threshold)
    try:
        value = float(model.threshold(20)["threshold"])
    except ModelError:
        return 0.5
    return value if np.isfinite(value) else 0.5


class _KafkaErrors:
    """librdkafka's asynchronous errors, kept to turn the fatal ones into one clear message."""

    def __init__(self):
        self.auth: str | None = None
        self.connect: str | None = None
        self.other: list[str] = []

    def __call__(self, err) -> None:
        name = err.name() if hasattr(err, "name") else str(err)
        text = err.str() if hasattr(err, "str") else str(err)
        if name in _AUTH_ERRORS or "SASL" in text or "uthentication" in text:
            self.auth = text
        elif name in _CONNECT_ERRORS:
            self.connect = text
        else:
            self.other = [*self.other[-4:], f"{name}: {text}"]


def _consumer(settings: KafkaSettings, errors: _KafkaErrors, consumer_factory):
    import logging

    conf = settings.consumer_config()
    conf["error_cb"] = errors
    log = logging.getLogger("earlyia.stream.kafka")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    conf["logger"] = (
        log  # librdkafka's own lines stay out of the progress output; its errors reach error_cb
    )
    if consumer_factory is not None:
        return consumer_factory(conf)
    import confluent_kafka

    try:
        return confluent_kafka.Consumer(conf)
    except confluent_kafka.KafkaException as exc:
        raise ConfigError(
            f"Kafka consumer settings refused: {exc.args[0].str() if exc.args else exc}"
        ) from exc


def _start(consumer, settings: KafkaSettings) -> None:
    from confluent_kafka import KafkaException, TopicPartition

    if not settings.assign:
        consumer.subscribe(list(settings.topics))
        return
    try:
        md = consumer.list_topics(timeout=10)
    except KafkaException as exc:
        raise RemoteError(f"Kafka: cannot list the topics of {settings.servers} ({exc})") from exc
    parts = []
    for t in settings.topics:
        if t not in md.topics or md.topics[t].error is not None:
            raise _unknown_topic(t, md)
        parts += [TopicPartition(t, p) for p in sorted(md.topics[t].partitions)]
    committed = consumer.committed(parts, timeout=10)
    consumer.assign(committed)  # offsets not committed yet start from auto.offset.reset


def _unknown_topic(topic: str, md) -> ConfigError:
    names = sorted(n for n in (md.topics if md is not None else {}) if not n.startswith("__"))
    known = (
        f"; the broker has: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''}"
        if names
        else ""
    )
    return ConfigError(
        f"--topic {topic}: no such topic on the broker (or not readable with these "
        f"credentials){known}"
    )


def run_stream(
    settings: KafkaSettings,
    model,
    out: str | Path,
    *,
    decoder: Decoder | None = None,
    batch_size: int = 1000,
    batch_seconds: float = 2.0,
    idle_exit: float | None = None,
    max_messages: int | None = None,
    threshold: float | None = None,
    progress_every: float = 10.0,
    connect_timeout: float = 30.0,
    log: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    consumer_factory: Callable[[dict], Any] | None = None,
) -> StreamReport:
    """Consume ``settings.topics``, score every alert with ``model`` and write it exactly once under
    ``out``.

    A batch closes at ``batch_size`` messages or ``batch_seconds`` after its first message. Stops
    after ``idle_exit`` seconds without a message, after ``max_messages`` messages, or when
    ``should_stop()`` turns true (between batches; a batch in progress is finished and committed
    first). ``log`` receives the progress lines (alerts/s, lag), every ``progress_every`` seconds
    and at the end.
    """

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    if max_messages is not None and max_messages < 1:
        raise ConfigError(f"--max-alerts must be >= 1, got {max_messages}")
    if idle_exit is not None and idle_exit <= 0:
        raise ConfigError(f"--idle-timeout must be > 0 seconds, got {idle_exit}")
    settings.check()
    decoder = decoder or Decoder()
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    extractor = get_extractor(model.card["extractor"])
    model.check_features(list(extractor.names))
    threshold = candidate_threshold(model, threshold)
    lock = lock_output(out)
    try:
        state = OutputState.load(out)
        report = StreamReport(removed=list(state.removed), threshold=threshold)
        if state.removed:
            say(
                f"earlyia stream: removed {len(state.removed)} file(s) of a batch a stopped "
                "run left unfinished (read again from Kafka)"
            )
        meta = scores_metadata(
            model,
            extractor,
            stream={
                "topics": list(settings.topics),
                "group_id": settings.group_id,
                "candidate_threshold": threshold,
            },
        )
        errors = _KafkaErrors()
        consumer = _consumer(settings, errors, consumer_factory)
        try:
            _loop(
                consumer,
                settings,
                state,
                report,
                model,
                extractor,
                decoder,
                meta,
                errors,
                batch_size=batch_size,
                batch_seconds=batch_seconds,
                idle_exit=idle_exit,
                max_messages=max_messages,
                progress_every=progress_every,
                connect_timeout=connect_timeout,
                say=say,
                should_stop=should_stop or (lambda: False),
            )
        finally:
            _close(consumer)
    finally:
        lock.close()
    say(_progress(report, None))
    return report


def _close(consumer) -> None:
    from confluent_kafka import KafkaException

    with contextlib.suppress(
        RuntimeError, KafkaException
    ):  # closing a broken connection must not hide the real error
        consumer.close()


def _loop(
    consumer,
    settings,
    state,
    report,
    model,
    extractor,
    decoder,
    meta,
    errors,
    *,
    batch_size,
    batch_seconds,
    idle_exit,
    max_messages,
    progress_every,
    connect_timeout,
    say,
    should_stop,
) -> None:
    from confluent_kafka import KafkaError

    _start(consumer, settings)
    t0 = time.perf_counter()
    c0 = time.process_time()
    last_msg = t0
    last_progress = t0
    assigned_at = None
    while True:
        batch: list[Message] = []
        first_at = None
        while len(batch) < batch_size:
            now = time.perf_counter()
            if first_at is not None and now - first_at >= batch_seconds:
                break
            room = batch_size - len(batch)
            if max_messages is not None:
                room = min(room, max_messages - report.n_messages - len(batch))
                if room <= 0:
                    break
            wait = (
                0.5 if first_at is None else max(0.01, min(0.5, batch_seconds - (now - first_at)))
            )
            msgs = consumer.consume(min(room, 1000), timeout=wait)
            if errors.auth:
                raise ConfigError(
                    f"Kafka refused the credentials ({settings.describe()}): {errors.auth}; "
                    "check username and "
                    "password in --credentials (or $" + ENV_PASSWORD + ")"
                )
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                        raise _unknown_topic(m.topic() or "?", _metadata(consumer))
                    if err.code() in (
                        KafkaError.TOPIC_AUTHORIZATION_FAILED,
                        KafkaError.GROUP_AUTHORIZATION_FAILED,
                    ):
                        raise ConfigError(
                            f"Kafka: not authorised ({err.str()}); check the topic and "
                            "group your credentials allow "
                            f"({settings.describe()})"
                        )
                    raise RemoteError(f"Kafka: {err.str()} ({settings.describe()})")
                ts = m.timestamp()
                batch.append(
                    Message(
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        m.key(),
                        m.value(),
                        ts[1] if ts and ts[0] else None,
                    )
                )
            if msgs:
                if first_at is None:
                    first_at = time.perf_counter()
            elif first_at is None:
                break  # nothing arrived within the wait: check the stop conditions
        now = time.perf_counter()
        if batch:
            last_msg = now
            todo = [m for m in batch if not state.already(m.topic, m.partition, m.offset)]
            report.n_skipped += len(batch) - len(todo)
            rows = score_messages(todo, model, decoder, extractor) if todo else pd.DataFrame()
            n_rows, n_cand, n_dup = write_batch(state, rows, batch, meta, report.threshold)
            _commit(consumer, batch)
            report.n_batches += 1
            report.n_messages += len(batch)
            report.n_rows += n_rows
            report.n_candidates += n_cand
            report.n_duplicates += n_dup
            if len(rows):
                report.n_problems += int(
                    (
                        ~rows["passed"].to_numpy(bool)
                        & (rows["alert_id"].fillna("").astype(str) == "")
                    ).sum()
                )
        report.seconds = now - t0
        report.cpu_seconds = time.process_time() - c0
        if now - last_progress >= progress_every:
            say(_progress(report, consumer))
            last_progress = now
        if max_messages is not None and report.n_messages >= max_messages:
            return
        if should_stop():
            return
        if assigned_at is None:
            if _assigned(consumer):
                assigned_at = last_msg = now  # the idle clock starts once partitions are ours
            elif now - t0 >= connect_timeout:
                if errors.connect:
                    raise RemoteError(
                        f"Kafka: cannot reach {settings.servers} after "
                        f"{connect_timeout:.0f} s ({errors.connect}); "
                        "check --bootstrap (or servers in --credentials)"
                    )
                raise RemoteError(
                    f"Kafka: no partition of {', '.join(settings.topics)} assigned to group "
                    f"{settings.group_id} after "
                    f"{connect_timeout:.0f} s (another consumer of the group may hold them)"
                )
            continue
        if idle_exit is not None and not batch and now - last_msg >= idle_exit:
            return


def _assigned(consumer) -> bool:
    from confluent_kafka import KafkaException

    try:
        return bool(consumer.assignment())
    except (KafkaException, RuntimeError):
        return False


def _metadata(consumer):
    from confluent_kafka import KafkaException

    try:
        return consumer.list_topics(timeout=5)
    except (KafkaException, RuntimeError):
        return None


def _commit(consumer, batch: Sequence[Message]) -> None:
    """Commit the batch's next offsets; a refused commit is only noted: the output directory
    already holds the batch, and a restart skips what it wrote."""
    from confluent_kafka import KafkaException, TopicPartition

    last: dict[tuple[str, int], int] = {}
    for m in batch:
        last[(m.topic, m.partition)] = max(last.get((m.topic, m.partition), -1), m.offset)
    try:
        consumer.commit(
            offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()], asynchronous=False
        )
    except KafkaException as exc:
        print(
            f"earlyia stream: note: offset commit refused ({exc}); the outputs hold the "
            "batch, a restart skips it",
            file=sys.stderr,
            flush=True,
        )


def _lag(consumer) -> int | None:
    from confluent_kafka import KafkaException

    try:
        total = 0
        for tp in consumer.assignment():
            lo, hi = consumer.get_watermark_offsets(
                tp, cached=True
            )  # from the fetch responses: no request
            if hi < 0:
                lo, hi = consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
            pos = consumer.position([tp])[0].offset
            total += max(hi - (pos if pos >= 0 else lo), 0)
        return total
    except (RuntimeError, KafkaException):  # the lag is informative only
        return None


def _progress(report: StreamReport, consumer) -> str:
    rate = report.n_messages / report.seconds if report.seconds > 0 else 0.0
    lag = _lag(consumer) if consumer is not None else None
    parts = [f"{report.n_messages} alert(s)", f"{rate:,.0f} alerts/s"]
    if lag is not None:
        parts.append(f"lag {lag}")
    parts += [f"{report.n_rows} row(s) written", f"{report.n_candidates} candidate(s)"]
    if report.n_problems:
        parts.append(f"{report.n_problems} undecodable")
    if report.n_skipped or report.n_duplicates:
        parts.append(f"{report.n_skipped + report.n_duplicates} already written")
    return "earlyia stream: " + ", ".join(parts)
