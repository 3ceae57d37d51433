"""`followup label`: CSV and TNS exports, the type map, unknown objects, conflicts, duplicates."""

from __future__ import annotations

import csv

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earlyia.errors import SchemaError
from earlyia.followup.db import FollowupDB
from earlyia.followup.ingest import current_labels, ingest_labels, read_label_csv, read_label_tns
from earlyia.labels import TypeMap

#: Header of the TNS search page's CSV export (as downloaded from wis-tns.org/search).
TNS_HEADER = [
    "ID",
    "Name",
    "RA",
    "DEC",
    "Obj. Type",
    "Redshift",
    "Host Name",
    "Host Redshift",
    "Reporting Group/s",
    "Associated Group/s",
    "Discovery Data Source/s",
    "Classifying Group/s",
    "Disc. Internal Name",
    "Disc. Instrument/s",
    "Class. Instrument/s",
    "Public",
    "Discovery Mag/Flux",
    "Discovery Filter",
    "Discovery Date (UT)",
    "Sender",
    "Ext. catalog/s",
    "Remarks",
]


@pytest.fixture
def db(tmp_path):
    d = FollowupDB(tmp_path / "loop.db")
    with d.transaction() as con:
        con.execute(
            "INSERT INTO score_files (id, path, sha256, n_alerts, n_objects, ingested_at) "
            "VALUES (1, 'x', 'y', 9, 9, 't')"
        )
        con.executemany(
            "INSERT INTO scored_objects (score_file_id, object_id) VALUES (1, ?)",
            [(f"ZTF{i}",) for i in range(9)],
        )
    yield d
    d.close()


def _csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_csv_labels_mapped_with_type_map(db, tmp_path):
    f = _csv(
        tmp_path / "l.csv",
        ["object_id", "type", "date", "source", "who"],
        [
            ["ZTF0", "SN Ia", "2026-01-01", "NTT", "ann"],
            ["ZTF1", "SN II", "2026-01-01", "NTT", "ann"],
            ["ZTF2", "SN Ia-91T-like", "2026-01-02", "SALT", ""],
            ["ZTF3", "SN", "2026-01-02", "SALT", ""],
            ["ZTF4", "(TNS) SN Ia", "2026-01-02", "TNS", ""],
        ],
    )
    rep = ingest_labels(db, read_label_csv(f), file=str(f))
    assert not rep.problems
    got = {o: c for o, _, c in rep.inserted}
    assert got == {"ZTF0": 1, "ZTF1": 0, "ZTF2": 0, "ZTF3": -1, "ZTF4": 1}
    cur = current_labels(db).set_index("object_id")["label"].to_dict()
    assert cur == {"ZTF0": 1, "ZTF1": 0, "ZTF2": 0, "ZTF4": 1}  # 'SN' never trains
    row = db.query("SELECT source, date, who, type FROM labels WHERE object_id = 'ZTF0'")[0]
    assert tuple(row) == ("NTT", "2026-01-01", "ann", "SN Ia")


def test_subtypes_positive_by_option(db, tmp_path):
    f = _csv(
        tmp_path / "l.csv",
        ["objectId", "tns_type"],
        [["ZTF2", "SN Ia-91T-like"], ["ZTF5", "SN Iax[02cx-like]"]],
    )
    rep = ingest_labels(db, read_label_csv(f), type_map=TypeMap(include_subtypes=True))
    assert {o: c for o, _, c in rep.inserted} == {"ZTF2": 1, "ZTF5": 1}


def test_unknown_conflicting_duplicate_reported_and_valid_rows_kept(db, tmp_path):
    with db.transaction() as con:
        con.execute(
            "INSERT INTO labels (object_id, type, label, source, ingested_at) VALUES "
            "('ZTF6', 'SN II', 0, 'old', 't')"
        )
        con.execute(
            "INSERT INTO labels (object_id, type, label, source, ingested_at) VALUES "
            "('ZTF5', 'SN II', 0, 'old', 't')"
        )
    f = _csv(
        tmp_path / "l.csv",
        ["object_id", "type", "date", "source"],
        [
            ["ZTF0", "SN Ia", "d", "s"],  # fine
            ["ZTF404", "SN Ia", "d", "s"],  # unknown object
            ["ZTF6", "SN Ia", "d", "s"],  # conflicts with the stored SN II
            ["ZTF5", "SN IIP", "d", "s"],  # same class as stored: a second, consistent label
            ["ZTF7", "SN Ia", "d", "s"],  # conflicting rows inside the file
            ["ZTF7", "SN Ic", "d", "s"],
            ["ZTF8", "SN II", "d", "s"],  # duplicate within the file
            ["ZTF8", "SN II", "d", "s2"],
            ["", "SN II", "d", "s"],  # no id
        ],
    )
    rep = ingest_labels(db, read_label_csv(f), file="l.csv")
    assert sorted(o for o, *_ in rep.inserted) == ["ZTF0", "ZTF5", "ZTF8"]
    assert [p.object_id for p in rep.unknown] == ["ZTF404"]
    assert sorted(p.object_id for p in rep.conflicts) == ["ZTF6", "ZTF7", "ZTF7"]
    assert [p.object_id for p in rep.duplicates] == ["ZTF8"] and len(rep.invalid) == 1
    assert "l.csv:4" in str(rep.conflicts[0]) and "stored" in str(rep.conflicts[0])
    assert "unknown object" in str(rep.unknown[0]) and "l.csv:3" in str(rep.unknown[0])
    cur = current_labels(db).set_index("object_id")["label"].to_dict()
    assert cur == {"ZTF0": 1, "ZTF5": 0, "ZTF6": 0, "ZTF8": 0}
    # re-ingesting the same file adds nothing: every stored row is now a duplicate
    rep2 = ingest_labels(db, read_label_csv(f), file="l.csv")
    assert rep2.inserted == [] and len(rep2.duplicates) == 4  # ZTF0, ZTF5 and both ZTF8 rows
    # --allow-unknown stores the unknown object's label
    rep3 = ingest_labels(db, read_label_csv(f), allow_unknown=True)
    assert [o for o, *_ in rep3.inserted] == ["ZTF404"]


