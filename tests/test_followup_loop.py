"""The loop learns: two simulated nights of score -> select -> notify (local server) -> label ->
retrain -> promote.

Synthetic world: each object has a true TNS type and 2 alerts whose 4 features are drawn around a
class centre (overlapping classes). Scores come from the production model itself, spectroscopists
answer exactly the targets that reached the (local) Slack, and the database is checked after each
step. Also: retrain refuses a worse model, explicit promote and rollback, `earlyia models list`.
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
from earlyia.followup.ingest import current_labels
from earlyia.followup.promotion import PromotionRule
from earlyia.metrics import roc_auc
from earlyia.model.artifact import Model
from earlyia.model.recipe import Recipe
from earlyia.model.training import train_model
from test_followup_notify import FakeSlack

NAMES = ["f0", "f1", "f2", "f3"]
EXTRACTOR = {"extractor": "synthetic", "params": {}, "names": NAMES}
N_TREES = 60
#: A promotion rule that accepts any candidate on a small validation set (to exercise the writing
#: paths).
LOOSE = PromotionRule(margin=10.0, min_objects=5, min_positive=1, n_bootstrap=200)


def _store_types(db, objs: pd.DataFrame) -> None:
    """Store each object's ``tns_type`` as its spectroscopic label (objects the loop never saw
    included)."""
    from earlyia.followup.ingest import ingest_labels

    ingest_labels(
        db,
        pd.DataFrame(
            {
                "object_id": objs["object_id"],
                "type": objs["tns_type"],
                "date": "",
                "source": "s",
                "who": "",
                "line": range(len(objs)),
            }
        ),
        allow_unknown=True,
    )


def make_world(
    n: int, seed: int, prefix: str, mjd0: float, ids: list[str] | None = None
) -> pd.DataFrame:
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
            rows.append(
                {
                    "object_id": oid,
                    "alert_id": f"{oid}_{int(mjd0)}_{j}",
                    "mjd": start + j,
                    "tns_type": types[i],
                    "ra": rng.uniform(0, 360),
                    "dec": rng.uniform(-70, 30),
                    "jdstarthist": start - 2 + 2400000.5,
                    "drb": rng.uniform(0.4, 1),
                    "classtar": rng.uniform(0.3, 1),
                    "cdsxmatch": "Unknown",
                    "last_mag": rng.uniform(17, 20),
                    "last_band": "g",
                    **dict(zip(NAMES, f, strict=True)),
                }
            )
    return pd.DataFrame(rows)


def write_scores(world: pd.DataFrame, model: Model, path) -> None:
    """A SCORES-like file: the production model's scores + broker columns + features, with its
    metadata."""
    from earlyia.score.pipeline import scores_metadata
    from earlyia.score.scores_file import METADATA_KEY

    df = world.drop(columns=["tns_type"]).copy()
    df["score"] = model.predict_proba(world[NAMES])[:, 1]
    df["passed"] = True
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = scores_metadata(model, None)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(meta, default=str).encode()}
    )
    pq.write_table(table, path)


def answer(objects: list[str], truth: dict[str, str], path) -> None:
    """What the spectroscopists send back: the true type of every target they observed."""
    pd.DataFrame(
        {
            "object_id": objects,
            "type": [truth[o] for o in objects],
            "date": "2026-11-26",
            "source": "ANU2.3m/WiFeS",
            "who": "night observer",
        }
    ).to_csv(path, index=False)


def _auc(model: Model, world: pd.DataFrame) -> float:
    return roc_auc(
        world["tns_type"].eq("SN Ia").to_numpy(), model.predict_proba(world[NAMES])[:, 1]
    )


def test_two_nights_the_loop_learns(tmp_path, monkeypatch, capsys):
    db_path = str(tmp_path / "loop.db")
    monkeypatch.setenv(
        "EARLYIA_DB", db_path
    )  # every command finds the database through the environment
    # initial model: 16 labelled objects
    w0 = make_world(16, 0, "ZTF26init", 60990)
    m0 = train_model(w0, EXTRACTOR, Recipe(n_estimators=N_TREES), random_state=0)
    m0.save(tmp_path / "m0.eia")
    write_features(m0.training_rows, tmp_path / "m0_rows.parquet", EXTRACTOR)
    validation = make_world(300, 99, "ZTF26val", 60000)
    write_features(validation, tmp_path / "val.parquet", EXTRACTOR)
    test = make_world(1500, 7, "ZTF26test", 60000)
    assert (
        main(
            [
                "followup",
                "register",
                str(tmp_path / "m0.eia"),
                "--production",
                "--training-rows",
                str(tmp_path / "m0_rows.parquet"),
            ]
        )
        == 0
    )
    with FollowupDB(db_path) as db:
        assert db.query("SELECT status FROM models")[0][0] == "production"
        assert {r[0] for r in db.query("SELECT object_id FROM training_set")} == set(
            w0["object_id"]
        )

    night1 = make_world(400, 1, "ZTF26a", 61000)
    night2 = pd.concat(
        [
            make_world(
                0, 2, "", 61001, ids=sorted(night1["object_id"].unique())
            ),  # night-1 objects seen again
            make_world(400, 3, "ZTF26b", 61001),
        ],
        ignore_index=True,
    )
    truth = dict(
        zip(
            pd.concat([w0, night1, night2])["object_id"],
            pd.concat([w0, night1, night2])["tns_type"],
            strict=True,
        )
    )
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
            assert (
                main(
                    [
                        "followup",
                        "select",
                        "--scores",
                        str(tmp_path / f"scores{k}.parquet"),
                        "--n",
                        "20",
                        "--n-early",
                        "5",
                        "--seed",
                        str(k),
                    ]
                )
                == 0
            )
            with FollowupDB(db_path) as db:
                req = db.query(
                    "SELECT object_id, list, status, model_version FROM requests WHERE "
                    "selection_id = "
                    "(SELECT MAX(id) FROM selections)"
                )
                assert len([r for r in req if r["list"] == "al"]) == 20
                assert {r["status"] for r in req} == {"selected"} and {
                    r["model_version"] for r in req
                } == {production.hash}
                chosen = {r["object_id"] for r in req}
                assert not chosen & requested_before  # never proposed twice
                assert not chosen & set(production.prohibited_object_ids())
            # notify (local webhook)
            n_before = len(slack.requests)
            assert main(["followup", "notify", "--backoff", "0.01", "--pace", "0"]) == 0
            posted = [json.loads(r["body"]) for r in slack.requests[n_before:]]
            posted_ids = [
                p["blocks"][0]["text"]["text"].split("|")[1].split(">")[0] for p in posted
            ]
            assert sorted(posted_ids) == sorted(chosen)
            with FollowupDB(db_path) as db:
                assert {r[0] for r in db.query("SELECT status FROM requests")} == {"posted"}
            assert main(["followup", "notify", "--pace", "0"]) == 0 and len(
                slack.requests
            ) == n_before + len(chosen)  # idempotent
            requested_before |= chosen
            # label: the observers answer what they received
            answer(posted_ids, truth, tmp_path / f"labels{k}.csv")
            assert main(["followup", "label", str(tmp_path / f"labels{k}.csv"), "--strict"]) == 0
            with FollowupDB(db_path) as db:
                labelled = set(current_labels(db)["object_id"])
                assert labelled == requested_before
            # retrain: the feature table holds tonight's objects only; production's rows come from
            # the registry
            all_features.append(night)
            write_features(night, tmp_path / f"features{k}.parquet", EXTRACTOR)
            assert (
                main(
                    [
                        "followup",
                        "retrain",
                        "--features",
                        str(tmp_path / f"features{k}.parquet"),
                        "--validation",
                        str(tmp_path / "val.parquet"),
                        "--n-estimators",
                        str(N_TREES),
                        "--margin",
                        "0.02",
                    ]
                )
                == 0
            )
            out = capsys.readouterr().out
            with FollowupDB(db_path) as db:
                models = db.query(
                    "SELECT version, status, parent, path, metrics FROM models ORDER BY created_at"
                )
                assert len(models) == k + 1
                new = models[-1]
                assert new["parent"] == production.hash
                train = db.query(
                    "SELECT object_id, origin, label, label_id FROM training_set WHERE "
                    "model_version = ?",
                    (new["version"],),
                )
                assert {r["object_id"] for r in train} == set(w0["object_id"]) | requested_before
                assert {r["object_id"] for r in train if r["origin"] == "label"} == requested_before
                assert all(r["label_id"] is not None for r in train if r["origin"] == "label")
                assert all(r["label"] == int(truth[r["object_id"]] == "SN Ia") for r in train)
                metrics = json.loads(new["metrics"])
                assert (
                    metrics["n_validation_objects"] == 300 and metrics["decision"]["margin"] == 0.02
                )
                ev = metrics["decision"]["evidence"]
                assert ev["n_objects"] == 300 and ev["n_resamples"] >= 1000 and "lower_bound" in ev
                assert (new["status"] == "production") == (ev["lower_bound"] >= -0.02)
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
        assert (
            db.query("SELECT version FROM models WHERE status = 'production'")[0][0]
            == production.hash
        )
        assert len(db.query("SELECT * FROM models WHERE status = 'production'")) == 1


def test_retrain_refuses_a_worse_model_and_rollback_walks_history(tmp_path):
    from earlyia.followup.ingest import ingest_labels
    from earlyia.followup.model_registry import promote, register, rollback
    from earlyia.followup.retrain import retrain

    base = make_world(300, 11, "ZTF26base", 60000)
    m0 = train_model(base, EXTRACTOR, Recipe(n_estimators=N_TREES), random_state=0)
    m0.save(tmp_path / "m0.eia")
    extra = make_world(200, 12, "ZTF26new", 60000)
    validation = make_world(300, 13, "ZTF26val", 60000)
    with FollowupDB(tmp_path / "loop.db") as db:
        register(db, tmp_path / "m0.eia", production=True, training_rows=m0.training_rows)
        # labels that are all wrong: the retrained model must be worse and stay a candidate
        objs = extra.drop_duplicates("object_id")
        wrong = pd.DataFrame(
            {
                "object_id": objs["object_id"],
                "type": np.where(objs["tns_type"] == "SN Ia", "SN II", "SN Ia"),
                "date": "",
                "source": "liar",
                "who": "",
                "line": range(len(objs)),
            }
        )
        rep = ingest_labels(db, wrong, allow_unknown=True)
        assert len(rep.inserted) == len(objs)
        before = db.snapshot()
        feats = pd.concat([base, extra], ignore_index=True)
        r = retrain(db, feats, EXTRACTOR, validation=validation, n_estimators=N_TREES)
        assert not r.promoted and "not shown to be no worse" in r.reason
        assert (
            r.candidate_metrics["fom"] < r.production_metrics["fom"]
            and r.evidence["lower_bound"] < -0.02
        )
        status = {row[0]: row[1] for row in db.query("SELECT version, status FROM models")}
        assert status == {m0.hash: "production", r.version: "candidate"}
        assert db.snapshot()["labels"] == before["labels"]
        # a huge margin accepts it; explicit promote and rollback work on the history
        r2 = retrain(
            db,
            feats,
            EXTRACTOR,
            validation=validation,
            n_estimators=N_TREES,
            random_state=1,
            rule=LOOSE,
        )
        assert r2.promoted
        assert promote(db, r.version[:8])[1] == r2.version
        assert rollback(db) == (r2.version, r.version)
        assert rollback(db) == (m0.hash, r2.version)
        with pytest.raises(Exception, match="nothing to roll back"):
            rollback(db)


def test_retrain_with_the_stored_validation_set_keeps_it_fixed(tmp_path):
    from earlyia.followup.model_registry import register
    from earlyia.followup.retrain import retrain

    base = make_world(60, 21, "ZTF26base", 60000)
    m0 = train_model(base, EXTRACTOR, Recipe(n_estimators=N_TREES), random_state=0)
    m0.save(tmp_path / "m0.eia")
    new = make_world(120, 22, "ZTF26new", 60000)
    objs = new.drop_duplicates("object_id")
    with FollowupDB(tmp_path / "loop.db") as db:
        register(db, tmp_path / "m0.eia", production=True, training_rows=m0.training_rows)
        half = objs.iloc[:60]
        _store_types(db, half)
        feats = pd.concat([base, new], ignore_index=True)
        r1 = retrain(db, feats, EXTRACTOR, n_estimators=N_TREES, rule=LOOSE)
        val1 = {row[0] for row in db.query("SELECT object_id FROM validation_set")}
        assert len(val1) == 18 and val1 <= set(
            half["object_id"]
        )  # 30 % of the new labels, none of production's
        assert not val1 & {
            row[0]
            for row in db.query(
                "SELECT object_id FROM training_set WHERE model_version = ?", (r1.version,)
            )
        }
        rest = objs.iloc[60:]
        _store_types(db, rest)
        # the second retrain gets a feature table without the validation objects: their stored rows
        # are used
        r2 = retrain(
            db, feats[~feats["object_id"].isin(val1)], EXTRACTOR, n_estimators=N_TREES, rule=LOOSE
        )
        assert {row[0] for row in db.query("SELECT object_id FROM validation_set")} == val1  # fixed
        assert r2.n_validation == 18 and r2.parent == r1.version


def test_retrain_interrupted_while_writing_changes_nothing(tmp_path, monkeypatch):
    from earlyia.followup import model_registry as registry
    from earlyia.followup import retrain as retrain_module
    from earlyia.followup.retrain import retrain

    base = make_world(80, 31, "ZTF26base", 60000)
    m0 = train_model(base, EXTRACTOR, Recipe(n_estimators=N_TREES), random_state=0)
    m0.save(tmp_path / "m0.eia")
    new = make_world(80, 32, "ZTF26new", 60000)
    objs = new.drop_duplicates("object_id")
    with FollowupDB(tmp_path / "loop.db") as db:
        registry.register(db, tmp_path / "m0.eia", production=True, training_rows=m0.training_rows)
        _store_types(db, objs)
        before = db.snapshot()

        def boom(
            *args, **kwargs
        ):  # after the validation set, the model row and its training set were written
            raise KeyboardInterrupt

        monkeypatch.setattr(retrain_module, "_promote", boom)
        with pytest.raises(KeyboardInterrupt):
            retrain(db, new, EXTRACTOR, n_estimators=N_TREES, rule=LOOSE)
        assert db.snapshot() == before


def test_retrain_keeps_the_parents_recipe_and_rows(tmp_path):
    """A retrained candidate keeps production's forest settings, selection, gate and training
    rows (its generated impostors among them, inherited from the stored rows); an explicit
    keyword still wins."""
    from earlyia.followup.model_registry import register
    from earlyia.followup.retrain import retrain

    names = ["f0", "f1", "rise_sig", "n_points"]
    extractor = {"extractor": "synthetic", "params": {}, "names": names}
    world = make_world(240, 31, "ZTF26base", 60000).rename(
        columns={"f2": "rise_sig", "f3": "n_points"}
    )
    world["rise_sig"] = (
        3 * world["rise_sig"] + 1
    )  # about a quarter of the rows have no significant rise
    world["n_points"] = 5.0
    base, new = (
        world[world["object_id"] < "ZTF26base0120"],
        world[world["object_id"] >= "ZTF26base0120"],
    )
    imp = make_world(7, 99, "imp", 60000).rename(columns={"f2": "rise_sig", "f3": "n_points"})
    imp = imp.assign(rise_sig=10.0, n_points=5.0, tns_type="impostor (flat)", view=-1)
    selection = {"min_points_per_band": 0, "require_rising": False}
    recipe = Recipe(
        n_estimators=N_TREES,
        min_samples_leaf=3,
        class_weight="balanced",
        object_weights=True,
        selection=selection,
        gate="rise",
        train_rows="gate",
        cv_folds=0,
    )
    m0 = train_model(
        pd.concat([base.assign(view=0), imp], ignore_index=True),
        extractor,
        recipe,
        random_state=0,
        lineage={"impostors": {"n_per_kind": 7, "seed": 5}},
    )
    # the card records the recipe: read back, it is the recipe that trained the model (folds are not
    # recorded)
    assert Recipe.of_model(m0.card) == recipe.replace(
        impostors=7, extractor=extractor, cv_folds=Recipe().cv_folds
    )
    m0.save(tmp_path / "m0.eia")
    assert set(m0.training_rows.loc[m0.training_rows["view"] == -1, "object_id"]) == set(
        imp["object_id"]
    )
    objs = new.drop_duplicates("object_id")
    with FollowupDB(tmp_path / "loop.db") as db:
        register(db, tmp_path / "m0.eia", production=True, training_rows=m0.training_rows)
        _store_types(db, objs)
        r = retrain(db, new, extractor, n_estimators=N_TREES, rule=LOOSE, cv_folds=0)
        cand = Model.load(
            db.query("SELECT path FROM models WHERE version = ?", (r.version,))[0]["path"]
        )
        card = cand.card
        assert Recipe.of_model(card) == Recipe.of_model(
            m0.card
        )  # the retrain reproduces its parent's recipe
        assert card["gate"] == m0.card["gate"] and card["selection"] == selection
        assert card["lineage"]["impostors"] == {"n_per_kind": 7, "seed": 5}
        rows = cand.training_rows if cand.training_rows is not None else None
        assert rows is None  # the rows are never part of the model file...
        from earlyia.followup.model_registry import model_rows

        stored = model_rows(db, r.version)  # ...but the registry keeps them
        inherited = stored["object_id"].isin(imp["object_id"])
        assert (
            set(imp["object_id"]) <= set(stored["object_id"])
            and (stored.loc[inherited, "view"] == -1).all()
        )
        assert set(m0.training_rows["object_id"]) <= set(
            stored["object_id"]
        )  # every row production learned from
        assert (
            card["training"]["n_gate_rejected"] > 0
        )  # labelled rows without a rise were left out, as the parent did
        # both models are compared as `earlyia score` runs them: the gate's rejects score 0
        from earlyia.features.gates import apply_gate
        from earlyia.followup.retrain import object_scores

        val = world.iloc[:50]
        keep = apply_gate(m0.card["gate"], val[names].to_numpy(), names)
        assert 0 < keep.sum() < len(val)
        expect = (
            pd.Series(
                np.where(keep, m0.predict_proba(val[names])[:, 1], 0.0), index=val["object_id"]
            )
            .groupby(level=0)
            .max()
        )
        pd.testing.assert_series_equal(
            object_scores(m0, val).sort_index(), expect.sort_index(), check_names=False
        )
        r2 = retrain(
            db, new, extractor, n_estimators=N_TREES, rule=LOOSE, cv_folds=0, min_samples_leaf=1
        )
        card2 = Model.load(
            db.query("SELECT path FROM models WHERE version = ?", (r2.version,))[0]["path"]
        ).card
        assert (
            card2["classifier"]["params"]["min_samples_leaf"] == 1
            and card2["gate"] == m0.card["gate"]
        )


def test_retrain_starts_from_productions_rows_whatever_table_the_user_passes(tmp_path):
    """Production learned from 300 objects; the user passes a table of tonight's 40 labelled
    objects only: the candidate still learns from production's 300 plus the new ones, and never
    from production's objects taken from the table."""
    from earlyia.followup.model_registry import register
    from earlyia.followup.retrain import retrain

    base = make_world(300, 41, "ZTF26base", 60000)
    m0 = train_model(base, EXTRACTOR, Recipe(n_estimators=N_TREES), random_state=0)
    m0.save(tmp_path / "m0.eia")
    tonight = make_world(40, 42, "ZTF26new", 60000)
    objs = tonight.drop_duplicates("object_id")
    with FollowupDB(tmp_path / "loop.db") as db:
        register(db, tmp_path / "m0.eia", production=True, training_rows=m0.training_rows)
        _store_types(db, objs)
        validation = make_world(200, 43, "ZTF26val", 60000)
        r = retrain(db, tonight, EXTRACTOR, validation=validation, n_estimators=N_TREES)
        assert r.n_train == 300 + 40 and r.n_new_labels == 40
        assert set(r.training["object_id"]) == set(base["object_id"]) | set(objs["object_id"])


