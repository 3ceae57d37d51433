"""Ingest spectroscopic classifications (a CSV of our own, or a TNS search export) into the loop.

Types become classes through :class:`earlyia.labels.TypeMap` (``'SN Ia'`` positive, Ia
sub-types only when asked, vague types such as ``'SN'`` unlabelled, everything else negative).
Bad rows never cost the good ones: each rejected row is reported as a :class:`Problem`
(unknown object, conflicting class, duplicate, missing value) and the rest is written, all in
one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from earlyia.errors import FormatError, InputError, Problem, SchemaError
from earlyia.followup.db import FollowupDB, utcnow
from earlyia.labels import NEGATIVE, POSITIVE, UNLABELLED, TypeMap, normalise_type

#: Accepted spellings of our CSV's columns (first found wins).
CSV_COLUMNS = {
    "object_id": ("object_id", "objectId", "objectid", "object", "ztf_id"),
    "type": ("type", "tns_type", "class", "classification"),
    "date": ("date", "classification_date", "obs_date"),
    "source": ("source",),
    "who": ("who", "classifier", "observer", "by"),
}
#: Columns of the TNS search page's CSV export that we read.
TNS_ID = "Disc. Internal Name"
TNS_TYPE = "Obj. Type"
TNS_NAME = "Name"
TNS_DATE = ("Classification Date", "Discovery Date (UT)")
TNS_WHO = ("Classifying Group/s", "Sender")

_CLASS_NAME = {POSITIVE: "positive", NEGATIVE: "negative", UNLABELLED: "unlabelled"}


def _pick(columns, names) -> str | None:
    lower = {str(c).strip().lower(): c for c in columns}
    for n in names:
        if n.lower() in lower:
            return lower[n.lower()]
    return None


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise InputError("label file not found", source=str(path))
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise FormatError(f"cannot read as CSV ({exc})", source=str(path)) from exc


def read_label_csv(path: str | Path) -> pd.DataFrame:
    """Our CSV: ``object_id, type, date, source[, who]`` -> the common label frame."""
    path = Path(path)
    raw = _read_csv(path)
    cols = {k: _pick(raw.columns, v) for k, v in CSV_COLUMNS.items()}
    missing = [k for k in ("object_id", "type") if cols[k] is None]
    if missing:
        raise SchemaError(
            f"missing column(s) {missing}; a label CSV needs object_id, type, date, source[, "
            f"who] (found {list(raw.columns)}); "
            "for a TNS search export use --format tns",
            source=str(path),
        )
    out = pd.DataFrame(
        {k: (raw[c].astype(str).str.strip() if c is not None else "") for k, c in cols.items()}
    )
    out["source"] = out["source"].where(out["source"] != "", "csv")
    out["line"] = range(2, len(out) + 2)
    return out


def _tns_internal_id(value: str, known: set[str]) -> str:
    """The survey id among TNS's comma-separated internal names (a known object, else a ZTF name,
    else the first)."""
    names = [n.strip() for n in str(value).split(",") if n.strip()]
    for n in names:
        if n in known:
            return n
    for n in names:
        if n.upper().startswith("ZTF"):
            return n
    return names[0] if names else ""


def read_label_tns(path: str | Path, known: set[str] | None = None) -> pd.DataFrame:
    """A TNS search CSV export (``Name, ..., Obj. Type, ..., Disc. Internal Name, ..., Discovery
    Date (UT)``)."""
    path = Path(path)
    raw = _read_csv(path)
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in (TNS_ID, TNS_TYPE) if c not in raw.columns]
    if missing:
        raise SchemaError(
            f"not a TNS search export: missing column(s) {missing} (found "
            f"{list(raw.columns)[:8]}...)",
            source=str(path),
        )
    known = known or set()
    date_col = next((c for c in TNS_DATE if c in raw.columns), None)
    who_col = next((c for c in TNS_WHO if c in raw.columns), None)
    out = pd.DataFrame(
        {
            "object_id": [_tns_internal_id(v, known) for v in raw[TNS_ID]],
            "type": raw[TNS_TYPE].astype(str).str.strip(),
            "date": raw[date_col].astype(str).str.strip() if date_col else "",
            "source": [
                "TNS " + n.strip() if n.strip() else "TNS"
                for n in raw.get(TNS_NAME, pd.Series([""] * len(raw)))
            ],
            "who": raw[who_col].astype(str).str.strip() if who_col else "",
        }
    )
    out["line"] = range(2, len(out) + 2)
    return out


def known_objects(db: FollowupDB) -> set[str]:
    """Objects the loop has seen: scored, selected, requested, trained on or validated on."""
    sql = """SELECT object_id FROM scored_objects UNION SELECT object_id FROM candidates
             UNION SELECT object_id FROM requests UNION SELECT object_id FROM training_set
             UNION SELECT object_id FROM validation_set"""
    return {r[0] for r in db.query(sql)}


@dataclass
class LabelReport:
    inserted: list[tuple[str, str, int]] = field(default_factory=list)  # (object, type, class)
    unknown: list[Problem] = field(default_factory=list)
    conflicts: list[Problem] = field(default_factory=list)
    duplicates: list[Problem] = field(default_factory=list)
    invalid: list[Problem] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        return self.invalid + self.unknown + self.conflicts + self.duplicates

    def summary(self) -> str:
        pos = sum(1 for *_, c in self.inserted if c == POSITIVE)
        neg = sum(1 for *_, c in self.inserted if c == NEGATIVE)
        unl = len(self.inserted) - pos - neg
        return (
            f"{len(self.inserted)} label(s) stored ({pos} positive, {neg} negative, {unl} "
            "unlabelled type); "
            f"{len(self.unknown)} unknown object(s), {len(self.conflicts)} conflict(s), "
            f"{len(self.duplicates)} duplicate(s), {len(self.invalid)} invalid row(s) skipped"
        )


def ingest_labels(
    db: FollowupDB,
    frame: pd.DataFrame,
    *,
    type_map: TypeMap | None = None,
    file: str = "",
    allow_unknown: bool = False,
) -> LabelReport:
    """Validate ``frame`` (object_id, type, date, source, who, line) against the database and store
    the good rows.

    Rules: an object the database has never seen is *unknown* (skipped unless ``allow_unknown``);
    a row whose class (positive/negative) differs from a label already stored, or from another
    row of the same file, is a *conflict* (every row of that object in the file is skipped, the
    stored label stays); the same (object, type) twice is a *duplicate* (the first one counts).
    Unlabelled types (``'SN'``) are stored for the record but never train a model.
    """
    type_map = type_map or TypeMap()
    report = LabelReport()
    frame = frame.copy()
    frame["type_norm"] = [normalise_type(t) for t in frame["type"]]
    frame["label"] = type_map.encode(frame["type_norm"]).astype(int)
    src = file or "labels"

    with db.transaction() as con:
        known = known_objects(db)
        stored: dict[str, list[tuple[str, int]]] = {}
        for r in con.execute("SELECT object_id, type, label FROM labels"):
            stored.setdefault(r[0], []).append((r[1], int(r[2])))

        valid_rows = []
        for row in frame.itertuples(index=False):
            where = f"{src}:{row.line}"
            if not row.object_id or row.object_id.lower() == "nan":
                report.invalid.append(Problem(where, None, "no object id"))
                continue
            if not row.type_norm:
                report.invalid.append(Problem(where, row.object_id, "no type"))
                continue
            if not allow_unknown and row.object_id not in known:
                report.unknown.append(
                    Problem(
                        where,
                        row.object_id,
                        "unknown object (never scored, selected or trained on); "
                        "check the id or pass --allow-unknown",
                    )
                )
                continue
            valid_rows.append(row)

        # Classes each object gets from this file (unlabelled types carry no class).
        file_classes: dict[str, set[int]] = {}
        for row in valid_rows:
            if row.label != UNLABELLED:
                file_classes.setdefault(row.object_id, set()).add(row.label)

        seen: set[tuple[str, str]] = set()
        now = utcnow()
        for row in valid_rows:
            where = f"{src}:{row.line}"
            oid, typ, lab = row.object_id, row.type_norm, int(row.label)
            key = (oid, typ)
            if key in seen or any(t == typ for t, _ in stored.get(oid, [])):
                report.duplicates.append(
                    Problem(
                        where,
                        oid,
                        f"duplicate label {typ!r} (already stored or earlier in the file): skipped",
                    )
                )
                continue
            if len(file_classes.get(oid, ())) > 1:
                report.conflicts.append(
                    Problem(
                        where,
                        oid,
                        f"conflicting types in this file for the same object ({typ!r} is "
                        f"{_CLASS_NAME[lab]}, another row says otherwise): all its rows skipped",
                    )
                )
                continue
            stored_classes = {c for _, c in stored.get(oid, []) if c != UNLABELLED}
            if lab != UNLABELLED and stored_classes and lab not in stored_classes:
                old = ", ".join(f"{t!r}" for t, c in stored.get(oid, []) if c != UNLABELLED)
                report.conflicts.append(
                    Problem(
                        where,
                        oid,
                        f"{typ!r} ({_CLASS_NAME[lab]}) conflicts with the stored label {old}: "
                        "skipped (the stored label stays)",
                    )
                )
                continue
            seen.add(key)
            con.execute(
                "INSERT INTO labels (object_id, type, label, source, date, who, file, "
                "ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    oid,
                    typ,
                    lab,
                    row.source or "csv",
                    row.date or None,
                    (row.who or None) if hasattr(row, "who") else None,
                    file,
                    now,
                ),
            )
            report.inserted.append((oid, typ, lab))
    return report


def current_labels(db: FollowupDB) -> pd.DataFrame:
    """One row per object with a usable class: object_id, label (0/1), label_id (the first label
    giving it), type."""
    rows = db.query(
        "SELECT id, object_id, type, label FROM labels WHERE label IN (0, 1) ORDER BY id"
    )
    out: dict[str, tuple[int, int, str]] = {}
    for r in rows:
        out.setdefault(r["object_id"], (int(r["label"]), int(r["id"]), r["type"]))
    return pd.DataFrame(
        [(k, v[0], v[1], v[2]) for k, v in out.items()],
        columns=["object_id", "label", "label_id", "type"],
    ).astype({"label": "int64", "label_id": "int64"})
