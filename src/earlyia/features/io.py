"""Feature tables on disk: Parquet with the extractor's configuration in the schema metadata.

The metadata makes a feature file self-describing: a model can check that it is scored on the
features it was trained on (names, order, parameters), and a reader can refuse a file that is
not a feature table instead of guessing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from earlyia import __version__
from earlyia.errors import FormatError, SchemaError
from earlyia.features.base import FeatureExtractor, get_extractor
from earlyia.io.table import atomic_write

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
        raise SchemaError(f"feature table lacks the extractor's feature column(s) {missing[:5]}", source=str(path))
    meta = {
        "format": FORMAT_VERSION,
        "extractor": config,
        "survey": survey,
        "bands": list(bands),
        "earlyia_version": __version__,
        **(extra or {}),
    }
    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def is_feature_table(path: str | Path) -> bool:
    """True when ``path`` is a Parquet file carrying :data:`META_KEY` (written by :func:`write_features`)."""
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
    """``(table, metadata)`` of a file written by :func:`write_features` (:class:`FormatError` otherwise)."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise FormatError(f"cannot read as a Parquet feature table: {exc}", source=str(path)) from exc
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise FormatError(
            "not an earlyia feature table (no 'earlyia.features' metadata); produce one with `earlyia features`",
            source=str(path),
        )
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise FormatError(f"corrupted feature metadata: {exc}", source=str(path)) from exc
    if meta.get("format") != FORMAT_VERSION:
        raise FormatError(f"unsupported feature table format {meta.get('format')!r}; expected {FORMAT_VERSION}", source=str(path))
    return table.to_pandas(), meta


def extractor_from_meta(meta: dict[str, Any]) -> FeatureExtractor:
    """Rebuild the extractor that produced a feature table (checks the feature names)."""
    return get_extractor(meta["extractor"])
