"""Readers of every alert and light-curve format into the canonical
:class:`~earlyia.io.table.LightCurves`.

>>> from earlyia.io import read, detect_format
>>> lc = read(["fink_cross_tns_202001.parquet", "all_nonIa.csv.gz"])   # format detected per file

Formats (see ``docs/io.md``): ``earlyia`` (our table), ``ztf_alert_parquet``, ``fink_parquet``,
``rubin_parquet``, ``elasticc_parquet``, ``rubin_avro``, ``ztf_avro``, ``fink_csv``,
``plasticc_csv``, ``snana_dat``. Add one with :func:`register_reader`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from earlyia.errors import EarlyIAError, InputError, Problem
from earlyia.io import alert_json as _alert_json
from earlyia.io import fink as _fink
from earlyia.io import lsst as _lsst
from earlyia.io import rubin as _rubin
from earlyia.io import snana as _snana
from earlyia.io import ztf as _ztf
from earlyia.io.photometry import fluxcal_to_mag, limit_to_flux_err, mag_to_fluxcal
from earlyia.io.registry import detect_format, get_reader, parquet_schema, readers, register_reader
from earlyia.io.table import LightCurves

__all__ = [
    "LightCurves",
    "detect_format",
    "expand_inputs",
    "fluxcal_to_mag",
    "get_reader",
    "harmonise_columns",
    "limit_to_flux_err",
    "mag_to_fluxcal",
    "read",
    "read_many",
    "readers",
    "register_reader",
]

#: Files inside a directory that are documentation, not data (skipped silently when expanding a
#: directory).
_DOC_SUFFIXES = {
    ".md",
    ".txt",
    ".avsc",
    ".json",
    ".metadata",
    ".readme",
    ".list",
    ".ignore",
    ".input",
    ".dump",
    ".py",
    ".yaml",
    ".yml",
}


def expand_inputs(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Paths as given, with directories that no format reads as a whole expanded to their data
    files (sorted)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            try:
                if get_reader(detect_format(p)).directory == "unit":
                    out.append(p)  # a folder that is one input (e.g. SNANA .DAT files)
                    continue
            except EarlyIAError:
                pass
            files = sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and not f.name.startswith(".")
                and f.suffix.lower() not in _DOC_SUFFIXES
            )
            if not files:
                raise InputError("directory holds no data file", source=str(p))
            out.extend(files)
        else:
            out.append(p)
    return out


def read_many(
    paths: str | Path | Iterable[str | Path], format: str | None = None
) -> tuple[list[LightCurves], list[Problem]]:
    """Read each input separately: ``(tables read, problems of the inputs that could not be
    read)``."""
    files = expand_inputs(paths)
    tables: list[LightCurves] = []
    problems: list[Problem] = []
    for f in files:
        try:
            name = format or detect_format(f)
            tables.append(get_reader(name).read(f))
        except EarlyIAError as exc:
            message = str(exc)
            if message.startswith(f"{f}: "):
                message = message[len(f"{f}: ") :]
            problems.append(Problem(str(f), None, message))
    return tables, problems


def _directory_format(path: Path) -> str | None:
    try:
        return detect_format(path)
    except EarlyIAError:
        return None


def read(paths: str | Path | Iterable[str | Path], format: str | None = None) -> LightCurves:
    """Read one or many inputs (files or directories, any mix of formats of one survey) into one
    table.

    One input: its errors are raised (:class:`FormatError`, :class:`SchemaError`,
    :class:`InputError`, each naming the file). Several inputs: an input that cannot be read becomes
    a :class:`Problem` in ``lc.problems`` and the rest is read; :class:`InputError` only when
    nothing at all could be read. Alerts of one object in several inputs merge into one light curve.
    """
    given = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if len(given) == 1 and Path(given[0]).is_dir():
        name = format or _directory_format(Path(given[0]))
        if name is not None and get_reader(name).directory in ("unit", "whole"):
            return get_reader(name).read(Path(given[0]))
    files = expand_inputs(given)
    if not files:
        raise InputError("no input given")
    if len(files) == 1:
        name = format or detect_format(files[0])
        return get_reader(name).read(files[0])
    tables, problems = read_many(files, format)
    if not tables:
        detail = "; ".join(str(p) for p in problems[:5])
        raise InputError(f"none of the {len(files)} inputs could be read: {detail}")
    lc = harmonise_columns(LightCurves.concat(tables, source="<read>"))
    lc.problems = problems + lc.problems
    return lc


def _mixed_to_str(frame: pd.DataFrame) -> pd.DataFrame:
    for c in frame.columns:
        col = frame[c]
        if col.dtype != object:
            continue
        kinds = {type(v) for v in col.dropna()}
        kinds -= {float} if any(isinstance(v, float) and v != v for v in col) else set()
        if len({str if issubclass(k, str) else k for k in kinds}) > 1:
            frame[c] = [
                None if v is None or (isinstance(v, float) and v != v) else str(v) for v in col
            ]
    return frame


def harmonise_columns(lc: LightCurves) -> LightCurves:
    """Columns that mix types after merging inputs (e.g. ZTF ``candid`` int vs the replay's string
    ids) become strings.

    Arrow (hence ``to_parquet``) needs one type per column.
    """
    lc.objects = _mixed_to_str(lc.objects)
    if not lc.alerts.empty:
        lc.alerts = _mixed_to_str(lc.alerts)
    return lc


def _read_earlyia(path: Path) -> LightCurves:
    return LightCurves.read_parquet(path)


def _detect_earlyia(path: Path) -> bool:
    schema = parquet_schema(path)
    return schema is not None and b"earlyia" in (schema.metadata or {})


def _register_builtins() -> None:
    """Detection order: most specific first (our table, nested alerts, then flat Fink columns,
    CSVs, text)."""
    register_reader(
        "earlyia",
        _detect_earlyia,
        _read_earlyia,
        description="earlyia canonical light-curve table (Parquet)",
    )
    register_reader(
        "ztf_alert_parquet",
        _ztf.detect_ztf_alert_parquet,
        _ztf.read_ztf_alert_parquet,
        description="ZTF alerts in Parquet (candidate + prv_candidates)",
    )
    register_reader(
        "rubin_parquet",
        _rubin.detect_rubin_parquet,
        _rubin.read_rubin_parquet,
        description="Rubin alerts in Parquet as Fink stores and sends them (lsst.v7_4 ... "
        "v10_0, data "
        "transfer)",
    )
    register_reader(
        "elasticc_parquet",
        _lsst.detect_elasticc,
        _lsst.read_elasticc,
        description="ELAsTiCC alerts (diaSource + history), LSST ugrizY",
        directory="whole",
    )
    register_reader(
        "fink_parquet",
        _fink.detect_fink_parquet,
        _fink.read_fink_parquet,
        description="Fink concatenated columns",
    )
    register_reader(
        "rubin_avro",
        _rubin.detect_rubin_avro,
        _rubin.read_rubin_avro,
        description="Rubin alert Avro (schemas v3.0-v11.0), Fink's Rubin data transfer, "
        "ELAsTiCC Avro "
        "(also .avro.gz)",
    )
    register_reader(
        "ztf_avro",
        _ztf.detect_ztf_avro,
        _ztf.read_ztf_avro,
        description="ZTF/Fink alert Avro (single or multi-alert)",
    )
    register_reader(
        "alert_json",
        _alert_json.detect_alert_json,
        _alert_json.read_alert_json,
        description="Rubin or ZTF alerts as JSON or JSON Lines (one alert, a list, one per "
        "line; also "
        "gzip)",
    )
    register_reader(
        "plasticc_csv",
        _lsst.detect_plasticc,
        _lsst.read_plasticc,
        description="PLAsTiCC light-curve CSV (+ sibling metadata for labels)",
    )
    register_reader(
        "snana_dat",
        _snana.detect_snana,
        _snana.read_snana,
        description="SNANA .DAT files, directories or tar archives",
        directory="unit",
    )
    register_reader(
        "fink_csv",
        _fink.detect_fink_csv,
        _fink.read_fink_csv,
        description="Fink long CSV objectId,cjd,cfid,cmagpsf,csigmapsf",
    )


_register_builtins()
