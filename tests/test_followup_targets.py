"""`followup select`: constraints, one row per object, exclusions, strategies, the early list, one
transaction.

Also holds :func:`make_scores`, the synthetic score-file generator the other follow-up tests import.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from earlyia.errors import SchemaError
from earlyia.followup.config import Constraints, EarlyList
from earlyia.followup.db import SCHEMA_VERSION, FollowupDB
from earlyia.followup.targets import MJD_OFFSET, choose, latest_alerts, select

TYPES = ("Unknown", "Galaxy", "SN")
CONSTRAINTS = Constraints(extragalactic=TYPES)


def make_scores(
    n_objects: int = 120,
    seed: int = 0,
    prefix: str = "ZTF",
    mjd0: float = 60000.0,
    model_hash: str | None = None,
    features: int = 3,
) -> pd.DataFrame:
    """Synthetic score table (several alerts per object) with every column `followup select`
    reads."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_objects):
        k = int(rng.integers(1, 4))
        start = mjd0 + rng.uniform(0, 5)
        for j in range(k):
            rows.append(
                {
                    "object_id": f"{prefix}{i:05d}",
                    "alert_id": f"{prefix}{i:05d}_{j}",
                    "mjd": start + 2.0 * j,
                    "score": float(rng.uniform()),
                    "passed": True,
                    "reason": "",
                    "ra": float(rng.uniform(0, 360)),
                    "dec": float(rng.uniform(-70, 40)),
                    "ndethist": j + 3,
                    "jdstarthist": start + MJD_OFFSET,
                    "drb": float(rng.uniform(0.3, 1.0)),
                    "classtar": float(rng.uniform(0.2, 1.0)),
                    "cdsxmatch": str(rng.choice(["Unknown", "Galaxy", "Star", "RRLyr"])),
                    "n_detections": j + 3,
                    "first_det_mjd": start,
                    "last_mag": float(rng.uniform(16.5, 21)),
                    "last_band": "r",
                    **{f"f{m}": float(rng.normal()) for m in range(features)},
                }
            )
    return pd.DataFrame(rows)


def write_scores(df: pd.DataFrame, path, model_hash: str | None = None) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    if model_hash:
        meta = {
            b"earlyia.scores": json.dumps(
                {"model_hash": model_hash, "extractor": {"names": ["f0", "f1", "f2"]}}
            ).encode()
        }
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    pq.write_table(table, path)


def _reference_pool(df: pd.DataFrame, c: Constraints, exclude: set[str]) -> set[str]:
    """Slow, obvious version of the constraints: loop over objects, take the last alert."""
    out = set()
    for oid, g in df.groupby("object_id"):
        last = g.iloc[np.argmax(g["mjd"].to_numpy())]
        days = last["mjd"] - (last["jdstarthist"] - 2400000.5)
        if (
            last["score"] > c.min_score
            and c.dec_min <= last["dec"] < c.dec_max
            and days <= c.max_days_since_first
            and last["last_mag"] <= c.mag_limit
            and last["drb"] > c.drb_min
            and last["classtar"] > c.classtar_min
            and last["cdsxmatch"] in c.types()
            and oid not in exclude
        ):
            out.add(oid)
    return out


def test_latest_alert_per_object_keeps_that_alerts_columns():
    df = make_scores(50, seed=1)
    latest = latest_alerts(df.sample(frac=1.0, random_state=3))  # order must not matter
    assert latest["object_id"].is_unique and len(latest) == df["object_id"].nunique()
    ref = df.sort_values("mjd").groupby("object_id").tail(1).set_index("object_id")
    got = latest.set_index("object_id").loc[ref.index]
    np.testing.assert_array_equal(got["alert_id"], ref["alert_id"])
    np.testing.assert_array_equal(
        got["score"], ref["score"]
    )  # not mixed across alerts (Fink's min() flaw)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pool_matches_slow_reference_and_uncertainty_order(seed):
    df = make_scores(150, seed=seed)
    excl = set(df["object_id"].drop_duplicates().sample(10, random_state=seed))
    sel = choose(
        latest_alerts(df),
        n=500,
        constraints=CONSTRAINTS,
        exclude={"requested": excl},
        random_state=0,
    )
    assert set(sel.al["object_id"]) == _reference_pool(df, CONSTRAINTS, excl)
    few = choose(
        latest_alerts(df), n=7, constraints=CONSTRAINTS, exclude={"requested": excl}, random_state=0
    )
    u = np.abs(few.al["score"].to_numpy() - 0.5)
    assert np.all(np.diff(u) >= 0)  # most uncertain first
    pool_u = np.abs(sel.al["score"].to_numpy() - 0.5)
    assert u.max() <= np.sort(pool_u)[6] + 1e-12  # and they are the 7 most uncertain