def test_no_stored_rows_is_a_clear_error_and_rows_must_match_the_card(tmp_path):
    from earlyia.errors import ConfigError
    from earlyia.followup.model_registry import register
    from earlyia.followup.retrain import retrain

    base = make_world(60, 51, "ZTF26base", 60000)
    m0 = train_model(base, EXTRACTOR, Recipe(n_estimators=N_TREES), random_state=0)
    m0.save(tmp_path / "m0.eia")
    with FollowupDB(tmp_path / "a.db") as db:
        register(db, tmp_path / "m0.eia", production=True)
        with pytest.raises(ConfigError, match="registered without the rows it learned from"):
            retrain(db, base, EXTRACTOR, n_estimators=N_TREES)
    with (
        FollowupDB(tmp_path / "b.db") as db,
        pytest.raises(ConfigError, match="not the rows model"),
    ):
        register(
            db, tmp_path / "m0.eia", production=True, training_rows=m0.training_rows.iloc[:-40]
        )
    # the stored rows are verified on every read
    with FollowupDB(tmp_path / "c.db") as db:
        register(db, tmp_path / "m0.eia", production=True, training_rows=m0.training_rows)
        from earlyia.errors import IntegrityError
        from earlyia.followup.model_registry import model_rows, rows_dir

        path = next(rows_dir(db).glob("*.parquet"))
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        with pytest.raises(IntegrityError, match="sha256"):
            model_rows(db, m0.hash)


