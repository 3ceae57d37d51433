"""Apache Spark adapter: the same pure scoring and feature functions, on Spark DataFrames.

A thin adapter, never a second implementation: each Arrow batch becomes a pandas frame, then a
:class:`~earlyia.io.table.LightCurves` (:func:`earlyia.io.fink.lightcurves_from_fink_frame` for
Fink's ZTF schema, :meth:`LightCurves.from_arrow` for the canonical table), then goes through
:func:`earlyia.score.pipeline.score_lightcurves` (or an extractor's ``transform``) exactly as local
scoring does, and back to Arrow. So Spark and local scores are identical (tests check it).

* Fink's ZTF schema: one row per alert, ``objectId, cjd, cmagpsf, csigmapsf, cfid`` (+
  ``cdsxmatch``, ``candid``, flat ``ndethist, drb, classtar...`` or a nested ``candidate`` struct,
  broker scores). The alerts of an object merge into one light curve, so rows are partitioned and
  sorted by ``objectId`` and an object is never split between two batches (the batch iterator holds
  the last object back until its rows are complete).
* The canonical table (``LightCurves.to_parquet``): one row per object, so batches are independent.
* The model is shipped once (broadcast bytes) and loaded at most once per Python worker process
  (a module-level cache keyed by the model's content hash), never once per batch.
  :func:`worker_stats` exposes a per-process load counter so tests can prove it.

Python workers must run an interpreter with earlyia's dependencies: :func:`get_session` sets
``PYSPARK_PYTHON`` to ``sys.executable`` unless it is already set. On a cluster it also ships the
driver's earlyia package to the executors (:func:`ship_package`), so they run the driver's code.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from earlyia import __version__
from earlyia.errors import ConfigError, EarlyIAError, InputError, Problem, SchemaError
from earlyia.features import get_extractor
from earlyia.io.fink import lightcurves_from_fink_frame
from earlyia.io.table import LightCurves, atomic_write
from earlyia.io.ztf import lightcurves_from_alert_table
from earlyia.model.artifact import Model
from earlyia.score.pipeline import concat_rows, problem_rows, score_lightcurves, scores_metadata
from earlyia.score.scores_file import ScoresWriter, to_arrow

#: The earlyia package this process runs (shipped to executors by :func:`ship_package`).
PACKAGE_DIR = Path(__file__).resolve().parent

#: Process-level caches of the Python worker (one per executor process, reused across tasks).
_MODELS: dict[str, Any] = {}
_STATS: dict[str, float] = {"model_loads": 0, "batches": 0, "seconds": 0.0}

FINK_KEY = "objectId"


def worker_stats() -> dict[str, int]:
    """This process's counters: models loaded, batches processed, seconds spent in the batch
    function."""
    return {"pid": os.getpid(), **_STATS}


# ----------------------------------------------------------------------------------------------
# session
_LOCAL_MASTER = re.compile(r"local(\[[^\]]+\])?$")
_KNOWN_MASTER = re.compile(
    r"(local(\[[^\]]+\])?|local-cluster\[[^\]]+\]|spark://.+|yarn|k8s://.+)$"
)


def is_local_master(master: str) -> bool:
    """``local`` / ``local[N]`` / ``local[*]``: tasks run in Python workers of this machine, with
    this interpreter."""
    return bool(_LOCAL_MASTER.match(master))


def check_master(master: str, *, timeout: float = 5.0) -> None:
    """Refuse an unknown master URL, or a standalone master (``spark://host:port[,host:port]``)
    nobody answers at.

    Spark itself would wait for executors for a minute or more before giving up on an unreachable
    standalone master; this fails at once with the address to fix.
    """
    if not _KNOWN_MASTER.match(master):
        raise ConfigError(
            f"--master {master!r}: expected local[N], spark://HOST:PORT, yarn or k8s://URL"
        )
    if not master.startswith("spark://"):
        return
    errors = []
    for hostport in master[len("spark://") :].split(","):
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"--master {master!r}: a standalone master is spark://HOST:PORT (default port 7077)"
            )
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
            return
        except OSError as exc:
            errors.append(f"{hostport}: {exc.strerror or exc}")
    raise ConfigError(
        f"cannot reach the Spark master {master} ({'; '.join(errors)}): is it running, and "
        "is the address right?"
    )


def get_session(
    master: str = "local[*]",
    *,
    app_name: str = "earlyia",
    shuffle_partitions: int | None = None,
    conf: dict | None = None,
    ship_code: bool | None = None,
):
    """A SparkSession whose Python workers use this interpreter (so earlyia and pandas are found).

    On a cluster (any master but ``local[...]``) the executors run the driver's own earlyia code,
    shipped once with the job (:func:`ship_package`), unless ``ship_code=False``. ``conf`` entries
    (``spark.executor.memory``, ``spark.pyspark.python``...) override the defaults set here.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigError("Spark support needs pyspark: pip install 'earlyia[spark]'") from exc
    check_master(master)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName(app_name)
    builder = builder.config("spark.ui.enabled", "false").config(
        "spark.sql.execution.arrow.pyspark.enabled", "true"
    )
    builder = builder.config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
    if shuffle_partitions is not None:
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    for k, v in (conf or {}).items():
        builder = builder.config(k, str(v))
    session = builder.getOrCreate()
    if (not is_local_master(master)) if ship_code is None else ship_code:
        ship_package(session)
    return session


def code_archive(directory: str | Path) -> Path:
    """The earlyia package this process runs, as ``earlyia-<version>-<hash>.zip`` in ``directory``.

    Python sources and package data only (no bytecode), with fixed timestamps: the same code gives
    the same bytes and name.
    """
    package = PACKAGE_DIR
    members = sorted(
        f
        for f in package.rglob("*")
        if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".pyc", ".pyo")
    )
    digest = hashlib.sha256()
    for f in members:
        digest.update(
            f.relative_to(package.parent).as_posix().encode() + b"\0" + f.read_bytes() + b"\0"
        )
    target = Path(directory) / f"earlyia-{__version__}-{digest.hexdigest()[:12]}.zip"
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in members:
            info = zipfile.ZipInfo(
                f.relative_to(package.parent).as_posix(), date_time=(1980, 1, 1, 0, 0, 0)
            )
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, f.read_bytes())
    os.replace(tmp, target)
    return target


