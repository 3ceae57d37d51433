"""The follow-up database: one SQLite file, versioned schema, one transaction per command.

Why SQLite: the loop's state (what was selected, posted, labelled, which model is in production)
must survive crashes and be shared by a cron job and a human at the same time, without a server.
WAL mode lets readers run while one writer commits; ``busy_timeout`` makes a second writer wait
instead of failing; ``BEGIN IMMEDIATE`` takes the write lock up front so a command never
discovers half-way that someone else wrote first. :meth:`FollowupDB.transaction` rolls back on
*any* exception, ``KeyboardInterrupt`` included: an interrupted command leaves the file as before.

Schema changes are append-only migrations (:data:`MIGRATIONS`), applied in order and recorded
in ``schema_version``; a database written by a newer earlyia is refused rather than damaged.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from earlyia.errors import ConfigError

#: Seconds a writer waits for another process's transaction before giving up.
DEFAULT_BUSY_TIMEOUT = 30.0

REQUEST_STATUSES = ("selected", "posting", "posted", "failed", "unknown")
#: States of one post (a summary, a target's message, a target's files) in the ``posts`` ledger.
POST_STATUSES = ("pending", "posting", "posted", "failed", "unknown")
MODEL_STATUSES = ("candidate", "production", "retired")


class DatabaseBusyError(ConfigError):
    """Another process held the database's write lock longer than the busy timeout."""