def test_a_tie_on_a_handful_of_objects_never_promotes(tmp_path):
    """The failure this rule exists for: a candidate trained on a few objects, validated on a
    few, "as good" as production (0.25 vs 0.25) was promoted. Now the validation size and the
    bootstrap bound decide."""
    from earlyia.followup.model_registry import register
    from earlyia.followup.retrain import retrain

    base = make_world(300, 61, "ZTF26base", 60000)
    m0 = train_model(base, EXTRACTOR, Recipe(n_estimators=N_TREES), random_state=0)
    m0.save(tmp_path / "m0.eia")
    new = make_world(20, 62, "ZTF26new", 60000)
    objs = new.drop_duplicates("object_id")
    with FollowupDB(tmp_path / "loop.db") as db:
        register(db, tmp_path / "m0.eia", production=True, training_rows=m0.training_rows)
        _store_types(db, objs)
        r = retrain(db, new, EXTRACTOR, n_estimators=N_TREES)  # 30 % of 20 objects validate: 6
        assert r.n_validation == 6 and not r.promoted and "too few to decide" in r.reason
        assert (
            db.query("SELECT status FROM models WHERE version = ?", (r.version,))[0][0]
            == "candidate"
        )
        stored = json.loads(
            db.query("SELECT metrics FROM models WHERE version = ?", (r.version,))[0][0]
        )
        assert (
            stored["decision"]["promoted"] is False
            and stored["decision"]["evidence"]["n_objects"] == 6
        )