def ship_package(spark) -> str | None:
    """Send the driver's earlyia package to the executors (``addPyFile``), once per Spark
    application.

    Executors then import exactly the driver's code, ahead of any earlyia installed on them (their
    Python still needs earlyia's dependencies: numpy, pandas, pyarrow, scikit-learn...). Returns the
    archive name, or None when earlyia does not run from a directory (already shipped by the user).
    """
    if not PACKAGE_DIR.is_dir():
        return None
    sc = spark.sparkContext
    directory = Path(tempfile.mkdtemp(prefix="earlyia-code-"))
    atexit.register(
        shutil.rmtree, directory, ignore_errors=True
    )  # Spark serves the file to new executors until then
    archive = code_archive(directory)
    if archive.name not in (getattr(sc, "_python_includes", None) or []):
        sc.addPyFile(str(archive))
    return archive.name


# ----------------------------------------------------------------------------------------------
# model shipping
@dataclass(frozen=True)
class ModelRef:
    """What a task needs to get the model: its content hash and the file bytes (broadcast) or a
    path."""

    key: str
    broadcast: Any = None
    path: str | None = None

    def get(self):
        """The model, loaded at most once per process (cached by ``key``)."""
        model = _MODELS.get(self.key)
        if model is None:
            model = _load_model(self)
            _MODELS[self.key] = model
            _STATS["model_loads"] += 1
        return model


def _load_model(ref: ModelRef):
    if ref.broadcast is None:
        return Model.load(ref.path)
    return _model_from_bytes(ref.broadcast.value)


