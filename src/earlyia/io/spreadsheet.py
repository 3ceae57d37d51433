"""CSV files for people: cells a spreadsheet would run as a formula are neutralised.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to Excel,
LibreOffice and Google Sheets (``=HYPERLINK(...)``, ``=cmd|...``): text that came from alerts
(object ids, SIMBAD types, labels, reasons) must not be able to run when a person opens the file.
Such text cells get a leading apostrophe, which spreadsheets show as text. Numbers are left as they
are (a negative declination stays a number).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from earlyia.io.table import atomic_write

#: First characters that make a spreadsheet cell a formula.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value):
    """``value`` with a leading ``'`` when it is text a spreadsheet would run; anything else
    unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def spreadsheet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells (and column names) cannot run as formulas."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralise_cell)
    out.columns = [neutralise_cell(str(c)) for c in out.columns]
    return out


def write_csv_for_people(df: pd.DataFrame, path: str | Path) -> None:
    """Write ``df`` as CSV (no index), atomically, with :func:`spreadsheet_safe` cells."""
    safe = spreadsheet_safe(df)
    atomic_write(path, lambda tmp: safe.to_csv(tmp, index=False))
