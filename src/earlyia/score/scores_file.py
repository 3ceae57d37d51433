"""The scores file: ``earlyia score``'s SCORES Parquet (one file, or the night-partitioned
parts that ``earlyia stream`` writes): its schema, its writer, and the one reader of every command
that consumes scores."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from earlyia.errors import FormatError, InputError, SchemaError
from earlyia.io.writer import TableWriter, fit_schema

#: Schema metadata key of a SCORES Parquet file.
METADATA_KEY = b"earlyia.scores"
SCORES_FORMAT = "earlyia.scores/1"
#: The fixed leading columns of a SCORES table and their Arrow types.
SCORE_SCHEMA = pa.schema(
    [
        ("object_id", pa.string()),
        ("alert_id", pa.string()),
        ("mjd", pa.float64()),
        ("score", pa.float64()),
        ("passed", pa.bool_()),
        ("reason", pa.string()),
        ("ra", pa.float64()),
        ("dec", pa.float64()),
        ("ndethist", pa.float64()),
        ("jdstarthist", pa.float64()),
        ("drb", pa.float64()),
        ("classtar", pa.float64()),
        ("cdsxmatch", pa.string()),
        ("n_detections", pa.int64()),
        ("first_det_mjd", pa.float64()),
        ("first_det_mag", pa.float64()),
        ("first_det_mag_err", pa.float64()),
        ("first_det_limit_mag", pa.float64()),
        ("first_det_band", pa.string()),
        ("last_nondet_mjd", pa.float64()),
        ("last_nondet_limit_mag", pa.float64()),
        ("last_nondet_band", pa.string()),
        ("last_mag", pa.float64()),
        ("last_band", pa.string()),
        ("label", pa.string()),
    ]
)
SCORE_COLUMNS = tuple(SCORE_SCHEMA.names)


class ScoresWriter(TableWriter):
    """A :class:`TableWriter` of SCORES files (:data:`METADATA_KEY`, :data:`SCORE_SCHEMA` types
    first)."""

    def __init__(self, path: str | Path, metadata: Mapping[str, Any]):
        super().__init__(
            path,
            metadata,
            key=METADATA_KEY,
            arrow=to_arrow,
            leading=SCORE_COLUMNS,
            empty_schema=SCORE_SCHEMA,
        )


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """A SCORES frame as Arrow with the documented types for the fixed columns (objects that
    Arrow cannot type become strings)."""
    arrays, fields = [], []
    for name in df.columns:
        values = df[name]
        if name in SCORE_COLUMNS:
            typ = SCORE_SCHEMA.field(name).type
            if pa.types.is_string(typ):
                arr = pa.array(
                    [
                        None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                        for v in values.to_numpy(object)
                    ],
                    pa.string(),
                )
            else:
                arr = pa.array(values.to_numpy(), type=typ, from_pandas=True)
        else:
            try:
                arr = pa.array(values, from_pandas=True)
            except (pa.ArrowException, TypeError, ValueError):
                arr = pa.array(
                    [None if v is None else str(v) for v in values.to_numpy(object)], pa.string()
                )
            if pa.types.is_null(arr.type):
                arr = arr.cast(pa.string())
        arrays.append(arr)
        fields.append(pa.field(name, arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


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
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
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