def _model_from_bytes(data: bytes):
    """``Model.load`` on bytes (the loader verifies the content hash, so corrupted bytes are
    refused)."""
    fd, tmp = tempfile.mkstemp(suffix=".earlyia-model")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return Model.load(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def ship_model(spark, model_path: str | Path, *, broadcast: bool = True) -> ModelRef:
    """Verify the model on the driver and make it available to the executors (broadcast bytes by
    default)."""
    model_path = Path(model_path)
    Model.load(
        model_path
    )  # refuse a bad model (with the path in the message) before any task starts
    data = model_path.read_bytes()
    model = _model_from_bytes(data)  # exactly the bytes the executors get
    key = f"{model.hash}:{hashlib.sha256(data).hexdigest()[:16]}"
    _MODELS.setdefault(key, model)
    if not broadcast:
        return ModelRef(key=key, path=str(model_path.resolve()))
    return ModelRef(key=key, broadcast=spark.sparkContext.broadcast(data))


# ----------------------------------------------------------------------------------------------
# pure batch functions
#: Provenance columns the Spark job adds (file name and row number of each input row).
PROV_SOURCE, PROV_ROW = "__earlyia_source", "__earlyia_row"


def _fink_lightcurves(pdf: pd.DataFrame, source: str, survey: str):
    """Fink rows -> LightCurves; with provenance columns, alert ``source``/``row`` (and fallback
    ids) become the file's.

    Locally a Fink file is read whole, so ``row`` is the row in the file and an alert without
    ``candid`` gets the id ``<objectId>@<file>:<row>``; in a Spark batch the reader only sees the
    batch, so the file name and row number travel in two extra columns and are put back here.
    """
    if PROV_SOURCE not in pdf.columns:
        return lightcurves_from_fink_frame(pdf, source=source, survey=survey)
    pdf = pdf.reset_index(drop=True)
    files = pdf[PROV_SOURCE].astype(str).to_numpy(object)
    rows = pd.to_numeric(pdf[PROV_ROW], errors="coerce").to_numpy(np.float64)
    lc = lightcurves_from_fink_frame(
        pdf.drop(columns=[PROV_SOURCE, PROV_ROW]), source=source, survey=survey
    )
    if lc.alerts.empty or "row" not in lc.alerts.columns:
        return lc
    a = lc.alerts
    local = a["row"].to_numpy(np.int64)
    label = Path(source).name if source and not source.startswith("<") else source
    oid = lc.objects["object_id"].astype(str).to_numpy(object)[a["object_index"].to_numpy(np.int64)]
    ids = a["alert_id"].astype(str).to_numpy(object)
    new_rows = rows[local]
    known = np.isfinite(new_rows)
    for k in np.flatnonzero(known):
        if ids[k] == f"{oid[k]}@{label}:{local[k]}":
            ids[k] = f"{oid[k]}@{files[local[k]]}:{int(new_rows[k])}"
    row_out = np.where(known, new_rows, local).astype(np.int64)
    lc.alerts = a.assign(alert_id=ids, source=files[local], row=row_out)
    lc.problems = [_file_row_problem(p, rows) for p in lc.problems]
    return lc


def _file_row_problem(problem, rows: np.ndarray):
    """A reader problem "row <i>: ..." about batch row i, renumbered to the row in the file."""
    m = re.match(r"row (\d+):", problem.reason)
    if not m or int(m.group(1)) >= len(rows) or not np.isfinite(rows[int(m.group(1))]):
        return problem
    return replace(problem, reason=f"row {int(rows[int(m.group(1))])}:" + problem.reason[m.end() :])


def lightcurves_from_batch(
    pdf: pd.DataFrame | pa.Table,
    kind: str,
    *,
    source: str,
    survey: str = "ZTF",
    table_meta: bytes | None = None,
):
    """A batch (pandas, or Arrow for ZTF alerts) -> LightCurves, exactly as the local readers do."""
    if kind == "ztf_alerts":
        table = (
            pdf if isinstance(pdf, pa.Table) else pa.Table.from_pandas(pdf, preserve_index=False)
        )
        return lightcurves_from_alert_table(table, source=source, survey=survey)
    if isinstance(pdf, pa.Table):
        pdf = pdf.to_pandas(maps_as_pydicts="strict")
    if kind == "fink":
        return _fink_lightcurves(pdf, source, survey)
    if kind == "canonical":
        table = pa.Table.from_pandas(pdf.rename(columns=_unescape), preserve_index=False)
        table = table.replace_schema_metadata({b"earlyia": table_meta})
        return LightCurves.from_arrow(table, source=source)
    raise InputError(f"unknown input kind {kind!r}; expected 'fink', 'ztf_alerts' or 'canonical'")


def score_batch(
    pdf: pd.DataFrame | pa.Table,
    model,
    *,
    kind: str = "fink",
    source: str = "<spark>",
    survey: str = "ZTF",
    table_meta: bytes | None = None,
    score_kwargs: dict | None = None,
) -> pd.DataFrame:
    """Scores of one batch: the same calls as local scoring (reader -> ``score_lightcurves``).

    Rows the reader cannot use become SCORES rows with the reason (``passed=False``), as in
    ``earlyia score``; a batch that cannot be read at all becomes one such row: a bad alert never
    fails the Spark job.
    """
    try:
        lc = lightcurves_from_batch(pdf, kind, source=source, survey=survey, table_meta=table_meta)
    except EarlyIAError as exc:
        return problem_rows([Problem(source, None, str(exc))], model.features)
    out = score_lightcurves(lc, model, **(score_kwargs or {}))
    if lc.problems:
        out = concat_rows([out, problem_rows(lc.problems, model.features)])
    return out


def features_batch(
    pdf: pd.DataFrame | pa.Table,
    extractor_config: dict,
    *,
    kind: str = "fink",
    source: str = "<spark>",
    survey: str = "ZTF",
    table_meta: bytes | None = None,
    per: str = "alert",
) -> pd.DataFrame:
    """Features of one batch: the reader then the extractor's ``transform``, as locally."""
    lc = lightcurves_from_batch(pdf, kind, source=source, survey=survey, table_meta=table_meta)
    return get_extractor(extractor_config).transform(lc, per=per)


# ----------------------------------------------------------------------------------------------
# arrow plumbing
def _normal_type(t: pa.DataType) -> pa.DataType:
    """Types Spark understands: large strings/lists become regular ones, null becomes string."""
    if pa.types.is_large_string(t) or pa.types.is_string(t) or pa.types.is_null(t):
        return pa.string()
    if pa.types.is_large_list(t) or pa.types.is_list(t):
        return pa.list_(_normal_type(t.value_type))
    if pa.types.is_dictionary(t):
        return _normal_type(t.value_type)
    return t


def _arrow(df: pd.DataFrame) -> pa.Table:
    """A frame as Arrow with the SCORES types for the fixed columns (the local writer's
    conversion)."""
    return to_arrow(df)


def output_schema(sample: pd.DataFrame) -> pa.Schema:
    """The Arrow schema of a function's output, inferred from its result on a sample batch."""
    inferred = _arrow(sample).schema
    return pa.schema([pa.field(f.name, _normal_type(f.type)) for f in inferred])


def _to_batch(out: pd.DataFrame, schema: pa.Schema) -> pa.RecordBatch:
    """``out`` in exactly ``schema`` (missing columns null, extra columns dropped, types cast)."""
    table = _arrow(out)
    cols = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name).combine_chunks()
            if col.type != f.type:
                stringy = (
                    pa.types.is_string(col.type)
                    or pa.types.is_large_string(col.type)
                    or pa.types.is_null(col.type)
                )
                if pa.types.is_string(f.type) and not stringy:
                    col = pa.array(
                        [None if v is None else str(v) for v in col.to_pylist()], pa.string()
                    )
                else:
                    col = col.cast(f.type)
            cols.append(col)
        else:
            cols.append(pa.nulls(len(out), f.type))
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def _grouped_tables(batches: Iterator[pa.RecordBatch], key: str | None) -> Iterator[pa.Table]:
    """Arrow tables from Arrow batches; with ``key``, rows of one key value never straddle two
    tables.

    Input must be sorted by ``key`` within the partition: the trailing key of each batch is held
    back and prepended to the next one.
    """
    carry: pa.Table | None = None
    for rb in batches:
        table = pa.Table.from_batches([rb])
        if carry is not None and carry.num_rows:
            table = pa.concat_tables([carry, table]).combine_chunks()
            carry = None
        if key is None or table.num_rows == 0:
            if table.num_rows:
                yield table
            continue
        keys = table.column(key).to_numpy(zero_copy_only=False)
        first_tail = int(np.argmax(keys == keys[-1]))
        carry = table.slice(first_tail)
        if first_tail:
            yield table.slice(0, first_tail)
    if carry is not None and carry.num_rows:
        yield carry


