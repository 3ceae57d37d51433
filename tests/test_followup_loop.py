"""The loop learns: two simulated nights of score -> select -> notify (local server) -> label -> retrain -> promote.

Synthetic world: each object has a true TNS type and 2 alerts whose 4 features are drawn around a
class centre (overlapping classes). Scores come from the production model itself, spectroscopists
answer exactly the targets that reached the (local) Slack, and the database is checked after each step.
Also: retrain refuses a worse model, explicit promote and rollback, `earlyia models list`.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from earlyia.cli.main import main
from earlyia.features.io import write_features
from earlyia.followup.db import FollowupDB
from earlyia.followup.labels import current_labels
from earlyia.learn.metrics import roc_auc
from earlyia.score.model import Model, train_model
from test_followup_notify import FakeSlack

NAMES = ["f0", "f1", "f2", "f3"]
EXTRACTOR = {"extractor": "synthetic", "params": {}, "names": NAMES}
N_TREES = 60


def make_world(n: int, seed: int, prefix: str, mjd0: float, ids: list[str] | None = None) -> pd.DataFrame:
    """Alert-level features, true types and broker columns (most objects observable)."""
    rng = np.random.default_rng(seed)
    ids = ids or [f"{prefix}{i:04d}" for i in range(n)]
    n = len(ids)
    # a non-linear (XOR-like) boundary: a handful of labels cannot find it, a few dozen can
    centre = rng.normal(0, 1.0, (n, 4))
    ia = (centre[:, 0] * centre[:, 1] > 0.15) ^ (rng.random(n) < 0.08)
    types = np.where(ia, "SN Ia", rng.choice(["SN II", "SN Ic", "SN IIn"], n))
    rows = []
    for i, oid in enumerate(ids):
        start = mjd0 + rng.uniform(0, 3)
        for j in range(2):
            f = centre[i] + rng.normal(0, 0.3, 4)
            rows.append({"object_id": oid, "alert_id": f"{oid}_{int(mjd0)}_{j}", "mjd": start + j, "tns_type": types[i],
                         "ra": rng.uniform(0, 360), "dec": rng.uniform(-70, 30), "jdstarthist": start - 2 + 2400000.5,
                         "drb": rng.uniform(0.4, 1), "classtar": rng.uniform(0.3, 1), "cdsxmatch": "Unknown",
                         "last_mag": rng.uniform(17, 20), "last_band": "g", **dict(zip(NAMES, f, strict=True))})
    return pd.DataFrame(rows)


def write_scores(world: pd.DataFrame, model: Model, path) -> None:
    """A SCORES-like file: the production model's scores + broker columns + features, with its metadata."""
    from earlyia.score.pipeline import METADATA_KEY, scores_metadata

    df = world.drop(columns=["tns_type"]).copy()
    df["score"] = model.predict_proba(world[NAMES])[:, 1]
    df["passed"] = True
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = scores_metadata(model, None)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(meta, default=str).encode()})
    pq.write_table(table, path)


def answer(objects: list[str], truth: dict[str, str], path) -> None:
    """What the spectroscopists send back: the true type of every target they observed."""
    pd.DataFrame({"object_id": objects, "type": [truth[o] for o in objects], "date": "2026-11-26", "source": "ANU2.3m/WiFeS",
                  "who": "night observer"}).to_csv(path, index=False)


def _auc(model: Model, world: pd.DataFrame) -> float:
    return roc_auc(world["tns_type"].eq("SN Ia").to_numpy(), model.predict_proba(world[NAMES])[:, 1])