def utcnow() -> str:
    """ISO-8601 UTC timestamp with microseconds (sortable as text)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _migration_1(con: sqlite3.Connection) -> None:
    """Initial schema."""
    statements = [
        # Score files seen by `followup select`: a pointer + content hash, not a copy.
        """CREATE TABLE score_files (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            model_version TEXT,
            n_alerts INTEGER NOT NULL,
            n_objects INTEGER NOT NULL,
            ingested_at TEXT NOT NULL
        )""",
        # The latest scored alert of every object of a score file (what `label` checks objects
        # against).
        """CREATE TABLE scored_objects (
            score_file_id INTEGER NOT NULL REFERENCES score_files(id),
            object_id TEXT NOT NULL,
            alert_id TEXT,
            mjd REAL,
            score REAL,
            ra REAL,
            dec REAL,
            PRIMARY KEY (score_file_id, object_id)
        )""",
        "CREATE INDEX scored_objects_object ON scored_objects(object_id)",
        # One run of `followup select`.
        """CREATE TABLE selections (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            score_file_id INTEGER REFERENCES score_files(id),
            model_version TEXT,
            strategy TEXT NOT NULL,
            n_requested INTEGER NOT NULL,
            params TEXT NOT NULL
        )""",
        # Targets of a selection, with the alert they were chosen on (list = 'al' or 'early').
        """CREATE TABLE candidates (
            selection_id INTEGER NOT NULL REFERENCES selections(id),
            list TEXT NOT NULL CHECK (list IN ('al', 'early')),
            rank INTEGER NOT NULL,
            object_id TEXT NOT NULL,
            alert_id TEXT,
            mjd REAL,
            score REAL,
            query_score REAL,
            ra REAL,
            dec REAL,
            days_since_first REAL,
            last_mag REAL,
            last_band TEXT,
            cdsxmatch TEXT,
            classification TEXT,
            PRIMARY KEY (selection_id, list, object_id)
        )""",
        # Follow-up requests: one per (object, list) ever; status moves selected -> posting ->
        # posted | failed.
        """CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            object_id TEXT NOT NULL,
            list TEXT NOT NULL,
            selection_id INTEGER NOT NULL REFERENCES selections(id),
            created_at TEXT NOT NULL,
            model_version TEXT,
            strategy TEXT NOT NULL,
            channel TEXT,
            message_id TEXT,
            status TEXT NOT NULL CHECK (status IN ('selected', 'posting', 'posted', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            updated_at TEXT NOT NULL,
            UNIQUE (object_id, list)
        )""",
        # Spectroscopic labels (label: 1 positive, 0 negative, -1 unlabelled type).
        """CREATE TABLE labels (
            id INTEGER PRIMARY KEY,
            object_id TEXT NOT NULL,
            type TEXT NOT NULL,
            label INTEGER NOT NULL CHECK (label IN (-1, 0, 1)),
            source TEXT NOT NULL,
            date TEXT,
            who TEXT,
            file TEXT,
            ingested_at TEXT NOT NULL,
            UNIQUE (object_id, type, source)
        )""",
        "CREATE INDEX labels_object ON labels(object_id)",
        # Models known to the loop.
        """CREATE TABLE models (
            version TEXT PRIMARY KEY,
            path TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('candidate', 'production', 'retired')),
            parent TEXT,
            metrics TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            note TEXT
        )""",
        # Which objects (with which label and origin) trained which model.
        """CREATE TABLE training_set (
            model_version TEXT NOT NULL REFERENCES models(version),
            object_id TEXT NOT NULL,
            label INTEGER NOT NULL,
            origin TEXT NOT NULL,
            label_id INTEGER REFERENCES labels(id),
            PRIMARY KEY (model_version, object_id)
        )""",
        # Production history, newest last: what `models rollback` walks back through.
        """CREATE TABLE promotions (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            version TEXT NOT NULL REFERENCES models(version),
            previous TEXT,
            action TEXT NOT NULL,
            reason TEXT
        )""",
        # The fixed validation objects every candidate and production model is compared on.
        """CREATE TABLE validation_set (
            object_id TEXT PRIMARY KEY,
            label INTEGER NOT NULL,
            added_at TEXT NOT NULL
        )""",
    ]
    for sql in statements:
        con.execute(sql)


def _migration_rows(con: sqlite3.Connection) -> None:
    """The rows every model learned from and the fixed validation rows, stored content-addressed
    beside the database."""
    con.execute(
        """CREATE TABLE model_rows (
            model_version TEXT PRIMARY KEY REFERENCES models(version),
            sha256 TEXT NOT NULL,
            n_rows INTEGER NOT NULL,
            n_objects INTEGER NOT NULL,
            added_at TEXT NOT NULL
        )"""
    )
    con.execute(
        """CREATE TABLE validation_rows (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            sha256 TEXT NOT NULL,
            n_rows INTEGER NOT NULL,
            n_objects INTEGER NOT NULL,
            added_at TEXT NOT NULL
        )"""
    )


_REQUEST_COLUMNS = (
    "id, object_id, list, selection_id, created_at, model_version, strategy, channel, "
    "message_id, status, attempts, "
    "error, updated_at"
)


def _migration_posts(con: sqlite3.Connection) -> None:
    """Exactly-once posting: requests may end ``unknown``; every post is recorded in ``posts``.

    SQLite cannot change a CHECK constraint, so ``requests`` is rebuilt with the same rows (and a
    ``post_key`` column: the idempotency key its message carries). ``posts`` is the delivery
    ledger: one row per idempotency key, written before the network call (``posting``) and after
    it (``posted`` / ``failed`` / ``unknown``; ``pending`` when nothing was sent). ``created_at`` is
    the first attempt (a channel's history is searched from there), ``started_at`` the latest one.
    """
    con.execute(
        """CREATE TABLE requests_v2 (
            id INTEGER PRIMARY KEY,
            object_id TEXT NOT NULL,
            list TEXT NOT NULL,
            selection_id INTEGER NOT NULL REFERENCES selections(id),
            created_at TEXT NOT NULL,
            model_version TEXT,
            strategy TEXT NOT NULL,
            channel TEXT,
            message_id TEXT,
            status TEXT NOT NULL
                CHECK (status IN ('selected', 'posting', 'posted', 'failed', 'unknown')),
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            updated_at TEXT NOT NULL,
            post_key TEXT,
            UNIQUE (object_id, list)
        )"""
    )
    con.execute(
        f"INSERT INTO requests_v2 ({_REQUEST_COLUMNS}) SELECT {_REQUEST_COLUMNS} FROM requests"
    )
    con.execute("DROP TABLE requests")
    con.execute("ALTER TABLE requests_v2 RENAME TO requests")
    con.execute(
        """CREATE TABLE posts (
            key TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('summary', 'target', 'files')),
            request_id INTEGER REFERENCES requests(id),
            selection_id INTEGER REFERENCES selections(id),
            list TEXT,
            sink TEXT NOT NULL,
            destination TEXT,
            status TEXT NOT NULL
                CHECK (status IN ('pending', 'posting', 'posted', 'failed', 'unknown')),
            created_at TEXT NOT NULL,
            started_at TEXT,
            message_id TEXT,
            file_ids TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            updated_at TEXT NOT NULL
        )"""
    )
    con.execute("CREATE INDEX posts_request ON posts(request_id)")


#: Ordered schema migrations: (version, function). Append new ones; never edit a released one.
MIGRATIONS: list[tuple[int, Callable[[sqlite3.Connection], None]]] = [
    (1, _migration_1),
    (2, _migration_rows),
    (3, _migration_posts),
]

SCHEMA_VERSION = MIGRATIONS[-1][0]


def resolve_db_path(cli_value: str | Path | None = None) -> Path:
    """``--db`` option > ``EARLYIA_DB`` environment variable > ``./earlyia.db``."""
    import os

    if cli_value:
        return Path(cli_value)
    env = os.environ.get("EARLYIA_DB")
    if env:
        return Path(env)
    return Path("earlyia.db")


class FollowupDB:
    """A connection to the follow-up database, migrated to the current schema on open.

    Use :meth:`transaction` for every write: ``with db.transaction() as con: ...``.
    """

    def __init__(
        self, path: str | Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, migrate: bool = True
    ):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        if self.path.exists() and self.path.is_dir():
            raise ConfigError(
                f"{self.path}: is a directory; --db / EARLYIA_DB must name a database file"
            )
        if not self.path.parent.exists():
            raise ConfigError(
                f"{self.path}: directory {self.path.parent} does not exist; create it or "
                "choose another --db"
            )
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (no implicit transactions).
            self.con = sqlite3.connect(str(self.path), timeout=busy_timeout, isolation_level=None)
            self.con.row_factory = sqlite3.Row
            self.con.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            mode = self.con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigError(
                    f"{self.path}: cannot switch the database to WAL mode (got {mode!r}); is "
                    "it on a network file system?"
                )
            self.con.execute("PRAGMA foreign_keys = ON")
            self.con.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            raise ConfigError(
                f"{self.path}: not a usable SQLite database ({exc}); point --db / EARLYIA_DB "
                "at another file"
            ) from exc
        if migrate:
            self.migrate()

    # -- transactions -------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; ROLLBACK on any exception (KeyboardInterrupt included)."""
        try:
            self.con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise DatabaseBusyError(
                    f"{self.path}: database busy: another earlyia command kept it locked "
                    "longer than the "
                    f"{self.busy_timeout:g} s busy timeout; retry later"
                ) from exc
            raise
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> FollowupDB:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- schema -------------------------------------------------------------------------------
    def schema_version(self) -> int:
        row = self.con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if row is None:
            return 0
        value = self.con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        return int(value or 0)

    def migrate(self) -> int:
        """Apply the pending migrations, all in one transaction; return the schema version."""
        with self.transaction() as con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                "applied_at TEXT NOT NULL)"
            )
            current = self.schema_version()
            if current > SCHEMA_VERSION:
                raise ConfigError(
                    f"{self.path}: database schema version {current} is newer than this "
                    "earlyia understands "
                    f"({SCHEMA_VERSION}); upgrade earlyia"
                )
            for version, func in MIGRATIONS:
                if version > current:
                    func(con)
                    con.execute(
                        "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                        (version, utcnow()),
                    )
        return self.schema_version()

    # -- small helpers ------------------------------------------------------------------------
    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        return self.con.execute(sql, params).fetchall()

    def counts(self) -> dict[str, int]:
        """Rows per table (what tests and `followup status` look at)."""
        tables = [
            r[0]
            for r in self.con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {
            t: int(self.con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]) for t in tables
        }

    def snapshot(self) -> dict[str, list[tuple]]:
        """Every row of every table, sorted (to compare a database before and after a failed
        command)."""
        tables = [
            r[0]
            for r in self.con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {
            t: sorted(tuple(r) for r in self.con.execute(f'SELECT * FROM "{t}"')) for t in tables
        }


def dumps(obj: object) -> str:
    """Canonical JSON for the database (sorted keys; NaN refused so every value reads back)."""
    return json.dumps(obj, sort_keys=True, allow_nan=False, default=_json_default)


def _json_default(value: object):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
