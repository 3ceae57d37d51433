"""The scores file: ``earlyia score``'s SCORES Parquet (one file, or the night-partitioned parts
``earlyia stream`` writes), read in one place for every command that consumes scores."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from earlyia.errors import FormatError, InputError, SchemaError
from earlyia.io.writer import fit_schema


def score_parts(path: str | Path) -> list[Path]:
    """The SCORES files behind ``path``: the file itself, or every Parquet part under a directory
    (``earlyia stream``'s output directory, its ``scores/`` folder, or one ``night=YYYY-MM-DD``
    folder); hidden temporaries are left out."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    root = path / "scores" if (path / "scores").is_dir() else path
    parts = sorted(
        p
        for p in root.rglob("*.parquet")
        if not any(s.startswith((".", "_")) for s in p.relative_to(root).parts)
    )
    if not parts:
        raise InputError(
            "no SCORES Parquet part in this directory (expected scores/night=YYYY-MM-DD/*.parquet, "
            "as `earlyia stream` writes)",
            source=str(path),
        )
    return parts


def _read_one(path: Path):
    try:
        table = pq.read_table(path)
    except (
        OSError,
        ValueError,
        pa.ArrowException,
    ) as exc:  # an unreadable file: a format error naming it
        raise FormatError(
            f"cannot read as Parquet ({type(exc).__name__}: {exc})", source=str(path)
        ) from exc
    meta = {}
    raw = (table.schema.metadata or {}).get(b"earlyia.scores")
    if raw:
        try:
            meta = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise FormatError(
                f"corrupted earlyia.scores metadata ({exc})", source=str(path)
            ) from exc
    return table, meta


def read_scores(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """A SCORES.parquet, or a directory of SCORES parts (``earlyia stream``), and its
    ``earlyia.scores`` metadata (``{}`` when absent). Parts of a directory must come from one
    model; a ``night=`` folder becomes a ``night`` column."""
    path = Path(path)
    if not path.exists():
        raise InputError("score file not found", source=str(path))
    parts = score_parts(path)
    if len(parts) == 1 and not path.is_dir():
        table, meta = _read_one(parts[0])
        return table.to_pandas(), meta
    tables, meta, first = [], {}, None
    for part in parts:
        table, m = _read_one(part)
        version = model_version_of(m)
        if first is None:
            first, meta = (part, version), m
        elif version != first[1]:
            raise SchemaError(
                f"{part.name} was scored by model {version}, {first[0].name} by {first[1]}: "
                "give the parts of "
                "one model (one output directory per model)",
                source=str(path),
            )
        night = next(
            (s.split("=", 1)[1] for s in reversed(part.parts) if s.startswith("night=")), None
        )
        if night is not None and "night" not in table.column_names:
            table = table.append_column("night", pa.array([night] * table.num_rows, pa.string()))
        tables.append(table.replace_schema_metadata(None))
    return _concat_parts(tables).to_pandas(), meta


def _concat_parts(tables: list):
    """Parts with the union of their columns; a column typed differently by two parts (a broker
    column all null in one batch, say) takes the type of its non-null parts, or becomes a string
    when those disagree."""

    names: list[str] = []
    types: dict[str, set] = {}
    for t in tables:
        for f in t.schema:
            if f.name not in types:
                names.append(f.name)
                types[f.name] = set()
            if t.column(f.name).null_count < t.num_rows:
                types[f.name].add(f.type)
    fields = []
    for n in names:
        seen = types[n] or {next(t.schema.field(n).type for t in tables if n in t.column_names)}
        fields.append(pa.field(n, next(iter(seen)) if len(seen) == 1 else pa.string()))
    schema = pa.schema(fields)
    return pa.concat_tables([fit_schema(t, schema, strict=True) for t in tables])


def model_version_of(meta: dict) -> str | None:
    """The scoring model's hash from score-file metadata (a few spellings accepted)."""
    for key in ("model_hash", "model_version", "hash"):
        if meta.get(key):
            return str(meta[key])
    model = meta.get("model")
    if isinstance(model, dict):
        for key in ("hash", "version"):
            if model.get(key):
                return str(model[key])
    if isinstance(model, str):
        return model
    return None


def file_sha256(path: str | Path) -> str:
    """sha256 of a file; of a directory of SCORES parts, over each part's relative name and
    content, in order."""
    path = Path(path)
    files = score_parts(path)
    h = hashlib.sha256()
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
