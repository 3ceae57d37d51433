"""The model registry of the loop: which model is in production, where each one came from.

A model is ``candidate`` (trained, not serving), ``production`` (exactly one at a time) or
``retired``. Every promotion is appended to ``promotions`` with the model it replaced, so
``rollback`` walks back through the production history one step at a time. Model files are
copied into ``<db stem>_models/`` next to the database (content-addressed names), so the
registry never depends on a file the user later moves or overwrites. The same holds for the rows
each model learned from (features and labels, ``Model.training_rows``; ``earlyia train
--training-rows`` writes them) and the fixed validation rows: Parquet files in ``<db stem>_rows/``
named by their sha256 and verified on every read, so a retrain always starts from production's own
training set and compares on the same validation rows, whatever table the user passes.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from earlyia.errors import ConfigError, IntegrityError, ModelError
from earlyia.followup.db import FollowupDB, dumps, utcnow
from earlyia.io.table import atomic_write
from earlyia.model.artifact import Model

_HEX = re.compile(r"^[0-9a-f]+$")


def models_dir(db: FollowupDB) -> Path:
    return db.path.parent / f"{db.path.stem}_models"


def model_path_for(db: FollowupDB, version: str) -> Path:
    return models_dir(db) / f"model-{version[:16]}.eia"


def resolve_version(con: sqlite3.Connection, version: str) -> str:
    """A full model version from the exact hash or an unambiguous prefix of at least 6
    hexadecimal characters."""
    version = version.strip().lower()
    if not _HEX.match(version):
        raise ConfigError(
            f"model version {version!r}: a model version is a hexadecimal hash (see `earlyia "
            "models list`)"
        )
    if len(version) < 6:
        raise ConfigError(
            f"model version {version!r}: give at least 6 characters of the hash (see "
            "`earlyia models list`)"
        )
    rows = [
        r[0]
        for r in con.execute("SELECT version FROM models").fetchall()
        if str(r[0]).startswith(version)
    ]
    if not rows:
        raise ConfigError(f"no model {version!r} in the registry (see `earlyia models list`)")
    if len(rows) > 1:
        raise ConfigError(
            f"model version prefix {version!r} is ambiguous ({len(rows)} models); give more "
            "characters"
        )
    return rows[0]


# ---------------------------------------------------------------------------- stored rows
def rows_dir(db: FollowupDB) -> Path:
    return db.path.parent / f"{db.path.stem}_rows"


def store_rows(db: FollowupDB, rows: pd.DataFrame, *, what: str) -> str:
    """Write ``rows`` as Parquet named by its sha256 in :func:`rows_dir` (atomically; kept if
    already there); its sha256."""
    table = pa.Table.from_pandas(rows.reset_index(drop=True), preserve_index=False)
    table = table.replace_schema_metadata({b"earlyia.rows": json.dumps({"what": what}).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue().to_pybytes()
    sha = hashlib.sha256(data).hexdigest()
    path = rows_dir(db) / f"{sha}.parquet"
    if not path.exists():
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return sha


def load_rows(db: FollowupDB, sha: str) -> pd.DataFrame:
    """The rows stored under ``sha`` (their content checked against it)."""
    path = rows_dir(db) / f"{sha}.parquet"
    if not path.exists():
        raise ConfigError(
            f"{path}: stored rows missing (the folder beside the database was moved or "
            "deleted); restore it"
        )
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha:
        raise IntegrityError(
            f"{path}: content does not match its sha256: the stored rows were modified or corrupted"
        )
    return pq.read_table(pa.BufferReader(data)).to_pandas()


def model_rows(db: FollowupDB, version: str) -> pd.DataFrame | None:
    """The rows ``version`` learned from, or None when it was registered without them."""
    row = db.query("SELECT sha256 FROM model_rows WHERE model_version = ?", (version,))
    return load_rows(db, row[0]["sha256"]) if row else None


def check_training_rows(model, rows: pd.DataFrame, source: str = "training rows") -> pd.DataFrame:
    """``rows`` if they are what ``model`` learned from: its features, and the labelled original
    objects of its card."""
    missing = [n for n in model.features if n not in rows.columns]
    if missing:
        raise ConfigError(
            f"{source}: lack the model's feature(s) {missing[:5]}; give the rows `earlyia "
            "train --training-rows` wrote"
        )
    for col in ("object_id", "label"):
        if col not in rows.columns:
            raise ConfigError(
                f"{source}: no {col!r} column; give the rows `earlyia train --training-rows` wrote"
            )
    view = (
        pd.to_numeric(rows["view"], errors="coerce").fillna(0).to_numpy()
        if "view" in rows.columns
        else np.zeros(len(rows))
    )
    ours = set(rows.loc[view == 0, "object_id"].astype(str))
    card = set(model.prohibited_object_ids())
    if card and ours != card:
        extra, lacking = sorted(ours - card)[:3], sorted(card - ours)[:3]
        raise ConfigError(
            f"{source}: not the rows model {model.hash[:12]} learned from ({len(ours)} "
            f"objects vs {len(card)} in its card; "
            f"e.g. not in the card {extra}, missing {lacking})"
        )
    return rows


def production_version(con: sqlite3.Connection) -> str | None:
    row = con.execute("SELECT version FROM models WHERE status = 'production'").fetchone()
    return row[0] if row else None


def card_training_set(model) -> pd.DataFrame:
    """One row per training object of a model card (object_id, label): alert rows collapse to the
    object."""
    t = model.card.get("training", {}) or {}
    ids = [str(i) for i in t.get("object_ids", [])]
    labels = list(t.get("labels", []))
    if len(labels) != len(ids):
        labels = [-1] * len(ids)
    df = pd.DataFrame({"object_id": ids, "label": np.asarray(labels, dtype=np.int64)})
    return df.drop_duplicates("object_id", keep="last").reset_index(drop=True)


def insert_model(
    con: sqlite3.Connection,
    db: FollowupDB,
    model,
    *,
    status: str = "candidate",
    parent: str | None = None,
    metrics: dict | None = None,
    training: pd.DataFrame | None = None,
    note: str | None = None,
    rows_sha: tuple[str, int, int] | None = None,
) -> str:
    """Register ``model`` (saving a copy next to the database) inside the caller's transaction;
    ``rows_sha``: ``(sha256, n_rows, n_objects)`` of its stored training rows
    (:func:`store_rows`)."""
    version = model.hash
    if con.execute("SELECT 1 FROM models WHERE version = ?", (version,)).fetchone():
        raise ConfigError(f"model {version[:12]} is already registered")
    path = model_path_for(db, version)
    if not path.exists():
        model.save(path)
    if status == "production":
        current = production_version(con)
        if current:
            con.execute("UPDATE models SET status = 'retired' WHERE version = ?", (current,))
    else:
        current = None
    con.execute(
        "INSERT INTO models (version, path, status, parent, metrics, created_at, note) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (version, str(path), status, parent, dumps(metrics or {}), utcnow(), note),
    )
    if status == "production":
        con.execute(
            "INSERT INTO promotions (at, version, previous, action, reason) VALUES (?, ?, ?, "
            "'promote', ?)",
            (utcnow(), version, current, note or "registered as production"),
        )
    if training is None:
        training = card_training_set(model).assign(origin="card", label_id=None)
    rows = [
        (
            version,
            str(r.object_id),
            int(r.label),
            str(r.origin),
            None if pd.isna(r.label_id) else int(r.label_id),
        )
        for r in training.itertuples(index=False)
    ]
    con.executemany(
        "INSERT INTO training_set (model_version, object_id, label, origin, label_id) VALUES "
        "(?, ?, ?, ?, ?)",
        rows,
    )
    if rows_sha is not None:
        con.execute(
            "INSERT INTO model_rows (model_version, sha256, n_rows, n_objects, added_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (version, rows_sha[0], int(rows_sha[1]), int(rows_sha[2]), utcnow()),
        )
    return version


def register(
    db: FollowupDB,
    model_path: str | Path,
    *,
    production: bool = False,
    note: str | None = None,
    training_rows: pd.DataFrame | str | Path | None = None,
) -> str:
    """Add an existing model file (verified on load) to the registry; its card gives the training
    set.

    ``training_rows``: the rows it learned from (a frame, or the Parquet ``earlyia train
    --training-rows`` wrote), checked against the card and stored beside the database; without them
    the model cannot be retrained.
    """
    model = Model.load(model_path)
    rows_sha = None
    if training_rows is not None:
        source = "training rows"
        if not isinstance(training_rows, pd.DataFrame):
            source = str(training_rows)
            try:
                training_rows = pq.read_table(training_rows).to_pandas()
            except (OSError, pa.ArrowException) as exc:
                raise ConfigError(f"{source}: cannot read training rows ({exc})") from exc
        rows = check_training_rows(model, training_rows, source)
        rows_sha = (
            store_rows(db, rows, what=f"training rows of {model.hash}"),
            len(rows),
            int(rows["object_id"].nunique()),
        )
    with db.transaction() as con:
        return insert_model(
            con,
            db,
            model,
            status="production" if production else "candidate",
            parent=model.card.get("parent"),
            metrics=model.card.get("metrics"),
            note=note or f"registered from {model_path}",
            rows_sha=rows_sha,
        )


def list_models(db: FollowupDB) -> pd.DataFrame:
    rows = db.query(
        """SELECT m.version, m.status, m.parent, m.created_at, m.metrics, m.path, m.note,
                  (SELECT COUNT(*) FROM training_set t
                   WHERE t.model_version = m.version) AS n_train,
                  (SELECT COUNT(*) FROM training_set t
                   WHERE t.model_version = m.version AND t.origin = 'label') AS n_new_labels
           FROM models m ORDER BY m.created_at"""
    )
    out = pd.DataFrame(
        [dict(r) for r in rows],
        columns=[
            "version",
            "status",
            "parent",
            "created_at",
            "metrics",
            "path",
            "note",
            "n_train",
            "n_new_labels",
        ],
    )
    val = []
    for m in out["metrics"]:
        d = json.loads(m) if m else {}
        v = d.get("validation", {}) if isinstance(d, dict) else {}
        val.append(v.get("fom"))
    out["validation_fom"] = val
    return out


def format_models(df: pd.DataFrame) -> str:
    if df.empty:
        return (
            "no model registered (register one with `earlyia followup register MODEL --production`)"
        )
    show = pd.DataFrame(
        {
            "version": df["version"].str[:12],
            "status": df["status"],
            "parent": df["parent"].fillna("").str[:12],
            "created": df["created_at"].str[:19],
            "n_train": df["n_train"],
            "new_labels": df["n_new_labels"],
            "val_fom": df["validation_fom"].map(
                lambda v: "" if v is None or pd.isna(v) else f"{v:.3f}"
            ),
        }
    )
    return show.to_string(index=False)


def _promote(con: sqlite3.Connection, version: str, reason: str) -> str | None:
    current = production_version(con)
    if current == version:
        raise ConfigError(f"model {version[:12]} is already in production")
    status = con.execute("SELECT status FROM models WHERE version = ?", (version,)).fetchone()
    if status is None:
        raise ConfigError(f"no model {version[:12]} in the registry")
    if current:
        con.execute("UPDATE models SET status = 'retired' WHERE version = ?", (current,))
    con.execute("UPDATE models SET status = 'production' WHERE version = ?", (version,))
    con.execute(
        "INSERT INTO promotions (at, version, previous, action, reason) VALUES (?, ?, ?, "
        "'promote', ?)",
        (utcnow(), version, current, reason),
    )
    return current


def promote(
    db: FollowupDB, version: str, *, reason: str = "promoted by hand"
) -> tuple[str, str | None]:
    """Put ``version`` (unique prefix accepted) in production; the previous one is retired (kept
    for rollback)."""
    with db.transaction() as con:
        full = resolve_version(con, version)
        return full, _promote(con, full, reason)


def rollback(db: FollowupDB, *, reason: str = "rolled back by hand") -> tuple[str, str]:
    """Restore the model that production replaced; return (restored, demoted)."""
    with db.transaction() as con:
        current = production_version(con)
        if current is None:
            raise ConfigError("no model in production: nothing to roll back")
        row = con.execute(
            "SELECT previous FROM promotions WHERE version = ? AND action = 'promote' ORDER "
            "BY id DESC LIMIT 1",
            (current,),
        ).fetchone()
        previous = row[0] if row else None
        if previous is None:
            raise ModelError(
                f"model {current[:12]} replaced no earlier model: nothing to roll back to"
            )
        con.execute("UPDATE models SET status = 'retired' WHERE version = ?", (current,))
        con.execute("UPDATE models SET status = 'production' WHERE version = ?", (previous,))
        con.execute(
            "INSERT INTO promotions (at, version, previous, action, reason) VALUES (?, ?, ?, "
            "'rollback', ?)",
            (utcnow(), previous, current, reason),
        )
        return previous, current


def load_production(db: FollowupDB):
    """The production :class:`~earlyia.model.artifact.Model` (or None), verified on load."""
    row = db.query("SELECT version, path FROM models WHERE status = 'production'")
    if not row:
        return None
    model = Model.load(row[0]["path"])
    if model.hash != row[0]["version"]:
        raise ModelError(
            f"{row[0]['path']}: holds model {model.hash[:12]}, the registry expects "
            f"{row[0]['version'][:12]}"
        )
    return model
