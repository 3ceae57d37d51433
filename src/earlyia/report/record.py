"""The record of objects reported to the TNS: one small SQLite file, one state per object.

States of an object::

    pending  --POST-->  sent (the TNS gave a report id)  --reply-->  accepted (TNS name) | rejected
    (message)
       \\                    \\--reply not understood-->  unknown (report id kept: asked again next
       run)
        \\--no reply / reply not understood-->  unknown (no report id: a person checks the TNS)

A run claims its objects (``pending``) in a transaction BEFORE the network call and records the
outcome in another AFTER it, so a crash between the two leaves ``pending`` rows, which the next
sending run turns into ``unknown`` (the report may have gone out). ``pending``, ``sent``,
``accepted`` and ``unknown`` objects are never reported again; ``rejected`` ones may be (the TNS did
not take them). An ``unknown`` object stays out until a person checks the TNS and releases it
(:meth:`ReportedRecord.release_unknown`).

Several processes may share one record: :meth:`ReportedRecord.exclusive` is a lock per record file
(``<record>.lock``, an OS file lock released when the process ends, however it ends) that a sending
run holds from selecting the candidates to recording the last outcome; writes are ``BEGIN
IMMEDIATE`` transactions, and a claim skips any object another writer holds. The record must be on a
local file system (SQLite and file locks are unreliable on network file systems).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from earlyia.errors import ConfigError, InputError

PENDING, SENT, ACCEPTED, REJECTED, UNKNOWN = "pending", "sent", "accepted", "rejected", "unknown"
STATES = (PENDING, SENT, ACCEPTED, REJECTED, UNKNOWN)
#: States that keep an object out of later reports.
BLOCKING = (PENDING, SENT, ACCEPTED, UNKNOWN)
SCHEMA_VERSION = 2
OBJECT_COLUMNS = [
    "object_id",
    "state",
    "alert_id",
    "report_key",
    "entry",
    "report_id",
    "tns_name",
    "message",
    "destination",
    "updated_at",
]

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS objects (
    object_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ({", ".join(repr(s) for s in STATES)})),
    alert_id TEXT,
    report_key TEXT,
    entry INTEGER,
    report_id TEXT,
    tns_name TEXT,
    message TEXT,
    destination TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reports (
    report_key TEXT PRIMARY KEY,
    night TEXT,
    destination TEXT,
    report_id TEXT,
    n_objects INTEGER,
    outcome TEXT,
    message TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    at TEXT NOT NULL,
    object_id TEXT NOT NULL,
    state TEXT NOT NULL,
    report_key TEXT,
    report_id TEXT,
    message TEXT
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def report_key(object_ids: Iterable[str], night: str, destination: str) -> str:
    """The idempotency key of a bulk report: a hash of its objects (any order), the night and the
    destination."""
    text = json.dumps([sorted(map(str, object_ids)), str(night), str(destination)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RecordedObject:
    object_id: str
    state: str
    alert_id: str | None
    report_key: str | None
    entry: int | None
    report_id: str | None
    tns_name: str | None
    message: str | None
    destination: str | None
    updated_at: str


class ReportedRecord:
    """Objects reported to the TNS (see the module docstring for the states and the locking)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    # ------------------------------------------------------------------ plumbing
    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                self._migrate(con, version)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"{self.path}: not a usable reported-objects record ({exc}); point --record "
                "elsewhere"
            ) from exc
        return con

    def _migrate(self, con: sqlite3.Connection, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"{self.path}: record written by a newer earlyia (schema {version}); upgrade "
                "earlyia"
            )
        con.execute("BEGIN IMMEDIATE")
        try:
            if (
                con.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION
            ):  # another process may have done it
                for statement in _SCHEMA.split(
                    ";"
                ):  # not executescript: it would commit the open transaction
                    if statement.strip():
                        con.execute(statement)
                legacy = con.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name='reported'"
                ).fetchone()
                if legacy:  # records written before states: every row was an accepted report
                    con.execute(
                        "INSERT OR IGNORE INTO objects (object_id, state, alert_id, "
                        "report_id, destination, message, updated_at) "
                        "SELECT object_id, 'accepted', alert_id, report_id, destination, "
                        "'recorded before report states were kept', "
                        "reported_at FROM reported"
                    )
                    con.execute("DROP TABLE reported")
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed whole or not at all."""
        with closing(self._connect()) as con:
            try:
                con.execute("BEGIN IMMEDIATE")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            except (
                sqlite3.Error
            ) as exc:  # locked for too long, disk full...: nothing of this transaction was written
                raise ConfigError(
                    f"{self.path}: cannot update the reported-objects record ({exc})"
                ) from exc

    @staticmethod
    def _event(
        con: sqlite3.Connection, object_id: str, state: str, key=None, report_id=None, message=None
    ) -> None:
        con.execute(
            "INSERT INTO events (at, object_id, state, report_key, report_id, message) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (_now(), object_id, state, key, report_id, message),
        )

    @contextlib.contextmanager
    def exclusive(self, wait: float = 600.0, poll: float = 0.2) -> Iterator[None]:
        """Hold the record's lock (one sending run per record at a time, across processes).

        Waits up to ``wait`` seconds for another holder, then raises :class:`ConfigError`.
        """
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + max(0.0, wait)
        with open(self.lock_path, "a+") as fh:
            while True:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise ConfigError(
                            f"{self.lock_path}: cannot lock the record ({exc})"
                        ) from exc
                    if time.monotonic() >= deadline:
                        raise ConfigError(
                            f"{self.path}: another run is sending reports with this record "
                            f"(waited {wait:g} s); "
                            "try again when it has finished"
                        ) from exc
                    time.sleep(poll)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # ------------------------------------------------------------------ reading
    def objects(self, object_ids: Iterable[str] | None = None) -> dict[str, RecordedObject]:
        """The recorded objects (all, or those among ``object_ids``), by id."""
        if not self.path.exists():
            return {}
        with closing(self._connect()) as con:
            try:
                rows = con.execute(f"SELECT {', '.join(OBJECT_COLUMNS)} FROM objects").fetchall()
            except sqlite3.Error as exc:
                raise ConfigError(
                    f"{self.path}: cannot read the reported-objects record ({exc})"
                ) from exc
        got = {r[0]: RecordedObject(*r) for r in rows}
        if object_ids is None:
            return got
        wanted = set(map(str, object_ids))
        return {k: v for k, v in got.items() if k in wanted}

    def reported(self, object_ids: Iterable[str] | None = None) -> set[str]:
        """The ids (among ``object_ids``, all when None) that must not be reported again:
        pending, sent, accepted or unknown."""
        return {k for k, v in self.objects(object_ids).items() if v.state in BLOCKING}

    def table(self) -> pd.DataFrame:
        """Every recorded object and its state."""
        objs = self.objects()
        return pd.DataFrame(
            [vars(o) for o in sorted(objs.values(), key=lambda o: (o.updated_at, o.object_id))],
            columns=OBJECT_COLUMNS,
        )

    def open_reports(self) -> dict[tuple[str, str], list[RecordedObject]]:
        """Objects whose report id is known but whose outcome is not (``sent``, or ``unknown``
        with a report id), grouped by ``(destination, report_id)``: the TNS can be asked about
        them."""
        out: dict[tuple[str, str], list[RecordedObject]] = {}
        for o in self.objects().values():
            if o.report_id and o.state in (SENT, UNKNOWN):
                out.setdefault((o.destination or "", o.report_id), []).append(o)
        return out

    def unknown_without_report(self) -> list[RecordedObject]:
        """Objects whose report may or may not have reached the TNS, with no report id to ask
        about."""
        return sorted(
            (o for o in self.objects().values() if o.state == UNKNOWN and not o.report_id),
            key=lambda o: o.object_id,
        )

    # ------------------------------------------------------------------ writing
    def add(
        self,
        rows: Sequence[Mapping],
        *,
        destination: str = "",
        report_id: str | None = None,
        tns_names=None,
    ) -> None:
        """Record ``rows`` (dicts with ``object_id`` and ``alert_id``) as accepted, in one
        transaction."""
        now = _now()
        with self._write() as con:
            for r in rows:
                oid = str(r["object_id"])
                name = (tns_names or {}).get(oid)
                con.execute(
                    "INSERT INTO objects (object_id, state, alert_id, report_id, tns_name, "
                    "destination, updated_at) "
                    "VALUES (?, 'accepted', ?, ?, ?, ?, ?) ON CONFLICT(object_id) DO NOTHING",
                    (oid, str(r.get("alert_id", "")), report_id, name, destination, now),
                )

    def claim(
        self,
        key: str,
        object_ids: Sequence[str],
        alert_ids: Sequence[str],
        *,
        night: str,
        destination: str,
    ) -> list[str]:
        """Mark the objects ``pending`` for report ``key`` before it is posted; returns the ids
        claimed, in order.

        An object another writer holds (any blocking state) is skipped, never claimed twice.
        """
        now = _now()
        claimed: list[str] = []
        with self._write() as con:
            if con.execute("SELECT 1 FROM reports WHERE report_key = ?", (key,)).fetchone():
                raise ConfigError(
                    f"report key {key} was already used: it identifies one bulk report"
                )
            for oid, aid in zip(map(str, object_ids), map(str, alert_ids), strict=True):
                row = con.execute(
                    "SELECT state FROM objects WHERE object_id = ?", (oid,)
                ).fetchone()
                if row is not None and row[0] in BLOCKING:
                    continue
                con.execute(
                    "INSERT INTO objects (object_id, state, alert_id, report_key, entry, "
                    "report_id, tns_name, message, destination, "
                    "updated_at) VALUES (?, 'pending', ?, ?, ?, NULL, NULL, NULL, ?, ?) ON "
                    "CONFLICT(object_id) DO UPDATE SET "
                    "state='pending', alert_id=excluded.alert_id, "
                    "report_key=excluded.report_key, entry=excluded.entry, "
                    "report_id=NULL, tns_name=NULL, message=NULL, "
                    "destination=excluded.destination, updated_at=excluded.updated_at",
                    (oid, aid, key, len(claimed), destination, now),
                )
                self._event(con, oid, PENDING, key)
                claimed.append(oid)
            if claimed:
                con.execute(
                    "INSERT INTO reports (report_key, night, destination, n_objects, "
                    "outcome, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                    (key, night, destination, len(claimed), now, now),
                )
        return claimed

    def unused_key(self, base: str) -> str:
        """``base``, or ``base-2``, ``base-3``... when a report with that key was already made
        (the same objects again on the same night after a rejection)."""
        if not self.path.exists():
            return base
        with self._write() as con:
            used = {
                r[0]
                for r in con.execute(
                    "SELECT report_key FROM reports WHERE report_key = ? OR report_key LIKE ?",
                    (base, base + "-%"),
                )
            }
        if base not in used:
            return base
        n = 2
        while f"{base}-{n}" in used:
            n += 1
        return f"{base}-{n}"

    def mark_sent(self, key: str, report_id: str) -> None:
        """The TNS received report ``key`` and gave it ``report_id``."""
        with self._write() as con:
            con.execute(
                "UPDATE objects SET state='sent', report_id=?, updated_at=? WHERE "
                "report_key=? AND state='pending'",
                (report_id, _now(), key),
            )
            con.execute(
                "UPDATE reports SET report_id=?, outcome='sent', updated_at=? WHERE report_key=?",
                (report_id, _now(), key),
            )
            for (oid,) in con.execute(
                "SELECT object_id FROM objects WHERE report_key=?", (key,)
            ).fetchall():
                self._event(con, oid, SENT, key, report_id)

    def finish(
        self,
        key: str,
        results: Mapping[str, tuple[str, str | None, str]],
        *,
        outcome: str,
        message: str = "",
    ) -> None:
        """Record the outcome of report ``key``: ``results`` maps object id -> (state, TNS name,
        message), state one of accepted, rejected, unknown; objects of the report left out of
        ``results`` keep their state."""
        now = _now()
        with self._write() as con:
            for oid, (state, name, msg) in results.items():
                if state not in (ACCEPTED, REJECTED, UNKNOWN):
                    raise ValueError(f"not a final state: {state!r}")
                cur = con.execute(
                    "UPDATE objects SET state=?, tns_name=?, message=?, updated_at=? WHERE "
                    "object_id=? AND report_key=? "
                    "AND state IN ('pending', 'sent', 'unknown')",
                    (state, name, msg or None, now, oid, key),
                )
                if cur.rowcount:
                    row = con.execute(
                        "SELECT report_id FROM objects WHERE object_id=?", (oid,)
                    ).fetchone()
                    self._event(con, oid, state, key, row[0] if row else None, msg or None)
            con.execute(
                "UPDATE reports SET outcome=?, message=?, updated_at=? WHERE report_key=?",
                (outcome, message or None, now, key),
            )

    def release(self, key: str, message: str) -> None:
        """Report ``key`` certainly never reached the TNS: its pending objects become reportable
        again."""
        with self._write() as con:
            rows = con.execute(
                "SELECT object_id FROM objects WHERE report_key=? AND state='pending'", (key,)
            ).fetchall()
            for (oid,) in rows:
                self._event(con, oid, "released", key, None, message)
            con.execute("DELETE FROM objects WHERE report_key=? AND state='pending'", (key,))
            con.execute(
                "UPDATE reports SET outcome='not sent', message=?, updated_at=? WHERE report_key=?",
                (message, _now(), key),
            )

    def recover_interrupted(self) -> list[str]:
        """Objects left ``pending`` by a run that stopped between posting and recording (call it
        holding :meth:`exclusive`): they become ``unknown``, since the report may have gone out.
        Returns their ids."""
        with self._write() as con:
            rows = con.execute(
                "SELECT object_id, report_key FROM objects WHERE state='pending'"
            ).fetchall()
            why = "the run that posted this report stopped before recording the TNS's answer"
            for oid, key in rows:
                self._event(con, oid, UNKNOWN, key, None, why)
            con.execute(
                "UPDATE objects SET state='unknown', message=?, updated_at=? WHERE state='pending'",
                (why, _now()),
            )
        return sorted(r[0] for r in rows)

    def release_unknown(self, object_ids: Iterable[str]) -> list[str]:
        """Forget objects whose outcome is unknown (after checking the TNS does not have them):
        they may be reported again. Every id must be recorded as unknown, else
        :class:`InputError` names the others and nothing changes."""
        ids = list(dict.fromkeys(map(str, object_ids)))
        if not ids:
            raise InputError("--release-unknown needs object ids")
        with self._write() as con:
            states = {
                oid: con.execute("SELECT state FROM objects WHERE object_id=?", (oid,)).fetchone()
                for oid in ids
            }
            wrong = {
                oid: (s[0] if s else "not recorded")
                for oid, s in states.items()
                if not s or s[0] != UNKNOWN
            }
            if wrong:
                raise InputError(
                    f"only objects whose outcome is unknown can be released; {len(wrong)} are not: "
                    + ", ".join(f"{o} ({s})" for o, s in list(wrong.items())[:10]),
                    source=str(self.path),
                )
            for oid in ids:
                self._event(
                    con, oid, "released", None, None, "released by a person after checking the TNS"
                )
                con.execute("DELETE FROM objects WHERE object_id=?", (oid,))
        return ids