def test_two_nights_the_loop_learns(tmp_path, monkeypatch, capsys):
    db_path = str(tmp_path / "loop.db")
    monkeypatch.setenv("EARLYIA_DB", db_path)  # every command finds the database through the environment
    # initial model: 16 labelled objects
    w0 = make_world(16, 0, "ZTF26init", 60990)
    m0 = train_model(w0, EXTRACTOR, n_estimators=N_TREES, random_state=0)
    m0.save(tmp_path / "m0.eia")
    validation = make_world(300, 99, "ZTF26val", 60000)
    write_features(validation, tmp_path / "val.parquet", EXTRACTOR)
    test = make_world(1500, 7, "ZTF26test", 60000)
    assert main(["followup", "register", str(tmp_path / "m0.eia"), "--production"]) == 0
    with FollowupDB(db_path) as db:
        assert db.query("SELECT status FROM models")[0][0] == "production"
        assert {r[0] for r in db.query("SELECT object_id FROM training_set")} == set(w0["object_id"])

    night1 = make_world(400, 1, "ZTF26a", 61000)
    night2 = pd.concat([make_world(0, 2, "", 61001, ids=sorted(night1["object_id"].unique())),  # night-1 objects seen again
                        make_world(400, 3, "ZTF26b", 61001)], ignore_index=True)
    truth = dict(zip(pd.concat([w0, night1, night2])["object_id"], pd.concat([w0, night1, night2])["tns_type"], strict=True))
    all_features = [w0]
    production = m0
    aucs = [_auc(m0, test)]
    requested_before: set[str] = set()
    with FakeSlack() as slack:
        monkeypatch.setenv("EARLYIA_SLACK_WEBHOOK", slack.url)
        for k, night in enumerate([night1, night2], start=1):
            # score
            write_scores(night, production, tmp_path / f"scores{k}.parquet")
            # select
            assert main(["followup", "select", "--scores", str(tmp_path / f"scores{k}.parquet"), "--n", "20", "--n-early", "5",
                         "--seed", str(k)]) == 0
            with FollowupDB(db_path) as db:
                req = db.query("SELECT object_id, list, status, model_version FROM requests WHERE selection_id = "
                               "(SELECT MAX(id) FROM selections)")
                assert len([r for r in req if r["list"] == "al"]) == 20
                assert {r["status"] for r in req} == {"selected"} and {r["model_version"] for r in req} == {production.hash}
                chosen = {r["object_id"] for r in req}
                assert not chosen & requested_before  # never proposed twice
                assert not chosen & set(production.prohibited_object_ids())
            # notify (local webhook)
            n_before = len(slack.requests)
            assert main(["followup", "notify", "--backoff", "0.01", "--pace", "0"]) == 0
            posted = [json.loads(r["body"]) for r in slack.requests[n_before:]]
            posted_ids = [p["blocks"][0]["text"]["text"].split("|")[1].split(">")[0] for p in posted]
            assert sorted(posted_ids) == sorted(chosen)
            with FollowupDB(db_path) as db:
                assert {r[0] for r in db.query("SELECT status FROM requests")} == {"posted"}
            assert main(["followup", "notify", "--pace", "0"]) == 0 and len(slack.requests) == n_before + len(chosen)  # idempotent
            requested_before |= chosen
            # label: the observers answer what they received
            answer(posted_ids, truth, tmp_path / f"labels{k}.csv")
            assert main(["followup", "label", str(tmp_path / f"labels{k}.csv"), "--strict"]) == 0
            with FollowupDB(db_path) as db:
                labelled = set(current_labels(db)["object_id"])
                assert labelled == requested_before
            # retrain
            all_features.append(night)
            write_features(pd.concat(all_features, ignore_index=True), tmp_path / f"features{k}.parquet", EXTRACTOR)
            assert main(["followup", "retrain", "--features", str(tmp_path / f"features{k}.parquet"), "--validation",
                         str(tmp_path / "val.parquet"), "--n-estimators", str(N_TREES), "--margin", "0.02"]) == 0
            out = capsys.readouterr().out
            with FollowupDB(db_path) as db:
                models = db.query("SELECT version, status, parent, path, metrics FROM models ORDER BY created_at")
                assert len(models) == k + 1
                new = models[-1]
                assert new["parent"] == production.hash
                train = db.query("SELECT object_id, origin, label, label_id FROM training_set WHERE model_version = ?",
                                 (new["version"],))
                assert {r["object_id"] for r in train} == set(w0["object_id"]) | requested_before
                assert {r["object_id"] for r in train if r["origin"] == "label"} == requested_before
                assert all(r["label_id"] is not None for r in train if r["origin"] == "label")
                assert all(r["label"] == int(truth[r["object_id"]] == "SN Ia") for r in train)
                metrics = json.loads(new["metrics"])
                assert metrics["n_validation_objects"] == 300 and metrics["decision"]["margin"] == 0.02
                cand = Model.load(new["path"])
                assert cand.card["parent"] == production.hash
                assert set(cand.prohibited_object_ids()) == set(w0["object_id"]) | requested_before
                if new["status"] == "production":
                    assert "PROMOTED" in out
                    old = {m["version"]: m["status"] for m in models[:-1]}
                    assert old[production.hash] == "retired" and "production" not in old.values()
                    production = cand
                else:
                    assert "kept as candidate" in out
            aucs.append(_auc(production, test))
    # the loop learned: production after two nights ranks SN Ia better than the initial model
    assert production.hash != m0.hash
    assert aucs[-1] > aucs[0] + 0.02, aucs

    # models list / rollback / promote through the CLI
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert production.hash[:12] in listing and m0.hash[:12] in listing and "production" in listing
    assert main(["models", "rollback"]) == 0
    with FollowupDB(db_path) as db:
        prod = db.query("SELECT version FROM models WHERE status = 'production'")[0][0]
        assert prod == production.card["parent"]
    assert main(["models", "promote", production.hash[:10]]) == 0
    with FollowupDB(db_path) as db:
        assert db.query("SELECT version FROM models WHERE status = 'production'")[0][0] == production.hash
        assert len(db.query("SELECT * FROM models WHERE status = 'production'")) == 1


