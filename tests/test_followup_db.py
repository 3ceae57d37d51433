"""The follow-up database: migrations, one transaction per command, concurrent processes,
crashes."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import pytest

from earlyia.errors import ConfigError
from earlyia.followup import db as dbmod
from earlyia.followup.db import SCHEMA_VERSION, DatabaseBusyError, FollowupDB, resolve_db_path


def test_fresh_database_is_migrated_and_reopening_is_idempotent(tmp_path):
    path = tmp_path / "loop.db"
    with FollowupDB(path) as db:
        assert db.schema_version() == SCHEMA_VERSION
        tables = set(db.counts())
        assert {
            "requests",
            "labels",
            "models",
            "training_set",
            "candidates",
            "selections",
            "schema_version",
        } <= tables
        assert db.con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with FollowupDB(path) as db:  # second open applies nothing twice
        assert db.query("SELECT COUNT(*) FROM schema_version")[0][0] == SCHEMA_VERSION


def test_new_migration_is_applied_once_in_order(tmp_path, monkeypatch):
    path = tmp_path / "loop.db"
    FollowupDB(path).close()

    def m_next(con):
        con.execute("ALTER TABLE labels ADD COLUMN comment TEXT")

    nxt = dbmod.SCHEMA_VERSION + 1
    monkeypatch.setattr(dbmod, "MIGRATIONS", [*dbmod.MIGRATIONS, (nxt, m_next)])
    monkeypatch.setattr(dbmod, "SCHEMA_VERSION", nxt)
    with FollowupDB(path) as db:
        assert db.schema_version() == nxt
        cols = [r[1] for r in db.query("PRAGMA table_info(labels)")]
        assert "comment" in cols
    with FollowupDB(path) as db:
        assert db.schema_version() == nxt


def test_failing_migration_leaves_the_old_schema(tmp_path, monkeypatch):
    path = tmp_path / "loop.db"
    FollowupDB(path).close()

    def bad(con):
        con.execute("CREATE TABLE extra (x INTEGER)")
        raise RuntimeError("boom")

    nxt = dbmod.SCHEMA_VERSION + 1
    monkeypatch.setattr(dbmod, "MIGRATIONS", [*dbmod.MIGRATIONS, (nxt, bad)])
    monkeypatch.setattr(dbmod, "SCHEMA_VERSION", nxt)
    with pytest.raises(RuntimeError):
        FollowupDB(path)
    monkeypatch.undo()
    with FollowupDB(path) as db:
        assert db.schema_version() == nxt - 1
        assert "extra" not in db.counts()


def test_database_from_a_newer_earlyia_is_refused(tmp_path):
    path = tmp_path / "loop.db"
    with FollowupDB(path) as db, db.transaction() as con:
        con.execute("INSERT INTO schema_version VALUES (99, 'future')")
    with pytest.raises(ConfigError, match="newer"):
        FollowupDB(path)


def test_not_a_database_and_missing_directory_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match=r"junk\.db"):
        FollowupDB(junk)
    with pytest.raises(ConfigError, match="does not exist"):
        FollowupDB(tmp_path / "nope" / "x.db")


def test_db_path_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("EARLYIA_DB", str(tmp_path / "env.db"))
    assert resolve_db_path(tmp_path / "cli.db") == tmp_path / "cli.db"
    assert resolve_db_path(None) == tmp_path / "env.db"
    monkeypatch.delenv("EARLYIA_DB")
    assert str(resolve_db_path(None)) == "earlyia.db"


@pytest.mark.parametrize("exc", [RuntimeError("injected"), KeyboardInterrupt()])
def test_transaction_rolls_back_on_any_exception(tmp_path, exc):
    with FollowupDB(tmp_path / "loop.db") as db:
        with db.transaction() as con:
            con.execute("INSERT INTO validation_set VALUES ('A', 1, 't')")
        before = db.snapshot()
        with pytest.raises(type(exc)), db.transaction() as con:
            con.execute("INSERT INTO validation_set VALUES ('B', 0, 't')")
            con.execute("DELETE FROM validation_set WHERE object_id = 'A'")
            raise exc
        assert db.snapshot() == before
        # the connection is usable afterwards
        with db.transaction() as con:
            con.execute("INSERT INTO validation_set VALUES ('C', 0, 't')")
        assert db.counts()["validation_set"] == 2


# -- real concurrent processes ---------------------------------------------------------------------
def _writer(path: str, tag: str, n: int, barrier) -> None:
    db = FollowupDB(path, busy_timeout=60)
    barrier.wait()
    for i in range(n):
        with db.transaction() as con:
            # read-modify-write: lost updates would show as a wrong final counter
            cur = con.execute("SELECT COUNT(*) FROM validation_set").fetchone()[0]
            con.execute(
                "INSERT INTO validation_set VALUES (?, ?, ?)", (f"{tag}{i}", i % 2, str(cur))
            )
    db.close()


def test_two_processes_writing_at_once_neither_corrupt_nor_lose_rows(tmp_path):
    path = str(tmp_path / "loop.db")
    FollowupDB(path).close()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    n = 60
    procs = [ctx.Process(target=_writer, args=(path, tag, n, barrier)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with FollowupDB(path) as db:
        assert db.query("PRAGMA integrity_check")[0][0] == "ok"
        rows = db.query("SELECT object_id, added_at FROM validation_set")
        assert len(rows) == 2 * n
        # each writer saw every earlier commit: the recorded counts are exactly 0..2n-1
        assert sorted(int(r[1]) for r in rows) == list(range(2 * n))


def _crashing_writer(path: str, ready) -> None:
    db = FollowupDB(path)
    db.con.execute("BEGIN IMMEDIATE")
    for i in range(50):
        db.con.execute("INSERT INTO validation_set VALUES (?, 1, 'x')", (f"crash{i}",))
    db.con.execute("UPDATE models SET status = 'retired'")
    ready.set()
    time.sleep(60)  # killed here, mid-transaction


def test_process_killed_mid_command_leaves_database_unchanged(tmp_path):
    path = str(tmp_path / "loop.db")
    with FollowupDB(path) as db:
        with db.transaction() as con:
            con.execute("INSERT INTO validation_set VALUES ('keep', 0, 't')")
        before = db.snapshot()
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    p = ctx.Process(target=_crashing_writer, args=(path, ready))
    p.start()
    assert ready.wait(60)
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    with FollowupDB(path) as db:
        assert db.snapshot() == before
        assert db.query("PRAGMA integrity_check")[0][0] == "ok"
        with db.transaction() as con:  # the lock died with the process
            con.execute("INSERT INTO validation_set VALUES ('after', 1, 't')")


def test_busy_writer_waits_then_fails_cleanly_when_timeout_is_short(tmp_path):
    path = tmp_path / "loop.db"
    a = FollowupDB(path)
    b = FollowupDB(path, busy_timeout=0.2)
    with a.transaction() as con:
        con.execute("INSERT INTO validation_set VALUES ('a', 0, 't')")
        with pytest.raises(DatabaseBusyError, match="busy"), b.transaction():
            pass
    with b.transaction() as con:  # free again
        con.execute("INSERT INTO validation_set VALUES ('b', 0, 't')")
    assert b.counts()["validation_set"] == 2
    a.close()
    b.close()


def _select_worker(db_path: str, scores: str, barrier) -> None:
    from earlyia.followup.config import Constraints, EarlyList
    from earlyia.followup.targets import select

    db = FollowupDB(db_path, busy_timeout=60)
    barrier.wait()
    select(
        db,
        scores,
        n=10,
        constraints=Constraints(extragalactic=("Unknown", "Galaxy")),
        early=EarlyList(n=3),
        random_state=0,
    )
    db.close()


def test_two_processes_selecting_at_once_never_request_an_object_twice(tmp_path):
    from test_followup_targets import make_scores, write_scores

    scores = str(tmp_path / "scores.parquet")
    write_scores(make_scores(400, seed=31), scores)
    path = str(tmp_path / "loop.db")
    FollowupDB(path).close()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_select_worker, args=(path, scores, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with FollowupDB(path) as db:
        rows = db.query("SELECT object_id, selection_id FROM requests")
        assert len({r[1] for r in rows}) == 2  # both selections recorded
        assert len({r[0] for r in rows}) == len(rows) == 26  # 2 x (10 + 3), no object twice