def test_constraints_are_parameters():
    df = make_scores(150, seed=4)
    latest = latest_alerts(df)
    loose = Constraints(
        dec_max=None,
        dec_min=None,
        mag_limit=None,
        drb_min=None,
        classtar_min=None,
        max_days_since_first=None,
        extragalactic=("Unknown", "Galaxy", "Star", "RRLyr"),
    )
    sel = choose(latest, n=1000, constraints=loose)
    assert len(sel.al) == len(latest)  # every object (score > 0)
    north = choose(latest, n=1000, constraints=Constraints(dec_max=0.0, extragalactic=TYPES))
    assert (north.al["dec"] < 0).all()
    bright = choose(latest, n=1000, constraints=Constraints(mag_limit=18.0, extragalactic=TYPES))
    assert (bright.al["last_mag"] <= 18.0).all() and len(bright.al) < len(north.al) + len(latest)


def test_early_list_is_young_confident_by_descending_score():
    df = make_scores(300, seed=5)
    sel = choose(latest_alerts(df), n=5, constraints=CONSTRAINTS, early=EarlyList(n=50))
    e = sel.early
    assert len(e) > 0
    assert (e["score"] > 0.5).all() and (e["days_since_first"] <= 10).all()
    assert np.all(np.diff(e["score"].to_numpy()) <= 0)
    assert not set(e["object_id"]) & set(sel.al["object_id"])


@pytest.mark.parametrize("strategy", ["uncertainty", "batch_diverse", "cost_aware", "random"])
def test_strategies_respect_pool_and_seed(strategy):
    df = make_scores(200, seed=6)
    latest = latest_alerts(df)
    pool = set(choose(latest, n=1000, constraints=CONSTRAINTS).al["object_id"])
    a = choose(latest, n=10, strategy=strategy, constraints=CONSTRAINTS, random_state=11)
    b = choose(latest, n=10, strategy=strategy, constraints=CONSTRAINTS, random_state=11)
    assert list(a.al["object_id"]) == list(b.al["object_id"])
    assert set(a.al["object_id"]) <= pool and len(a.al) == 10


def test_cost_aware_prefers_bright_targets():
    df = make_scores(300, seed=7)
    latest = latest_alerts(df)
    u = choose(latest, n=15, strategy="uncertainty", constraints=CONSTRAINTS, random_state=0).al
    c = choose(latest, n=15, strategy="cost_aware", constraints=CONSTRAINTS, random_state=0).al
    assert c["last_mag"].mean() < u["last_mag"].mean()


def test_budget_caps_total_cost():
    df = make_scores(300, seed=8)
    sel = choose(
        latest_alerts(df),
        n=30,
        strategy="cost_aware",
        constraints=CONSTRAINTS,
        budget=5.0,
        random_state=0,
    )
    cost = 10 ** (0.4 * (sel.al["last_mag"].to_numpy() - 18.0))
    assert cost.sum() <= 5.0 + 1e-9 and len(sel.al) >= 1


