"""Tables streamed into one Parquet file, written atomically: the writer of the scores and feature
tables.

Frames arrive chunk by chunk, possibly with different columns (inputs of several formats); the file
appears only when complete (parts in a temporary folder, then a rename).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from earlyia.io.output import make_temp_dir
from earlyia.io.table import atomic_write


def arrow_table(df: pd.DataFrame) -> pa.Table:
    """A frame as an Arrow table (no index), the default conversion of :class:`TableWriter`."""
    return pa.Table.from_pandas(df, preserve_index=False)


class TableWriter:
    """Stream frames into one Parquet file, written atomically (parts in a temporary folder, then a
    rename).

    Frames may carry different columns (inputs of several formats): the first frame's schema is kept
    while later frames fit it (missing columns become null); otherwise the remaining frames go to
    new part files and everything is merged with a unified schema at the end (``leading`` columns
    first). ``metadata`` goes under ``key`` in the schema metadata; :meth:`close` may give the final
    one. The temporary folder (``.<name>.<pid>.<random>.eia-tmp``) is removed on any exit, and those
    of killed runs by the next run.
    """

    def __init__(
        self,
        path: str | Path,
        metadata: Mapping[str, Any],
        *,
        key: bytes,
        arrow: Callable[[pd.DataFrame], pa.Table] | None = None,
        leading: Iterable[str] = (),
        empty_schema: pa.Schema | None = None,
    ):
        self.path = Path(path)
        self.key = key
        self.metadata = {key: json.dumps(metadata, default=str).encode()}
        self._arrow = arrow or arrow_table
        self._leading = list(leading)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmpdir = make_temp_dir(self.path)
        self._parts: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._empty_schema = empty_schema if empty_schema is not None else pa.schema([])
        self.n_rows = 0

    def _new_part(self, schema: pa.Schema) -> None:
        if self._writer is not None:
            self._writer.close()
        part = Path(self._tmpdir) / f"part{len(self._parts):05d}.parquet"
        self._parts.append(part)
        self._schema = schema
        self._writer = pq.ParquetWriter(
            part, schema.with_metadata(self.metadata), compression="zstd"
        )

    def write(self, df: pd.DataFrame) -> None:
        table = self._arrow(df)
        if self._schema is None:
            self._new_part(table.schema)
        else:
            fitted = fit_schema(table, self._schema)
            if fitted is None:
                self._new_part(table.schema)
            else:
                table = fitted
        self._writer.write_table(table)
        self.n_rows += table.num_rows

    def close(self, metadata: Mapping[str, Any] | None = None) -> Path:
        """Finish and atomically move the file into place (``metadata``: the final metadata, when
        it changed)."""
        rewrite = False
        if metadata is not None:
            final = {self.key: json.dumps(metadata, default=str).encode()}
            rewrite = final != self.metadata
            self.metadata = final
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        try:
            if not self._parts:
                empty = pa.Table.from_pylist([], schema=self._empty_schema)
                atomic_write(
                    self.path,
                    lambda tmp: pq.write_table(empty.replace_schema_metadata(self.metadata), tmp),
                )
            elif len(self._parts) == 1 and not rewrite:
                self._finish_single()
            else:
                self._merge_parts()
        finally:
            self.abort()
        return self.path

    def _finish_single(self) -> None:
        # the part already carries the metadata and lives next to the output: one rename, no rewrite
        os.replace(self._parts[0], self.path)

    def _merge_parts(self) -> None:
        schemas = [pq.read_schema(p) for p in self._parts]
        unified = pa.unify_schemas(
            [s.remove_metadata() for s in schemas], promote_options="permissive"
        )
        unified = _exact_ids(unified, schemas, self._parts)
        lead = [n for n in self._leading if n in unified.names]
        order = lead + [n for n in unified.names if n not in lead]
        unified = pa.schema([unified.field(n) for n in order]).with_metadata(self.metadata)

        def write(tmp: str) -> None:
            with pq.ParquetWriter(tmp, unified, compression="zstd") as w:
                for p in self._parts:
                    pf = pq.ParquetFile(p)
                    for i in range(pf.num_row_groups):
                        w.write_table(fit_schema(pf.read_row_group(i), unified, strict=True))

        atomic_write(self.path, write)

    def abort(self) -> None:
        """Remove the temporary parts (the output path is never touched)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for p in self._parts:
            p.unlink(missing_ok=True)
        if os.path.isdir(self._tmpdir):
            shutil.rmtree(self._tmpdir, ignore_errors=True)


def _exact_ids(unified: pa.Schema, schemas: list[pa.Schema], parts: list[Path]) -> pa.Schema:
    """``unified`` with string columns where parts disagree on integer vs float and an integer is
    beyond 2**53 (a float64 cannot hold it: a ZTF ``candid``). Such columns keep every digit as
    text."""
    fields = []
    for f in unified:
        if pa.types.is_floating(f.type):
            int_parts = [
                p
                for p, s in zip(parts, schemas, strict=True)
                if f.name in s.names and pa.types.is_integer(s.field(f.name).type)
            ]
            for p in int_parts:
                col = pq.read_table(p, columns=[f.name]).column(0)
                bounds = pc.min_max(col)
                big = max(abs(bounds["min"].as_py() or 0), abs(bounds["max"].as_py() or 0))
                if big > 2**53:
                    f = pa.field(f.name, pa.string())
                    break
        fields.append(f)
    return pa.schema(fields, metadata=unified.metadata)


def fit_schema(table: pa.Table, schema: pa.Schema, strict: bool = False) -> pa.Table | None:
    """``table`` cast to ``schema`` (missing columns null); None when it has other columns or
    types that do not cast."""
    extra = [n for n in table.column_names if n not in schema.names]
    if extra:
        return None
    cols = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            if col.type != f.type:
                try:
                    col = col.cast(f.type)
                except (pa.ArrowException, ValueError):
                    if strict:
                        col = (
                            pa.array(
                                [None if v is None else str(v) for v in col.to_pylist()], f.type
                            )
                            if pa.types.is_string(f.type)
                            else col
                        )
                    else:
                        return None
            cols.append(col)
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)