def _grouped_frames(batches: Iterator[pa.RecordBatch], key: str | None) -> Iterator[pd.DataFrame]:
    """:func:`_grouped_tables` as pandas frames."""
    for table in _grouped_tables(batches, key):
        yield table.to_pandas(maps_as_pydicts="strict")


def _count_batch(seconds: float) -> None:
    _STATS["batches"] += 1
    _STATS["seconds"] += seconds


def _make_mapper(
    fn: Callable[[Any], pd.DataFrame], schema: pa.Schema, key: str | None, arrow_input: bool = False
):
    # Closures are pickled by value with copies of the module globals they name: touch the
    # process-level counters only through module-level functions (pickled by reference).
    diagnostics = "_worker_pid" in schema.names

    def mapper(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for table in _grouped_tables(batches, key):
            t0 = time.perf_counter()
            out = fn(table if arrow_input else table.to_pandas(maps_as_pydicts="strict"))
            _count_batch(time.perf_counter() - t0)
            if diagnostics:
                stats = worker_stats()
                out = out.assign(
                    _worker_pid=stats["pid"],
                    _model_loads=stats["model_loads"],
                    _batch=stats["batches"],
                )
            yield _to_batch(out, schema)

    return mapper


# ----------------------------------------------------------------------------------------------
# Spark entry points
#: Spark resolves "a.b" as a struct field: the canonical table's ``alert.*`` columns travel renamed.
_DOT = "__dot__"


def _escape(name: str) -> str:
    return name.replace(".", _DOT)


def _unescape(name: str) -> str:
    return name.replace(_DOT, ".")


def _spark_safe(df):
    """``df`` without image cutouts, dots in column names replaced (undone inside the tasks)."""
    cutouts = [c for c in df.columns if c.startswith("cutout")]
    if cutouts:
        df = df.drop(*cutouts)
    if any("." in c for c in df.columns):
        return df.toDF(*[_escape(c) for c in df.columns])
    return df


def input_kind(columns: Sequence[str]) -> str:
    """``fink`` (concatenated ``c*`` columns), ``canonical`` (earlyia light-curve table) or an
    error."""
    cols = set(columns)
    fink_lists = {FINK_KEY, "cjd", "cmagpsf", "csigmapsf", "cfid"} <= cols
    ztf = FINK_KEY in cols and ("candidate" in cols or {"cand_jd", "cand_magpsf"} <= cols)
    if ztf and ("prv_candidates" in cols or not fink_lists):  # the local detection rule (io.ztf)
        return "ztf_alerts"
    if fink_lists:
        return "fink"
    if {"object_id", "mjd", "band", "flux", "flux_err", "detected"} <= cols:
        return "canonical"
    raise SchemaError(
        "a Spark DataFrame to score needs Fink's ZTF columns (objectId, cjd, cmagpsf, "
        "csigmapsf, cfid), ZTF alerts "
        "(objectId, candidate, prv_candidates) or an earlyia light-curve table; got columns "
        f"{sorted(cols)[:15]}"
    )


def _prepare(df, kind: str, partitions: int | None, group_objects: bool = True):
    if kind not in ("fink", "ztf_alerts") or not group_objects:
        return df.repartition(partitions) if partitions else df
    n = partitions or df.sparkSession.sparkContext.defaultParallelism
    return df.repartition(n, FINK_KEY).sortWithinPartitions(FINK_KEY)


def _sample_frame(df, n: int = 32, arrow: bool = False):
    """A few rows of ``df`` on the driver, to infer the output schema (it depends on the columns
    only)."""
    # through Arrow, as the tasks see it (structs become dicts, not Rows)
    table = _collect_arrow(df.limit(n))
    return table if arrow else table.to_pandas(maps_as_pydicts="strict")


def map_spark(
    df,
    fn: Callable[[Any], pd.DataFrame],
    *,
    kind: str,
    partitions: int | None = None,
    diagnostics: bool = False,
    group_objects: bool = True,
):
    """Apply a pandas -> pandas batch function to a Spark DataFrame, grouping Fink rows by object.

    ``group_objects=False`` skips the shuffle that brings an object's alerts together: faster, and
    exact when every alert row carries its full history (a live Fink/ZTF stream), but an alert
    no longer borrows older points that only another row of its object knew.
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    arrow_input = kind == "ztf_alerts"
    sample = _sample_frame(df, arrow=arrow_input)
    out = fn(sample)
    schema = output_schema(out)
    if diagnostics:
        for name in ("_worker_pid", "_model_loads", "_batch"):
            schema = schema.append(pa.field(name, pa.int64()))
    prepared = _prepare(df, kind, partitions, group_objects)
    key = FINK_KEY if kind in ("fink", "ztf_alerts") and group_objects else None
    return prepared.mapInArrow(
        _make_mapper(fn, schema, key, arrow_input), from_arrow_schema(schema)
    )


def score_dataframe(
    df,
    model_ref: ModelRef,
    *,
    source: str = "<spark>",
    survey: str = "ZTF",
    table_meta: bytes | None = None,
    partitions: int | None = None,
    score_kwargs: dict | None = None,
    diagnostics: bool = False,
    group_objects: bool = True,
):
    """Scores of a Spark DataFrame (Fink ZTF schema or canonical table): a Spark DataFrame, one row
    per alert.

    Tables whose column names differ only in case (ELAsTiCC: ``dec`` and the truth's ``DEC``) need
    the session's ``spark.sql.caseSensitive`` = true, as :func:`score_spark` sets while it runs.
    """
    kind = input_kind(df.columns)
    df = _spark_safe(df)
    if kind == "canonical" and table_meta is None:
        raise InputError(
            "scoring a canonical light-curve table needs its 'earlyia' schema metadata (table_meta)"
        )
    kw = dict(score_kwargs or {})

    def fn(pdf: pd.DataFrame) -> pd.DataFrame:
        return score_batch(
            pdf,
            model_ref.get(),
            kind=kind,
            source=source,
            survey=survey,
            table_meta=table_meta,
            score_kwargs=kw,
        )

    return map_spark(
        df,
        fn,
        kind=kind,
        partitions=partitions,
        diagnostics=diagnostics,
        group_objects=group_objects,
    )


def score_rows_frame(
    pdf: pd.DataFrame, model, *, survey: str = "ZTF", score_kwargs: dict | None = None
) -> pd.Series:
    """One score per input row, in input order (each row = one alert; rows of one object still
    merge)."""
    pdf = pdf.reset_index(drop=True)
    ids = [f"row{i}" for i in range(len(pdf))]
    batch = pdf.drop(columns=[c for c in ("candid",) if c in pdf.columns]).assign(candid=ids)
    out = score_batch(
        batch, model, kind="fink", source="<udf>", survey=survey, score_kwargs=score_kwargs
    )
    return out.set_index("alert_id")["score"].reindex(ids).reset_index(drop=True).astype(np.float64)


def make_score_udf(model_ref: ModelRef, *, survey: str = "ZTF", score_kwargs: dict | None = None):
    """A scalar pandas UDF for Fink-style pipelines: ``df.withColumn("earlyia",
    udf(struct(cols...)))``.

    Give it ``pyspark.sql.functions.struct`` of the Fink columns (``objectId, cjd, cmagpsf,
    csigmapsf, cfid`` and any of ``cdsxmatch, ndethist, drb, classtar, jdstarthist, candidate,
    ...``); it returns our score per row (0.0 where the selection or the features fail). Rows are
    not grouped by object (each alert carries its history), so a row with no other row of its object
    in the batch is scored on its own history, as Fink's modules do.
    """
    from pyspark.sql.functions import pandas_udf

    kw = dict(score_kwargs or {})

    @pandas_udf("double")
    def earlyia_score(alerts: pd.DataFrame) -> pd.Series:
        return score_rows_frame(alerts, model_ref.get(), survey=survey, score_kwargs=kw)

    return earlyia_score


def features_dataframe(
    df,
    extractor_config: dict,
    *,
    source: str = "<spark>",
    survey: str = "ZTF",
    table_meta: bytes | None = None,
    partitions: int | None = None,
    per: str = "alert",
):
    """Feature table of a Spark DataFrame, computed by the extractor's own ``transform``."""
    kind = input_kind(df.columns)
    df = _spark_safe(df)
    cfg = dict(extractor_config)

    def fn(pdf: pd.DataFrame) -> pd.DataFrame:
        return features_batch(
            pdf, cfg, kind=kind, source=source, survey=survey, table_meta=table_meta, per=per
        )

    return map_spark(df, fn, kind=kind, partitions=partitions)


def score_spark(
    inputs: str | Path | Sequence[str | Path],
    model_path: str | Path,
    out: str | Path,
    master: str = "local[*]",
    *,
    spark=None,
    partitions: int | None = None,
    survey: str = "ZTF",
    score_kwargs: dict | None = None,
    group_objects: bool = True,
    conf: dict | None = None,
) -> dict:
    """``earlyia score --engine spark``: score Parquet inputs with Spark and write the scores.

    ``out`` ending in ``.parquet`` is one file written atomically (collected on the driver, same
    layout as local scoring); any other ``out`` is a directory of Parquet part files written by
    the executors (for inputs too large for the driver). Returns a small summary.

    ``master`` and ``conf`` (Spark settings such as ``spark.executor.memory``) are used when
    ``spark`` is not given; on a cluster the executors get earlyia's code and the model from the
    driver (see docs/spark.md), and inputs and output directories must be paths every node sees.
    """
    paths = [Path(p) for p in ([inputs] if isinstance(inputs, (str, Path)) else inputs)]
    if not paths:
        raise InputError("no input file to score")
    for p in paths:
        if not p.exists():
            raise InputError(f"{p}: input not found")
    files = [f for p in paths for f in (sorted(p.rglob("*.parquet")) if p.is_dir() else [p])]
    if not files:
        raise InputError(
            f"no Parquet file under {[str(p) for p in paths]}: the Spark engine reads Parquet"
        )
    # a truncated or damaged file becomes reason rows, as in local scoring; Spark never sees it
    problems = []
    good = []
    for f in files:
        reason = _parquet_problem(f, full=False)
        if reason is None:
            good.append(f)
        else:
            problems.append(Problem(str(f), None, reason))
    session = spark or get_session(master, conf=conf)
    ref = ship_model(session, model_path)
    out = Path(out)

    def run(ok: list[Path]) -> int:
        if not ok:
            return _write_spark_scores(None, out, ref, problems, files, session)
        return _score_spark_files(
            session, ok, ref, out, problems, files, survey, partitions, score_kwargs, group_objects
        )

    with _case_sensitive(session):
        try:
            n = run(good)
        except _spark_errors() as exc:
            # a file whose footer reads but whose pages are damaged fails the job: find it, report
            # it, score the rest
            bad = {f: r for f in good if (r := _parquet_problem(f, full=True)) is not None}
            if not bad:
                first = (
                    str(exc).strip().splitlines()[0][:300]
                    if str(exc).strip()
                    else type(exc).__name__
                )
                raise InputError(f"the Spark job failed: {first}") from exc
            problems += [Problem(str(f), None, r) for f, r in bad.items()]
            n = run([f for f in good if f not in bad])
    return {
        "engine": "spark",
        "master": session.sparkContext.master,
        "inputs": [str(f) for f in files],
        "out": str(out),
        "n_alerts": int(n),
    }


def _spark_errors() -> tuple[type[BaseException], ...]:
    """What a failed Spark job raises in the driver (JVM errors through py4j, captured Spark
    exceptions)."""
    errors: list[type[BaseException]] = []
    try:
        from pyspark.errors import PySparkException

        errors.append(PySparkException)
    except ImportError:
        pass
    try:
        from py4j.protocol import Py4JJavaError

        errors.append(Py4JJavaError)
    except ImportError:
        pass
    return tuple(errors)


def _parquet_problem(path: Path, *, full: bool) -> str | None:
    """Why a Parquet file cannot be read (its footer; every page when ``full``), None when it
    can."""
    try:
        pf = pq.ParquetFile(path)
        _ = pf.metadata.num_rows
        if full:
            for i in range(pf.num_row_groups):
                pf.read_row_group(i)
    except (OSError, pa.ArrowException) as exc:
        return f"cannot read Parquet ({exc}); is the file complete?"
    return None


def _score_spark_files(
    session, files, ref, out, problems, all_files, survey, partitions, score_kwargs, group_objects
) -> int:
    table_meta = (pq.read_schema(files[0]).metadata or {}).get(b"earlyia")
    df = with_provenance(session.read.parquet(*[str(f) for f in files]))
    source = (
        str(files[0]) if len(files) == 1 else f"{len(files)} files"
    )  # as the local reader names it
    scored = score_dataframe(
        df,
        ref,
        source=source,
        survey=survey,
        table_meta=table_meta,
        partitions=partitions,
        score_kwargs=score_kwargs,
        group_objects=group_objects,
    )
    return _write_spark_scores(scored, out, ref, problems, all_files, session)


def _write_spark_scores(scored, out: Path, ref, problems, files, session) -> int:
    """Write the scores (``.parquet``: one file on the driver; else a folder of part files) with
    a reason row per problem; returns the number of rows."""
    model = ref.get()
    extra = problem_rows(problems, model.features) if problems else None
    if out.suffix == ".parquet":
        frames = []
        if scored is not None:
            result = _collect_arrow(scored).to_pandas()
            order = [c for c in ("object_id", "mjd", "alert_id") if c in result.columns]
            frames.append(result.sort_values(order, kind="mergesort").reset_index(drop=True))
        if extra is not None:
            frames.append(extra)
        result = concat_rows(frames) if frames else problem_rows([], model.features)
        _write_scores(
            result, out, model, inputs=[str(f) for f in files], master=session.sparkContext.master
        )
        return len(result)
    n = 0
    if scored is not None:
        scored.write.mode("overwrite").parquet(str(out))
        n = session.read.parquet(str(out)).count()
    if extra is not None:
        out.mkdir(parents=True, exist_ok=True)
        existing = sorted(out.glob("part-*.parquet"))
        table = _arrow(extra)
        if existing:
            schema = pq.read_schema(existing[0])
            table = pa.Table.from_batches([_to_batch(extra, schema.remove_metadata())])
        atomic_write(out / "part-problems.parquet", lambda tmp: pq.write_table(table, tmp))
        n += len(extra)
    return n


@contextmanager
def _case_sensitive(session):
    """Column names compared case-sensitively while a job is built and run, then the session's
    setting back.

    ELAsTiCC tables hold both alert columns (``dec``) and SNANA truth columns (``DEC``): Spark's
    default case-insensitive resolution refuses to read them at all.
    """
    key = "spark.sql.caseSensitive"
    before = session.conf.get(key, "false")
    session.conf.set(key, "true")
    try:
        yield
    finally:
        session.conf.set(key, before)


def with_provenance(df):
    """``df`` plus each row's file name and row number in the file (so alert ids match local
    reading).

    Uses Spark's ``_metadata.file_name`` / ``_metadata.row_index`` (Parquet, Spark >= 3.5/4); when
    they are unavailable the frame is returned unchanged (alerts without ``candid`` then get
    batch-local ids).
    """
    if input_kind(df.columns) != "fink":
        return df
    from pyspark.sql import functions as sf
    from pyspark.sql.utils import AnalysisException

    try:
        return df.select(
            "*",
            sf.col("_metadata.file_name").alias(PROV_SOURCE),
            sf.col("_metadata.row_index").alias(PROV_ROW),
        )
    except AnalysisException:
        return df


def _collect_arrow(sdf) -> pa.Table:
    if hasattr(sdf, "toArrow"):
        return sdf.toArrow()
    return pa.Table.from_pandas(sdf.toPandas(), preserve_index=False)


def _write_scores(result: pd.DataFrame, out: Path, model, **extra) -> None:
    """The local scorer's writer: the same file layout and metadata (plus ``engine``) as
    ``earlyia score``."""
    writer = ScoresWriter(out, scores_metadata(model, engine="spark", **extra))
    try:
        writer.write(result)
        writer.close()
    except BaseException:
        writer.abort()
        raise