def test_retrain_refuses_a_worse_model_and_rollback_walks_history(tmp_path):
    from earlyia.followup.labels import ingest_labels
    from earlyia.followup.registry import promote, register, rollback
    from earlyia.followup.retrain import retrain

    base = make_world(300, 11, "ZTF26base", 60000)
    m0 = train_model(base, EXTRACTOR, n_estimators=N_TREES, random_state=0)
    m0.save(tmp_path / "m0.eia")
    extra = make_world(200, 12, "ZTF26new", 60000)
    validation = make_world(300, 13, "ZTF26val", 60000)
    with FollowupDB(tmp_path / "loop.db") as db:
        register(db, tmp_path / "m0.eia", production=True)
        # labels that are all wrong: the retrained model must be worse and stay a candidate
        objs = extra.drop_duplicates("object_id")
        wrong = pd.DataFrame({"object_id": objs["object_id"], "type": np.where(objs["tns_type"] == "SN Ia", "SN II", "SN Ia"),
                              "date": "", "source": "liar", "who": "", "line": range(len(objs))})
        rep = ingest_labels(db, wrong, allow_unknown=True)
        assert len(rep.inserted) == len(objs)
        before = db.snapshot()
        feats = pd.concat([base, extra], ignore_index=True)
        r = retrain(db, feats, EXTRACTOR, validation=validation, n_estimators=N_TREES)
        assert not r.promoted and "worse" in r.reason
        assert r.candidate_metrics["fom"] < r.production_metrics["fom"]
        status = {row[0]: row[1] for row in db.query("SELECT version, status FROM models")}
        assert status == {m0.hash: "production", r.version: "candidate"}
        assert db.snapshot()["labels"] == before["labels"]
        # a huge margin accepts it; explicit promote and rollback work on the history
        r2 = retrain(db, feats, EXTRACTOR, validation=validation, n_estimators=N_TREES, random_state=1, margin=10.0)
        assert r2.promoted
        assert promote(db, r.version[:8])[1] == r2.version
        assert rollback(db) == (r2.version, r.version)
        assert rollback(db) == (m0.hash, r2.version)
        with pytest.raises(Exception, match="nothing to roll back"):
            rollback(db)


def test_retrain_with_the_stored_validation_set_keeps_it_fixed(tmp_path):
    from earlyia.followup.labels import ingest_labels
    from earlyia.followup.registry import register
    from earlyia.followup.retrain import retrain

    base = make_world(60, 21, "ZTF26base", 60000)
    m0 = train_model(base, EXTRACTOR, n_estimators=N_TREES, random_state=0)
    m0.save(tmp_path / "m0.eia")
    new = make_world(120, 22, "ZTF26new", 60000)
    objs = new.drop_duplicates("object_id")
    with FollowupDB(tmp_path / "loop.db") as db:
        register(db, tmp_path / "m0.eia", production=True)
        half = objs.iloc[:60]
        ingest_labels(db, pd.DataFrame({"object_id": half["object_id"], "type": half["tns_type"], "date": "", "source": "s",
                                        "who": "", "line": range(60)}), allow_unknown=True)
        feats = pd.concat([base, new], ignore_index=True)
        r1 = retrain(db, feats, EXTRACTOR, n_estimators=N_TREES, margin=1.0)
        val1 = {row[0] for row in db.query("SELECT object_id FROM validation_set")}
        assert len(val1) == 18 and val1 <= set(half["object_id"])  # 30 % of the new labels, none of production's
        assert not val1 & {row[0] for row in db.query("SELECT object_id FROM training_set WHERE model_version = ?", (r1.version,))}
        rest = objs.iloc[60:]
        ingest_labels(db, pd.DataFrame({"object_id": rest["object_id"], "type": rest["tns_type"], "date": "", "source": "s",
                                        "who": "", "line": range(60)}), allow_unknown=True)
        r2 = retrain(db, feats, EXTRACTOR, n_estimators=N_TREES, margin=1.0)
        assert {row[0] for row in db.query("SELECT object_id FROM validation_set")} == val1  # fixed
        assert r2.n_validation == 18 and r2.parent == r1.version


def test_retrain_interrupted_while_writing_changes_nothing(tmp_path, monkeypatch):
    from earlyia.followup import registry
    from earlyia.followup.labels import ingest_labels
    from earlyia.followup.retrain import retrain

    base = make_world(80, 31, "ZTF26base", 60000)
    m0 = train_model(base, EXTRACTOR, n_estimators=N_TREES, random_state=0)
    m0.save(tmp_path / "m0.eia")
    new = make_world(80, 32, "ZTF26new", 60000)
    objs = new.drop_duplicates("object_id")
    with FollowupDB(tmp_path / "loop.db") as db:
        registry.register(db, tmp_path / "m0.eia", production=True)
        ingest_labels(db, pd.DataFrame({"object_id": objs["object_id"], "type": objs["tns_type"], "date": "", "source": "s",
                                        "who": "", "line": range(len(objs))}), allow_unknown=True)
        before = db.snapshot()

        def boom(*args, **kwargs):  # after the validation set, the model row and its training set were written
            raise KeyboardInterrupt

        monkeypatch.setattr(registry, "_promote", boom)
        with pytest.raises(KeyboardInterrupt):
            retrain(db, pd.concat([base, new], ignore_index=True), EXTRACTOR, n_estimators=N_TREES, margin=10.0)
        assert db.snapshot() == before