def _slow_bootstrap(best_c, best_p, y, thr_c, thr_p, metric, n, seed):
    """Reference: one resample at a time, metrics from explicit counts."""
    rng = np.random.default_rng(seed)
    out = []
    idx_all = rng.integers(0, len(y), (n, len(y)))
    for idx in idx_all:
        vals = []
        for best, thr in ((best_c, thr_c), (best_p, thr_p)):
            tp = fp = fn = 0
            for i in idx:
                flagged = best[i] > thr
                tp += flagged and y[i]
                fp += flagged and not y[i]
                fn += (not flagged) and y[i]
            eff = tp / (tp + fn) if tp + fn else 0.0
            pur = tp / (tp + fp) if tp + fp else 0.0
            fom = eff * (tp / (tp + 3 * fp) if tp + fp else 0.0)
            vals.append({"efficiency": eff, "purity": pur, "fom": fom}[metric])
        out.append(vals[0] - vals[1])
    return np.array(out)


@pytest.mark.parametrize("metric", ["fom", "efficiency", "purity"])
def test_paired_bootstrap_equals_the_slow_reference(metric):
    from earlyia.followup.retrain import paired_bootstrap

    rng = np.random.default_rng(5)
    y = rng.random(40) < 0.4
    best_c, best_p = rng.random(40), rng.random(40)
    fast = paired_bootstrap(best_c, best_p, y, 0.5, 0.6, metric, 300, 11)
    np.testing.assert_allclose(fast, _slow_bootstrap(best_c, best_p, y, 0.5, 0.6, metric, 300, 11))