def test_tns_export(db, tmp_path):
    rows = []
    for name, internal, typ, group in [
        ("2026abc", "ZTF1, ATLAS26xyz", "SN Ia", "ePESSTO+"),
        ("2026abd", "ATLAS26aaa, ZTF3", "SN IIn", "ZTF"),
        ("2026abe", "PS26zzz", "SN Ia", "PESSTO"),
    ]:
        r = dict.fromkeys(TNS_HEADER, "")
        r.update(
            {
                "Name": f"SN {name}",
                "Disc. Internal Name": internal,
                "Obj. Type": typ,
                "Classifying Group/s": group,
                "Discovery Date (UT)": "2026-01-03 10:00:00",
            }
        )
        rows.append([r[h] for h in TNS_HEADER])
    f = _csv(tmp_path / "tns_search.csv", TNS_HEADER, rows)
    from earlyia.followup.ingest import known_objects

    frame = read_label_tns(f, known_objects(db))
    assert list(frame["object_id"]) == ["ZTF1", "ZTF3", "PS26zzz"]
    rep = ingest_labels(db, frame, file="tns")
    assert {o: c for o, _, c in rep.inserted} == {"ZTF1": 1, "ZTF3": 0}
    assert [p.object_id for p in rep.unknown] == ["PS26zzz"]
    src = db.query("SELECT source, who FROM labels WHERE object_id = 'ZTF1'")[0]
    assert tuple(src) == ("TNS SN 2026abc", "ePESSTO+")


def test_wrong_file_format_is_a_clear_error(tmp_path):
    f = _csv(tmp_path / "x.csv", ["a", "b"], [["1", "2"]])
    with pytest.raises(SchemaError, match="object_id"):
        read_label_csv(f)
    with pytest.raises(SchemaError, match=r"Disc\. Internal Name"):
        read_label_tns(f)


def test_cli_label_reports_and_stores(db, tmp_path, capsys):
    from earlyia.cli.main import main

    f = _csv(tmp_path / "l.csv", ["object_id", "type"], [["ZTF0", "SN Ia"], ["nobody", "SN II"]])
    code = main(["followup", "label", str(f), "--db", str(db.path)])
    out = capsys.readouterr()
    assert code == 0 and "1 label(s) stored" in out.out and "nobody" in out.err
    assert main(["followup", "label", str(f), "--db", str(db.path), "--strict"]) == 1
    capsys.readouterr()
    many = _csv(
        tmp_path / "many.csv", ["object_id", "type"], [[f"ghost{i}", "SN II"] for i in range(30)]
    )
    assert main(["followup", "label", str(many), "--db", str(db.path), "--max-problems", "5"]) == 0
    err = capsys.readouterr().err
    assert (
        sum("ghost" in line for line in err.splitlines()) == 5
        and "... and 25 more (--max-problems N)" in err
    )


TYPES_POOL = ["SN Ia", "SN II", "SN Ic", "SN", "SN Ia-91T-like", "CV", ""]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.lists(
            st.tuples(
                st.sampled_from([f"ZTF{i}" for i in range(5)] + ["ghost"]),
                st.sampled_from(TYPES_POOL),
            ),
            max_size=12,
        ),
        min_size=1,
        max_size=3,
    )
)
def test_ingestion_invariants(tmp_path_factory, batches):
    """Whatever the files say: every row is stored or reported exactly once, and no object ever
    holds two classes."""
    d = FollowupDB(tmp_path_factory.mktemp("h") / "loop.db")
    with d.transaction() as con:
        con.execute(
            "INSERT INTO score_files (id, path, sha256, n_alerts, n_objects, ingested_at) "
            "VALUES (1, 'x', 'y', 5, 5, 't')"
        )
        con.executemany(
            "INSERT INTO scored_objects (score_file_id, object_id) VALUES (1, ?)",
            [(f"ZTF{i}",) for i in range(5)],
        )
    tm = TypeMap()
    for rows in batches:
        import pandas as pd

        frame = pd.DataFrame(
            {
                "object_id": [r[0] for r in rows],
                "type": [r[1] for r in rows],
                "date": "",
                "source": "s",
                "who": "",
                "line": range(2, len(rows) + 2),
            },
            columns=["object_id", "type", "date", "source", "who", "line"],
        )
        rep = ingest_labels(d, frame, type_map=tm)
        assert len(rep.inserted) + len(rep.problems) == len(rows)
        assert all(p.object_id == "ghost" for p in rep.unknown)
        assert not any(o == "ghost" for o, *_ in rep.inserted)
    classes: dict[str, set[int]] = {}
    for oid, lab in d.query("SELECT object_id, label FROM labels WHERE label >= 0"):
        classes.setdefault(oid, set()).add(lab)
    assert all(len(c) == 1 for c in classes.values())
    pairs = d.query("SELECT object_id, type FROM labels")
    assert len(pairs) == len(set(map(tuple, pairs)))  # no duplicate (object, type)
    d.close()