def test_missing_column_names_the_constraint():
    df = make_scores(20).drop(columns=["dec"])
    with pytest.raises(SchemaError, match="dec"):
        choose(latest_alerts(df), n=5, constraints=CONSTRAINTS)
    choose(
        latest_alerts(df),
        n=5,
        constraints=Constraints(dec_max=None, dec_min=None, extragalactic=TYPES),
    )  # disabled: fine
    empty = make_scores(20).assign(
        classtar=np.nan
    )  # e.g. alerts without classtar: skip the cut and say so
    sel = choose(latest_alerts(empty), n=5, constraints=CONSTRAINTS)
    assert len(sel.al) >= 1 and "classtar" not in sel.removed
    assert any(
        "classtar is unknown for every object" in note and "--min-classtar" in note
        for note in sel.notes
    )
    nodrb = make_scores(20).drop(columns=["drb"]).assign(classtar=np.nan)
    assert len(choose(latest_alerts(nodrb), n=5, constraints=CONSTRAINTS).notes) == 2
    nomag = make_scores(20).assign(
        last_mag=np.nan
    )  # a cut that gives the target its meaning stays an error
    with pytest.raises(SchemaError, match="mag-limit none"):
        choose(latest_alerts(nomag), n=5, constraints=CONSTRAINTS)


def test_select_records_everything_and_never_reproposes(tmp_path):
    path = tmp_path / "scores.parquet"
    write_scores(make_scores(400, seed=9), path, model_hash="abc123def456")
    with FollowupDB(tmp_path / "loop.db") as db:
        s1 = select(db, path, n=5, constraints=CONSTRAINTS, early=EarlyList(n=3), random_state=0)
        assert s1.model_version == "abc123def456"
        req = db.query("SELECT object_id, list, status, model_version, strategy FROM requests")
        assert len(req) == len(s1.al) + len(s1.early)
        assert {r["status"] for r in req} == {"selected"} and {r["model_version"] for r in req} == {
            "abc123def456"
        }
        assert db.counts()["scored_objects"] == 400
        s2 = select(db, path, n=5, constraints=CONSTRAINTS, early=EarlyList(n=3), random_state=0)
        assert not set(s2.al["object_id"]) & (set(s1.al["object_id"]) | set(s1.early["object_id"]))
        # labelled and prohibited objects are out too
        pool = set(
            choose(latest_alerts(make_scores(400, seed=9)), n=1000, constraints=CONSTRAINTS).al[
                "object_id"
            ]
        )
        taken = {r[0] for r in db.query("SELECT object_id FROM requests")}
        left = sorted(pool - taken)
        assert len(left) >= 2
        with db.transaction() as con:
            con.execute(
                "INSERT INTO labels (object_id, type, label, source, ingested_at) VALUES (?, "
                "'SN Ia', 1, 'x', 't')",
                (left[0],),
            )
        s3 = select(db, path, n=1000, constraints=CONSTRAINTS, prohibited={left[1]})
        assert left[0] not in set(s3.al["object_id"]) and left[1] not in set(s3.al["object_id"])


def test_select_failing_half_way_writes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "scores.parquet"
    write_scores(make_scores(100, seed=10), path)
    with FollowupDB(tmp_path / "loop.db") as db:
        before = db.snapshot()
        import earlyia.followup.targets as selmod

        real = selmod._col
        calls = {"n": 0}

        def flaky(frame, name):
            calls["n"] += 1
            if calls["n"] > 20:  # after the score file, selection and some candidates were inserted
                raise KeyboardInterrupt
            return real(frame, name)

        monkeypatch.setattr(selmod, "_col", flaky)
        with pytest.raises(KeyboardInterrupt):
            select(db, path, n=10, constraints=CONSTRAINTS)
        assert calls["n"] > 20
        assert db.snapshot() == before


def test_cli_select_and_status(tmp_path, capsys):
    from earlyia.cli.main import main

    path = tmp_path / "scores.parquet"
    df = make_scores(300, seed=12)
    df["cdsxmatch"] = "Unknown"
    write_scores(df, path)
    db = str(tmp_path / "loop.db")
    assert (
        main(
            [
                "followup",
                "select",
                "--scores",
                str(path),
                "--n",
                "5",
                "--db",
                db,
                "--mag-limit",
                "none",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Active-learning targets (uncertainty): 5" in out and "fink" not in out.lower()
    assert main(["followup", "status", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "requests[al] selected: 5" in out and f"schema v{SCHEMA_VERSION}" in out
    assert main(["followup", "select", "--scores", str(tmp_path / "nope.parquet"), "--db", db]) == 2
    assert "nope.parquet" in capsys.readouterr().err
