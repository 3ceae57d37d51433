"""Alerts as JSON: Rubin's ``alert.json`` samples, brokers that forward alerts as JSON, alerts saved
by hand.

A file holds one alert (an object), a list of alerts, or one alert per line (JSON Lines), plain or
gzip-compressed. Each alert is a Rubin alert (``diaSource``, ``prvDiaSources``, ``diaObject``... of
any schema version, read by :func:`earlyia.io.rubin.lightcurves_from_records`) or a ZTF alert
(``candidate``, ``prv_candidates``, read by :func:`earlyia.io.ztf.lightcurves_from_alert_records`);
binary fields (cutouts) are ignored. Detection sniffs the first bytes only: a JSON opener and one of
those keys.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Mapping
from pathlib import Path

from earlyia.errors import FormatError, InputError, Problem
from earlyia.io.registry import head_bytes
from earlyia.io.rubin import lightcurves_from_records
from earlyia.io.table import LightCurves
from earlyia.io.ztf import lightcurves_from_alert_records

#: Keys that mark an alert of each survey (any one suffices).
RUBIN_KEYS = ("diaSource", "prvDiaSources", "diaObject")
ZTF_KEYS = ("candidate", "prv_candidates")
_SNIFF = 65536


def _open_text(path: Path):
    if head_bytes(path, 2) == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def detect_alert_json(path: Path) -> bool:
    """A JSON (or JSON Lines) file, plain or gzip-compressed, whose first 64 kB name an alert's
    fields."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with _open_text(path) as fh:
            head = fh.read(_SNIFF)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError):
        return False
    text = head.lstrip("\ufeff \t\r\n")
    if not text.startswith(("{", "[")):
        return False
    return any(f'"{k}"' in text for k in (*RUBIN_KEYS, *ZTF_KEYS))


def _alerts(path: Path) -> list:
    with _open_text(path) as fh:
        text = fh.read()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as whole:
        docs = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                docs.append(json.loads(line))
            except json.JSONDecodeError as exc:
                if n == 1:  # not JSON Lines either: report the whole document's error
                    raise FormatError(f"not valid JSON ({whole})", source=str(path)) from whole
                raise FormatError(f"line {n} is not valid JSON ({exc})", source=str(path)) from exc
        return docs
    if isinstance(doc, Mapping) and isinstance(doc.get("alerts"), list):
        return doc["alerts"]  # a wrapper {"alerts": [...]}
    return doc if isinstance(doc, list) else [doc]


def _kind(rec: object) -> str:
    if not isinstance(rec, Mapping):
        return "other"
    if any(k in rec for k in RUBIN_KEYS):
        return "rubin"
    if any(k in rec for k in ZTF_KEYS):
        return "ztf"
    return "other"


def read_alert_json(path: str | Path) -> LightCurves:
    """Rubin or ZTF alerts from a JSON / JSON Lines file (see the module). Alerts that are
    neither are reported as problems; a file mixing Rubin and ZTF alerts is refused (their bands
    differ: split it)."""
    path = Path(path)
    try:
        alerts = _alerts(path)
    except UnicodeDecodeError as exc:
        raise FormatError(f"not UTF-8 text ({exc})", source=str(path)) from exc
    kinds = [_kind(a) for a in alerts]
    found = sorted({k for k in kinds if k != "other"})
    if not found:
        raise FormatError(
            f"none of its {len(alerts)} JSON value(s) is a Rubin alert "
            f"({', '.join(RUBIN_KEYS)}) or a ZTF alert "
            f"({', '.join(ZTF_KEYS)})",
            source=str(path),
        )
    if len(found) > 1:
        raise FormatError(
            "the file mixes Rubin and ZTF alerts; write each survey's alerts to its own file",
            source=str(path),
        )
    kind = found[0]
    mine = [a for a, k in zip(alerts, kinds, strict=True) if k == kind]
    try:
        if kind == "rubin":
            lc = lightcurves_from_records(mine, source=str(path))
        else:
            lc = lightcurves_from_alert_records(mine, source=str(path))
    except InputError as exc:
        raise FormatError(str(exc), source=str(path)) from exc
    skipped = len(alerts) - len(mine)
    if skipped:
        lc.problems = [
            Problem(
                str(path), None, f"{skipped} JSON value(s) are not {kind.upper()} alerts; skipped"
            ),
            *lc.problems,
        ]
    return lc