def test_retrain_keeps_the_parents_recipe(tmp_path, monkeypatch):
    """A retrained candidate keeps production's forest settings, selection, gate, training rows and generated
    impostors (regenerated with the parent's count and seed); an explicit keyword still wins."""
    from earlyia.followup.labels import ingest_labels
    from earlyia.followup.registry import register
    from earlyia.followup.retrain import retrain
    from earlyia.score.model import training_settings
    from earlyia.sim import impostors

    names = ["f0", "f1", "rise_sig", "n_points"]
    extractor = {"extractor": "synthetic", "params": {}, "names": names}
    world = make_world(240, 31, "ZTF26base", 60000).rename(columns={"f2": "rise_sig", "f3": "n_points"})
    world["rise_sig"] = 3 * world["rise_sig"] + 1  # about a quarter of the rows have no significant rise
    world["n_points"] = 5.0
    base, new = world[world["object_id"] < "ZTF26base0120"], world[world["object_id"] >= "ZTF26base0120"]
    selection = {"min_points_per_band": 0, "require_rising": False}
    m0 = train_model(base, extractor, n_estimators=N_TREES, random_state=0, min_samples_leaf=3, class_weight="balanced",
                     object_weights=True, selection=selection, gate="rise", train_rows="gate", cv_folds=0,
                     lineage={"impostors": {"n_per_kind": 7, "seed": 5}})
    m0.save(tmp_path / "m0.eia")
    calls = []

    def fake_impostors(config, n_per_kind, random_state=None):  # the generator needs a real extractor
        calls.append((config["names"], n_per_kind, random_state))
        rows = make_world(n_per_kind, 99, "imp", 60000).rename(columns={"f2": "rise_sig", "f3": "n_points"})
        return rows.assign(rise_sig=10.0, n_points=5.0, label="impostor (flat)").drop(columns=["tns_type"])

    monkeypatch.setattr(impostors, "impostor_features", fake_impostors)
    objs = new.drop_duplicates("object_id")
    with FollowupDB(tmp_path / "loop.db") as db:
        register(db, tmp_path / "m0.eia", production=True)
        ingest_labels(db, pd.DataFrame({"object_id": objs["object_id"], "type": objs["tns_type"], "date": "", "source": "s",
                                        "who": "", "line": range(len(objs))}), allow_unknown=True)
        r = retrain(db, world, extractor, n_estimators=N_TREES, margin=10.0, cv_folds=0)
        card = Model.load(db.query("SELECT path FROM models WHERE version = ?", (r.version,))[0]["path"]).card
        assert training_settings(card) == training_settings(m0.card)
        assert card["gate"] == m0.card["gate"] and card["selection"] == selection
        assert calls == [(names, 7, 5)] and card["lineage"]["impostors"] == {"n_per_kind": 7, "seed": 5}
        assert sum(o.startswith("imp") for o in card["training"]["object_ids"]) > 0
        assert card["training"]["n_gate_rejected"] > 0  # labelled rows without a rise were left out, as the parent did
        # both models are compared as `earlyia score` runs them: the gate's rejects score 0
        from earlyia.features.gates import apply_gate
        from earlyia.followup.retrain import evaluate
        from earlyia.learn.metrics import binary_metrics

        val = world.iloc[:50]
        yv = val["tns_type"].eq("SN Ia").to_numpy()
        keep = apply_gate(m0.card["gate"], val[names].to_numpy(), names)
        assert 0 < keep.sum() < len(val)
        expect = binary_metrics(yv, np.where(keep, m0.predict_proba(val[names])[:, 1], 0.0))
        assert evaluate(m0, val, yv.astype(int))["efficiency"] == pytest.approx(expect["efficiency"])
        assert evaluate(m0, val, yv.astype(int))["purity"] == pytest.approx(expect["purity"])
        r2 = retrain(db, world, extractor, n_estimators=N_TREES, margin=10.0, cv_folds=0, min_samples_leaf=1)
        card2 = Model.load(db.query("SELECT path FROM models WHERE version = ?", (r2.version,))[0]["path"]).card
        assert card2["classifier"]["params"]["min_samples_leaf"] == 1 and card2["gate"] == m0.card["gate"]
