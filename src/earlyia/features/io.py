"""Feature tables on disk: Parquet with the extractor's configuration in the schema metadata.

The metadata makes a feature file self-describing: a model can check that it is scored on the
features it was trained on (names, order, parameters), and a reader can refuse a file that is
not a feature table instead of guessing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from earlyia import __version__
from earlyia.errors import FormatError, InputError, SchemaError
from earlyia.features.base import META_COLUMNS, FeatureExtractor, get_extractor
from earlyia.io.chunks import CHUNK_SIZE, iter_chunks, reason_key
from earlyia.io.table import atomic_write
from earlyia.io.writer import TableWriter

META_KEY = b"earlyia.features"
FORMAT_VERSION = "earlyia.features/1"


def write_features(
    df: pd.DataFrame,
    path: str | Path,
    extractor: FeatureExtractor | dict,
    *,
    survey: str = "",
    bands: tuple[str, ...] | list[str] = (),
    extra: dict[str, Any] | None = None,
) -> None:
    """Write a feature table atomically, with ``extractor.config()`` etc. under :data:`META_KEY`."""
    config = extractor.config() if isinstance(extractor, FeatureExtractor) else dict(extractor)
    missing = [n for n in config.get("names", []) if n not in df.columns]
    if missing:
        raise SchemaError(
            f"feature table lacks the extractor's feature column(s) {missing[:5]}", source=str(path)
        )
    meta = {
        "format": FORMAT_VERSION,
        "extractor": config,
        "survey": survey,
        "bands": list(bands),
        "earlyia_version": __version__,
        **(extra or {}),
    }
    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()}
    )
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def is_feature_table(path: str | Path) -> bool:
    """True when ``path`` is a Parquet file carrying :data:`META_KEY` (written by
    :func:`write_features`)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"PAR1":
                return False
        return META_KEY in (pq.read_schema(path).metadata or {})
    except (OSError, pa.ArrowException):
        return False


def read_features(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``(table, metadata)`` of a file written by :func:`write_features` (:class:`FormatError`
    otherwise)."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise FormatError(
            f"cannot read as a Parquet feature table: {exc}", source=str(path)
        ) from exc
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise FormatError(
            "not an earlyia feature table (no 'earlyia.features' metadata); produce one with "
            "`earlyia features`",
            source=str(path),
        )
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise FormatError(f"corrupted feature metadata: {exc}", source=str(path)) from exc
    if meta.get("format") != FORMAT_VERSION:
        raise FormatError(
            f"unsupported feature table format {meta.get('format')!r}; expected {FORMAT_VERSION}",
            source=str(path),
        )
    return table.to_pandas(), meta


def extractor_from_meta(meta: dict[str, Any]) -> FeatureExtractor:
    """Rebuild the extractor that produced a feature table (checks the feature names)."""
    return get_extractor(meta["extractor"])


@dataclass
class FeaturesSummary:
    """What :func:`features_files` wrote."""

    path: Path
    n_rows: int = 0
    n_valid: int = 0
    problems: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    per: str = ""
    seconds: float = 0.0


def problem_feature_rows(problems, names: list[str]) -> pd.DataFrame:
    """Feature-table rows (``valid=False``, the reason, no features) for inputs or objects a
    reader dropped."""
    probs = list(problems)
    n = len(probs)
    cols: dict[str, Any] = {
        "object_id": np.array(
            ["" if p.object_id is None else str(p.object_id) for p in probs], dtype=object
        ),
        "alert_id": np.full(n, None, dtype=object),
        "mjd": np.full(n, np.nan),
        "n_detections": np.zeros(n, np.int64),
        "valid": np.zeros(n, bool),
        "reason": np.array(
            [f"{p.reason} [{p.source}]" if p.source else p.reason for p in probs], dtype=object
        ),
    }
    for name in names:
        cols[name] = np.full(n, np.nan)
    return pd.DataFrame(cols)


def _features_arrow(df: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)


def features_files(
    inputs,
    extractor: FeatureExtractor,
    out: str | Path,
    *,
    per: str | None = None,
    replay: tuple[int, int] | None = None,
    chunk_size: int | None = None,
    format: str | None = None,
) -> FeaturesSummary:
    """The feature table of any inputs, read and computed chunk by chunk (memory flat) and written
    atomically.

    Inputs that share objects are read together (one light curve per object, as
    :func:`earlyia.io.read` gives). ``per``: "alert" or "object" (default: per alert for chunks with
    alerts, else per object). ``replay=(lo, hi)``: one row per detection ``k = lo..hi`` instead of
    the input's alerts. Objects and inputs the readers drop become rows with ``valid=False`` and the
    reason; :class:`InputError` when no input at all could be read (nothing is written then).
    """

    t0 = time.perf_counter()
    chunk_size = chunk_size or CHUNK_SIZE
    names = list(extractor.names)
    summary = FeaturesSummary(Path(out))
    writer = None
    meta: dict[str, Any] = {}
    pers: set[str] = set()
    n_read = 0
    unreadable: list[str] = []
    try:
        for chunk in iter_chunks(inputs, chunk_size, format, merge_objects=True):
            frames, lc = [], None
            problems = list(chunk.problems)
            if chunk.lc is not None:
                lc = chunk.lc
                n_read += 1
                problems += list(lc.problems)
                if replay is not None:
                    lc = lc.replay(min_detections=replay[0], max_detections=replay[1])
                chunk_per = per or ("alert" if not lc.alerts.empty else "object")
                pers.add(chunk_per)
                if lc.n_objects:
                    frames.append(extractor.transform(lc, per=chunk_per))
                if not meta:
                    meta = {"survey": lc.survey, "bands": list(lc.bands)}
            else:
                unreadable += [str(p) for p in chunk.problems]
            if problems:
                frames.append(problem_feature_rows(problems, names))
                summary.problems += [str(p) for p in problems]
            frames = [f for f in frames if len(f)]
            if not frames:
                continue
            df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
            if writer is None:
                writer = TableWriter(
                    out, {}, key=META_KEY, arrow=_features_arrow, leading=META_COLUMNS
                )
            writer.write(df)
            summary.n_rows += len(df)
            summary.n_valid += int(df["valid"].sum())
            for r in df.loc[~df["valid"].to_numpy(bool), "reason"]:
                key = reason_key(str(r))
                summary.reasons[key] = summary.reasons.get(key, 0) + 1
            del (
                chunk,
                lc,
                frames,
                df,
            )  # before the next chunk is read: one chunk in memory at a time
        if n_read == 0:
            detail = "; ".join(unreadable[:3]) or "no input"
            raise InputError(f"nothing could be read: {detail}")
        summary.per = pers.pop() if len(pers) == 1 else "mixed"
        final = {
            "format": FORMAT_VERSION,
            "extractor": extractor.config(),
            "survey": meta.get("survey", ""),
            "bands": meta.get("bands", []),
            "earlyia_version": __version__,
            "per": summary.per,
            "problems": summary.problems[:1000],
        }
        if writer is None:  # every object of every input was dropped: an empty table that says so
            writer = TableWriter(out, {}, key=META_KEY, arrow=_features_arrow, leading=META_COLUMNS)
            writer.write(problem_feature_rows([], names))
        writer.close(final)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    summary.seconds = time.perf_counter() - t0
    return summary