def test_model_versions_are_hashes_matched_exactly_or_by_unambiguous_prefix(tmp_path):
    from earlyia.errors import ConfigError
    from earlyia.followup.model_registry import promote, register

    a = train_model(
        make_world(40, 71, "A", 60000), EXTRACTOR, Recipe(n_estimators=10), random_state=0
    )
    b = train_model(
        make_world(40, 72, "B", 60000), EXTRACTOR, Recipe(n_estimators=10), random_state=0
    )
    a.save(tmp_path / "a.eia")
    b.save(tmp_path / "b.eia")
    with FollowupDB(tmp_path / "loop.db") as db:
        register(db, tmp_path / "a.eia", production=True)
        for bad in ("%%%%%%", "______", "a%", "' OR 1=1 --"):
            with pytest.raises(ConfigError, match="hexadecimal"):
                promote(db, bad)
        register(db, tmp_path / "b.eia")
        assert promote(db, b.hash.upper()[:12])[0] == b.hash
    assert main(["models", "promote", "%%%%%%", "--db", str(tmp_path / "loop.db")]) == 2


def test_retrain_keeps_productions_rows_when_the_new_table_carries_row_flags(tmp_path):
    """A table from `earlyia features` has a `valid` column that production's stored rows lack:
    combined, production's rows stay in training (a missing flag is not "unusable"), and the new
    rows flagged unusable are left out."""
    from earlyia.followup.model_registry import register
    from earlyia.followup.retrain import retrain

    base = make_world(300, 41, "ZTF26base", 60000)
    m0 = train_model(base, EXTRACTOR, Recipe(n_estimators=N_TREES), random_state=0)
    m0.save(tmp_path / "m0.eia")
    assert "valid" not in m0.training_rows.columns
    tonight = make_world(40, 42, "ZTF26new", 60000)
    tonight["valid"] = True
    dropped = tonight["object_id"].iloc[0]
    tonight.loc[tonight["object_id"] == dropped, "valid"] = (
        False  # one object without usable features
    )
    objs = tonight.drop_duplicates("object_id")
    with FollowupDB(tmp_path / "loop.db") as db:
        register(db, tmp_path / "m0.eia", production=True, training_rows=m0.training_rows)
        _store_types(db, objs)
        r = retrain(
            db,
            tonight,
            EXTRACTOR,
            validation=make_world(200, 43, "ZTF26val", 60000),
            n_estimators=N_TREES,
        )
        assert set(r.training["object_id"]) == set(base["object_id"]) | (
            set(objs["object_id"]) - {dropped}
        )
