"""Inputs read piece by piece: memory bounded by a number of input rows, whatever the inputs' size.

:func:`iter_chunks` reads Parquet files by row batches and many small files (Avro alerts) in groups,
keeping the inputs that share an object together when asked, and turns an unreadable input into a
:class:`Problem`. The scoring pipeline, the feature batch and tonight's list read their inputs
through it.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from earlyia.errors import EarlyIAError, InputError, Problem
from earlyia.io import detect_format, expand_inputs, get_reader, read
from earlyia.io.fink import lightcurves_from_fink_frame
from earlyia.io.registry import DAMAGED_INPUT_ERRORS, csv_header
from earlyia.io.table import arrow_to_pandas


@dataclass
class Chunk:
    """Light curves read from part of the input (None when nothing was readable) and the input's
    problems."""

    lc: Any
    problems: list[Problem] = field(default_factory=list)
    label: str = ""


#: Input rows (alerts) read and processed at a time by default: memory is about proportional to it
#: (see docs/scoring.md for the measured peak), the speed barely depends on it above a few thousand.
CHUNK_SIZE = 5_000


def input_problem(source: str | Path, exc: Exception) -> Problem:
    """A :class:`Problem` of a whole input from the error that made it unreadable (without
    repeating its name)."""
    message = str(exc)
    for prefix in (f"{source}: ", f"{Path(str(source)).name}: "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
            break
    return Problem(str(source), None, message)


def iter_chunks(
    inputs: Iterable[str | Path],
    chunk_size: int = CHUNK_SIZE,
    format: str | None = None,
    *,
    merge_objects: bool = False,
) -> Iterator[Chunk]:
    """Read the inputs piece by piece: Parquet files by row batches, many small files (Avro alerts)
    in groups.

    Memory is bounded by ``chunk_size`` input rows (alerts for alert formats, objects for tables of
    light curves), whatever the total size. An unreadable input becomes a problem, never an
    exception. ``merge_objects``: inputs that share an object (listed from their object-id column:
    Parquet, Avro, CSV) are read together, so the object has one light curve as
    :func:`earlyia.io.read` would give it.
    """
    if chunk_size < 1:
        raise InputError(f"chunk size must be >= 1, got {chunk_size}")
    files = expand_inputs(inputs)
    group: list[Path] = []
    avro: list[Path] = []
    formats: dict[Path, str] = {}

    def flush() -> Iterator[Chunk]:
        if group:
            yield from _read_group(list(group), format)
            group.clear()

    for f in files:
        try:
            formats[f] = format or detect_format(f)
        except EarlyIAError as exc:
            yield Chunk(None, [input_problem(f, exc)], str(f))
    readable = [f for f in files if f in formats]
    units = (
        _shared_object_groups(readable, formats)
        if merge_objects and len(readable) > 1
        else [[f] for f in readable]
    )
    for unit in units:
        if len(unit) > 1:
            group.extend(unit)
            yield from flush()
            continue
        f = unit[0]
        fmt = formats[f]
        if f.is_file() and _is_parquet(f):
            yield from _parquet_chunks(f, fmt, chunk_size, get_reader(fmt))
        elif f.is_file() and fmt == "ztf_avro":
            avro.append(f)
        else:
            try:
                yield Chunk(get_reader(fmt).read(f), [], str(f))
            except EarlyIAError as exc:
                yield Chunk(None, [input_problem(f, exc)], str(f))
    for files_of_group in _avro_groups(avro, chunk_size):
        group.extend(files_of_group)
        yield from flush()


def _file_object_hashes(path: Path, fmt: str) -> np.ndarray | None:
    """64-bit hashes of the distinct object ids of one input, read from its id column only (None
    when unknown or unreadable). Hashes, not strings: a million objects cost 8 MB, not a Python
    set of a million strings."""
    if not path.is_file():
        return None
    ids = None
    if fmt == "ztf_avro":
        found = _avro_object_ids(path)
        ids = None if found is None else np.array(sorted(found), dtype=object)
    else:
        try:
            if _is_parquet(path):
                keys = _key_column(path, pq.ParquetFile(path))
                if keys is None:
                    return None
                if pa.types.is_dictionary(keys.type):
                    keys = keys.dictionary_decode()
                ids = (
                    pc.unique(pc.cast(keys, pa.string())).drop_null().to_numpy(zero_copy_only=False)
                )
            else:
                header = csv_header(path)
                for col in ("objectId", "object_id", "object_id ", "SNID", "diaObjectId"):
                    if col in header:
                        values = (
                            pd.read_csv(path, usecols=[col], skipinitialspace=True)[col]
                            .dropna()
                            .unique()
                        )
                        ids = np.array([str(v) for v in values], dtype=object)
                        break
        except DAMAGED_INPUT_ERRORS:
            return None  # unreadable: its reader reports why
    if ids is None:
        return None
    return pd.util.hash_array(np.asarray(ids, dtype=object))


def _shared_object_groups(files: list[Path], formats: Mapping[Path, str]) -> list[list[Path]]:
    """``files`` in groups: files that share an object id are in one group (union-find over the
    files whose id hashes meet; a hash collision only reads two files together), singletons
    otherwise."""
    parent = list(range(len(files)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    hashes, owners = [], []
    for i, f in enumerate(files):
        h = _file_object_hashes(f, formats[f])
        if h is not None and len(h):
            hashes.append(np.unique(h))
            owners.append(np.full(len(hashes[-1]), i, np.int64))
    if hashes:
        h, o = np.concatenate(hashes), np.concatenate(owners)
        del hashes, owners
        order = np.argsort(h, kind="stable")
        h, o = h[order], o[order]
        for j in np.flatnonzero(h[1:] == h[:-1]):
            a, b = find(int(o[j])), find(int(o[j + 1]))
            if a != b:
                parent[a] = b
    groups: dict[int, list[Path]] = {}
    for i, f in enumerate(files):
        groups.setdefault(find(i), []).append(f)
    return list(groups.values())


def _avro_object_ids(path: Path) -> set[str] | None:
    """Object ids of the alerts in an Avro file (None when unreadable: its reader will report
    why)."""
    try:
        with open(path, "rb") as fh:
            return {
                str(rec.get("objectId")) for rec in fastavro.reader(fh) if isinstance(rec, dict)
            }
    except (*DAMAGED_INPUT_ERRORS, StopIteration):
        return None


def _avro_groups(files: list[Path], chunk_size: int) -> list[list[Path]]:
    """Files packed into groups of about ``chunk_size`` alerts; files sharing an object always share
    a group.

    Like Parquet chunks, this keeps every alert of an object in one chunk so scores do not depend on
    the chunk size (costs one extra pass over the object ids when there is more than one group).
    """
    if not files:
        return []
    if len(files) <= chunk_size:
        return [files]
    parent = list(range(len(files)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, f in enumerate(files):
        for oid in _avro_object_ids(f) or ():
            j = owner.setdefault(oid, i)
            if j != i:
                parent[find(i)] = find(j)
    components: dict[int, list[Path]] = {}
    for i, f in enumerate(files):
        components.setdefault(find(i), []).append(f)
    groups: list[list[Path]] = []
    current: list[Path] = []
    for comp in components.values():  # in order of first file
        if current and len(current) + len(comp) > chunk_size:
            groups.append(current)
            current = []
        current.extend(comp)
    if current:
        groups.append(current)
    return groups


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"PAR1"


def _read_group(files: list[Path], format: str | None) -> Iterator[Chunk]:
    try:
        lc = read(files, format=format)
        yield Chunk(lc, [], f"{files[0]} (+{len(files) - 1} files)")
    except EarlyIAError as exc:
        yield Chunk(None, [input_problem(f, exc) for f in files], str(files[0]))


#: Top-level columns naming the object of a row, in the Parquet alert formats.
OBJECT_KEY_COLUMNS = ("objectId", "object_id", "diaObjectId")


def _key_column(path: Path, pf: pq.ParquetFile) -> pa.Array | None:
    """The object id of every row as an Arrow array (None when the format has no row-level object
    column we know)."""
    names = pf.schema_arrow.names
    for col in OBJECT_KEY_COLUMNS:
        if col in names:
            return pq.read_table(path, columns=[col]).column(0).combine_chunks()
    if "diaSource" in names and pa.types.is_struct(pf.schema_arrow.field("diaSource").type):
        src = pq.read_table(path, columns=["diaSource"]).column(0).combine_chunks()
        if src.type.get_field_index("diaObjectId") >= 0:
            return src.field("diaObjectId")
    return None


def _object_keys(path: Path, pf: pq.ParquetFile) -> np.ndarray | None:
    """The object id of every row (None when the format has no row-level object column we know)."""
    keys = _key_column(path, pf)
    return None if keys is None else keys.to_numpy(zero_copy_only=False)


def _object_codes(keys: pa.Array) -> np.ndarray:
    """Per row, the object's number in order of first appearance (Arrow hashing: no Python object
    per row)."""
    if pa.types.is_dictionary(keys.type):
        keys = keys.dictionary_decode()
    codes = pc.dictionary_encode(keys.fill_null("") if keys.null_count else keys).indices
    return codes.to_numpy(zero_copy_only=False).astype(np.int64)


#: Rows decoded at a time in the regrouping pass over an unsorted file (alerts with their history
#: are large).
PASS_BATCH_ROWS = 4096


def _aligned_tables(
    path: Path, pf: pq.ParquetFile, columns: list[str], chunk_size: int
) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """``(table, original row numbers)`` chunks of about ``chunk_size`` rows that never split an
    object's rows.

    Keeping all alerts of an object in one chunk makes the scores independent of the chunk size
    (an alert's history may include points that another alert of its object carried). Files sorted
    by object stream batch by batch; otherwise one pass over the file sends each batch's rows to the
    bucket file of their object's chunk (a temporary folder), then each bucket is read back: memory
    holds one batch and one chunk, never the file.
    """
    keys = _key_column(path, pf)
    n = pf.metadata.num_rows
    if keys is None:  # no object column: plain row batches
        offset = 0
        for batch in pf.iter_batches(batch_size=chunk_size, columns=columns):
            yield pa.Table.from_batches([batch]), np.arange(offset, offset + batch.num_rows)
            offset += batch.num_rows
        return
    codes = _object_codes(keys)
    del keys
    contiguous = bool((np.diff(codes) >= 0).all()) if n > 1 else True
    if contiguous:
        starts_of_object = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
        cuts = [0]
        while cuts[-1] < n:
            i = np.searchsorted(starts_of_object, cuts[-1] + chunk_size, side="left")
            cuts.append(int(starts_of_object[i]) if i < len(starts_of_object) else n)
        buffer: list[pa.Table] = []
        have, k, done = 0, 1, 0
        for batch in pf.iter_batches(batch_size=min(chunk_size, 65_536), columns=columns):
            buffer.append(pa.Table.from_batches([batch]))
            have += batch.num_rows
            while k < len(cuts) and done + have >= cuts[k]:
                table = pa.concat_tables(buffer)
                size = cuts[k] - done
                yield table.slice(0, size), np.arange(done, cuts[k])
                rest = table.slice(size)
                buffer, have, done, k = (
                    ([rest] if rest.num_rows else []),
                    rest.num_rows,
                    cuts[k],
                    k + 1,
                )
        return
    # objects in chunks of about chunk_size rows, in order of first appearance
    counts = np.bincount(codes)
    bucket_of_object = np.zeros(len(counts), np.int64)
    size, b = 0, 0
    for obj, c in enumerate(counts):
        if size and size + c > chunk_size:
            b, size = b + 1, 0
        bucket_of_object[obj] = b
        size += c
    bucket = bucket_of_object[codes]
    del codes
    n_buckets = b + 1
    with tempfile.TemporaryDirectory(prefix="earlyia-chunks-") as tmpdir:
        # Arrow IPC bucket files: a writer buffers nothing (a Parquet writer per bucket would hold
        # its pages)
        writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        row_files: dict[int, list[np.ndarray]] = {}
        options = pa.ipc.IpcWriteOptions(compression="lz4")
        try:
            offset = 0
            for batch in pf.iter_batches(
                batch_size=min(chunk_size, PASS_BATCH_ROWS), columns=columns
            ):
                bb = bucket[offset : offset + batch.num_rows]
                for k in np.unique(bb):
                    sel = np.flatnonzero(bb == k)
                    if k not in writers:
                        writers[k] = pa.ipc.new_file(
                            Path(tmpdir) / f"b{k}.arrow", batch.schema, options=options
                        )
                    writers[k].write_batch(batch.take(pa.array(sel)))
                    row_files.setdefault(int(k), []).append(sel + offset)
                offset += batch.num_rows
                del batch
        finally:
            for w in writers.values():
                w.close()
        # the pass's decoding buffers, before the chunks are processed
        pa.default_memory_pool().release_unused()
        for k in range(n_buckets):
            if k not in writers:
                continue
            bucket_file = Path(tmpdir) / f"b{k}.arrow"
            with pa.memory_map(str(bucket_file)) as source:
                table = (
                    pa.ipc.open_file(source)
                    .read_all()
                    .replace_schema_metadata(pf.schema_arrow.metadata)
                )
            bucket_file.unlink()
            yield table, np.concatenate(row_files.pop(k))
            del table


def _parquet_chunks(path: Path, fmt: str, chunk_size: int, reader) -> Iterator[Chunk]:
    try:
        pf = pq.ParquetFile(path)
        n = pf.metadata.num_rows
    except (OSError, pa.ArrowException) as exc:
        yield Chunk(None, [Problem(str(path), None, f"cannot read Parquet: {exc}")], str(path))
        return
    if n <= chunk_size:  # small files in one go
        try:
            yield Chunk(reader.read(path), [], str(path))
        except EarlyIAError as exc:
            yield Chunk(None, [input_problem(path, exc)], str(path))
        return
    columns = [c for c in pf.schema_arrow.names if not c.startswith("cutout")]
    with tempfile.TemporaryDirectory(prefix="earlyia-score-") as tmpdir:
        try:
            for table, rows in _aligned_tables(path, pf, columns, chunk_size):
                label = f"{path}[{len(rows)} rows from {rows[0] if len(rows) else 0}]"
                try:
                    if fmt == "fink_parquet":
                        lc = _fink_batch(table, path, rows)
                    # any other Parquet format: its own reader on a slice file with the same schema
                    # metadata
                    else:
                        part = (
                            Path(tmpdir)
                            / f"part{rows[0] if len(rows) else 0}{path.suffix or '.parquet'}"
                        )
                        pq.write_table(
                            table.replace_schema_metadata(pf.schema_arrow.metadata), part
                        )
                        try:
                            lc = reader.read(part)
                        except EarlyIAError as exc:
                            raise type(exc)(str(exc).replace(str(part), str(path))) from exc
                        finally:
                            part.unlink()
                        lc.problems = [
                            replace(p, source=str(path)) if p.source == str(part) else p
                            for p in lc.problems
                        ]
                    del table
                    yield Chunk(lc, [], label)
                    del lc
                except EarlyIAError as exc:
                    yield Chunk(None, [input_problem(label, exc)], label)
                except (
                    DAMAGED_INPUT_ERRORS
                ) as exc:  # the Fink batch reader is not behind the registry's guard
                    yield Chunk(
                        None,
                        [Problem(label, None, f"cannot read: {type(exc).__name__}: {exc}")],
                        label,
                    )
        except (OSError, pa.ArrowException) as exc:
            yield Chunk(None, [Problem(str(path), None, f"cannot read Parquet: {exc}")], str(path))


def _fink_batch(table: pa.Table, path: Path, rows: np.ndarray):
    """Rows of a Fink parquet file, with the file's row numbers (and fallback alert ids built
    from them)."""
    df = arrow_to_pandas(table)
    lc = lightcurves_from_fink_frame(df, source=str(path))
    if not lc.alerts.empty and "row" in lc.alerts.columns:
        a = lc.alerts
        local = a["row"].to_numpy(np.int64)
        label = path.name
        ids = a["alert_id"].astype(str).to_numpy(object)
        suffix = np.array([f"@{label}:{r}" for r in local], dtype=object)
        fallback = np.array([i.endswith(s) for i, s in zip(ids, suffix, strict=True)], bool)
        if fallback.any():
            ids[fallback] = [
                i[: -len(s)] + f"@{label}:{rows[r]}"
                for i, s, r in zip(ids[fallback], suffix[fallback], local[fallback], strict=True)
            ]
        lc.alerts = a.assign(row=rows[local], alert_id=ids)
    return lc


def reason_key(reason: str) -> str:
    """A reason with its numbers and source elided, to count rows per kind of failure."""
    return re.sub(r"\d+(\.\d+)?", "N", reason.split(" [")[0])[:80]
