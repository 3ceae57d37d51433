"""Scoring: the pure core against slow references, chunking, bad alerts, the CLI end to end,
Fink's model."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import reference, shared
from earlyia.cli.main import main
from earlyia.errors import Problem
from earlyia.features import get_extractor
from earlyia.features.io import write_features
from earlyia.io.fink import lightcurves_from_fink_frame
from earlyia.io.table import LightCurves
from earlyia.model.artifact import Model
from earlyia.model.recipe import Recipe
from earlyia.model.training import train_model
from earlyia.score.pipeline import (
    context_columns,
    problem_rows,
    score_files,
    score_lightcurves,
    score_rows,
)
from earlyia.score.scores_file import METADATA_KEY, SCORE_COLUMNS, ScoresWriter

FINK = {"mode": "fink"}


@pytest.fixture(scope="module")
def replay_df():
    return pd.read_parquet(reference("ztf_replay_alerts_with_anchor.parquet"))


@pytest.fixture(scope="module")
def small_input(replay_df, tmp_path_factory):
    """Replay rows of 40 objects (a Fink-format alert file, ~500 alerts)."""
    ids = replay_df["objectId"].drop_duplicates().iloc[::30].iloc[:40]
    sub = replay_df[replay_df["objectId"].isin(ids)].reset_index(drop=True)
    path = tmp_path_factory.mktemp("inp") / "alerts.parquet"
    sub.to_parquet(path)
    return path, sub


@pytest.fixture(scope="module")
def model(replay_df):
    """A small forest on fink-mode features of the replay objects not in the small input."""
    lab = pd.read_csv(shared("ztf_fink_tns_labelled/objects.csv")).set_index("objectId")["tns_type"]
    ids = replay_df["objectId"].drop_duplicates().iloc[1::4]
    lc = lightcurves_from_fink_frame(replay_df[replay_df["objectId"].isin(ids)], source="replay")
    ext = get_extractor("sigmoid", **FINK)
    feats = ext.transform(lc, per="alert")
    feats["label"] = feats["object_id"].map(lab)
    return train_model(feats, ext.config(), Recipe(n_estimators=25), random_state=1), feats, ext


# ---------------------------------------------------------------------------- pure core
def _random_lc(seed: int) -> LightCurves:
    rng = np.random.default_rng(seed)
    rows = []
    for o in range(25):
        n = int(rng.integers(0, 12))
        t = np.sort(rng.uniform(0, 30, n)) + 59000
        det = rng.random(n) < 0.6
        flux = np.where(det, rng.normal(300, 250, n), np.nan)
        for k in range(n):
            rows.append(
                (f"o{o}", t[k], rng.choice(["g", "r"]), flux[k], rng.uniform(5, 50), det[k])
            )
    phot = pd.DataFrame(rows, columns=["object_id", "mjd", "band", "flux", "flux_err", "detected"])
    lc = LightCurves.from_frames(phot, survey="ZTF")
    # alerts on a random subset of detections (some objects get none: they are scored per object)
    det_idx = np.flatnonzero(lc.detected)
    pick = det_idx[rng.random(len(det_idx)) < 0.5]
    obj = lc.object_of_point()[pick]
    alerts = pd.DataFrame(
        {"object_id": lc.object_ids[obj], "alert_id": [f"al{i}" for i in pick], "mjd": lc.mjd[pick]}
    )
    return LightCurves.from_frames(phot, alerts=alerts, survey="ZTF")


@pytest.mark.parametrize("seed", range(4))
def test_context_matches_a_slow_reference(seed):
    lc = _random_lc(seed)
    rows = score_rows(lc)
    cols = context_columns(lc, rows)
    has_alert = set(lc.alerts["object_index"])
    assert set(rows.object_index[rows.alert_row < 0]) == set(range(lc.n_objects)) - has_alert
    for i in range(len(rows.starts)):
        s, e = rows.starts[i], rows.ends[i]
        if rows.alert_row[i] >= 0:  # the segment is the object's history up to the alert time
            o = rows.object_index[i]
            pts = np.arange(lc.offsets[o], lc.offsets[o + 1])
            assert s == lc.offsets[o] and e == pts[lc.mjd[pts] <= rows.mjd[i] + 1e-5].max() + 1
        seg = list(range(s, e))
        dets = [j for j in seg if lc.detected[j]]
        assert cols["n_detections"][i] == len(dets)
        if dets:
            f, last = dets[0], dets[-1]
            assert (
                cols["first_det_mjd"][i] == lc.mjd[f]
                and cols["first_det_band"][i] == lc.bands[lc.band[f]]
            )
            assert cols["last_band"][i] == lc.bands[lc.band[last]]
            want = 27.5 - 2.5 * np.log10(lc.flux[last]) if lc.flux[last] > 0 else np.nan
            np.testing.assert_allclose(cols["last_mag"][i], want)
            want_err = 1.0857 * lc.flux_err[f] / lc.flux[f] if lc.flux[f] > 0 else np.nan
            np.testing.assert_allclose(cols["first_det_mag_err"][i], want_err, rtol=1e-4)
            # the last upper limit before the first detection IN THE FIRST DETECTION'S BAND (as Fink
            # reports it)
            before = [j for j in seg if not lc.detected[j] and j < f and lc.band[j] == lc.band[f]]
        else:
            assert np.isnan(cols["first_det_mjd"][i]) and cols["first_det_band"][i] == ""
            before = [j for j in seg if not lc.detected[j]]
        if before:
            j = before[-1]
            assert (
                cols["last_nondet_mjd"][i] == lc.mjd[j]
                and cols["last_nondet_band"][i] == lc.bands[lc.band[j]]
            )
            np.testing.assert_allclose(
                cols["last_nondet_limit_mag"][i], 27.5 - 2.5 * np.log10(5 * lc.flux_err[j])
            )
        else:
            assert np.isnan(cols["last_nondet_mjd"][i]) and cols["last_nondet_band"][i] == ""


def test_first_detection_error_limit_and_the_nondetection_in_its_band():
    """What the TNS report needs: the first detection's magnitude error and epoch limit, and the
    last upper limit before it in the same band (a later upper limit in another band is not the
    one to report)."""
    flux = 10 ** (-0.4 * 19.0 + 11)  # a 19.0 mag detection
    phot = pd.DataFrame(
        [
            ("A", 59000.0, "r", np.nan, 10 ** (-0.4 * 20.5 + 11) / 5, False, -1),
            ("A", 59001.0, "g", np.nan, 10 ** (-0.4 * 20.9 + 11) / 5, False, -1),  # later, but in g
            ("A", 59002.0, "r", flux, 0.1 * flux, True, 1001),
            ("A", 59003.0, "g", flux, 0.05 * flux, True, 1002),
            ("B", 59000.0, "g", flux, 0.02 * flux, True, 2001),  # its own alert is not in the input
            ("B", 59001.0, "g", flux, 0.02 * flux, True, 2002),
        ],
        columns=["object_id", "mjd", "band", "flux", "flux_err", "detected", "alert_id"],
    )
    alerts = pd.DataFrame(
        {
            "object_id": ["A", "A", "B"],
            "alert_id": ["1001", "1002", "2002"],
            "mjd": [59002.0, 59003.0, 59001.0],
            "diffmaglim": [20.3, 20.1, 20.6],
        }
    )
    lc = LightCurves.from_frames(phot, alerts=alerts, survey="ZTF")
    rows = score_rows(lc)
    cols = (
        pd.DataFrame(context_columns(lc, rows)).assign(alert_id=rows.alert_id).set_index("alert_id")
    )
    for a in ("1001", "1002"):
        row = cols.loc[a]
        assert row["first_det_band"] == "r" and row["first_det_mag"] == pytest.approx(19.0)
        assert row["first_det_mag_err"] == pytest.approx(1.0857 * 0.1, rel=1e-4)
        assert row["first_det_limit_mag"] == pytest.approx(
            20.3
        )  # the epoch of the first detection, not the alert's
        assert row["last_nondet_mjd"] == 59000.0 and row["last_nondet_band"] == "r"
        assert row["last_nondet_limit_mag"] == pytest.approx(20.5)
    b = cols.loc["2002"]
    assert np.isnan(b["first_det_limit_mag"]) and b["first_det_mag_err"] == pytest.approx(
        1.0857 * 0.02, rel=1e-4
    )
    assert np.isnan(b["last_nondet_mjd"]) and b["last_nondet_band"] == ""


def test_score_lightcurves_schema_and_consistency(small_input, model):
    m, _, ext = model
    _, sub = small_input
    lc = lightcurves_from_fink_frame(sub, source="small")
    out = score_lightcurves(lc, m, select=False)
    assert list(out.columns[: len(SCORE_COLUMNS)]) == list(SCORE_COLUMNS)
    assert list(out.columns[-12:]) == ext.names
    assert {"anchor_score", "candid"} <= set(out.columns)
    assert len(out) == len(sub) and set(out["alert_id"]) == set(sub["candid"])
    # score = the model on the features written next to it when passed, else 0 with a reason
    p = out["passed"].to_numpy()
    assert p.any() and (~p).any()
    np.testing.assert_allclose(
        out.loc[p, "score"], m.predict_proba(out.loc[p, ext.names].to_numpy())[:, 1]
    )
    assert (
        (out.loc[~p, "score"] == 0).all()
        and (out.loc[~p, "reason"] != "").all()
        and (out.loc[p, "reason"] == "").all()
    )
    # features are the extractor's on each alert's history (same as the feature table path)
    feats = ext.transform(lc, per="alert").set_index("alert_id")
    np.testing.assert_allclose(
        out.set_index("alert_id").loc[feats.index, ext.names].to_numpy(),
        feats[ext.names].to_numpy(),
    )


@pytest.mark.parametrize("case", ["sorted", "shuffled", "alerts_pool", "canonical"])
def test_chunked_equals_unchunked(tmp_path, small_input, model, case):
    """Chunks never split an object's alerts, so the rows do not depend on the chunk size."""
    m, _, _ = model
    path, sub = small_input
    if case == "shuffled":  # alerts of an object scattered over the file
        path = tmp_path / "shuffled.parquet"
        sub.sample(frac=1.0, random_state=0).to_parquet(path)
    elif case == "canonical":  # our own table: one row per object, alerts nested
        path = tmp_path / "canonical.parquet"
        lightcurves_from_fink_frame(sub, source="small").to_parquet(path)
    elif (
        case == "alerts_pool"
    ):  # real alerts of several sources, histories that disagree between alerts of an object
        path = shared("ztf_fink_alerts_pool/ztf_alerts_pool.parquet")
    n_rows = len(sub) if case == "canonical" else pq.ParquetFile(path).metadata.num_rows
    one = score_files([path], m, tmp_path / "one.parquet", chunk_size=10**6)
    many = score_files(
        [path],
        m,
        tmp_path / "many.parquet",
        chunk_size={"alerts_pool": 150, "canonical": 7}.get(case, 37),
    )
    assert one.n_chunks == 1 and many.n_chunks > 3
    a = pd.read_parquet(tmp_path / "one.parquet").sort_values("alert_id").reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "many.parquet").sort_values("alert_id").reset_index(drop=True)
    assert len(a) == n_rows and a["alert_id"].is_unique
    pd.testing.assert_frame_equal(a, b)
    meta = json.loads(pq.read_schema(tmp_path / "many.parquet").metadata[METADATA_KEY])
    assert meta["model_hash"] == m.hash and meta["extractor"]["names"] == m.features


def _broken_frame(sub: pd.DataFrame) -> tuple[pd.DataFrame, set[str]]:
    """The input with broken alerts appended under new object ids: missing lists, NaN time,
    unknown band, ragged lists."""
    good = sub[sub["objectId"] == sub["objectId"].iloc[0]]
    row = good.iloc[-1]
    bad = []

    def add(oid, **change):
        r = row.copy()
        r["objectId"], r["candid"] = oid, f"{oid}_1"
        for k, v in change.items():
            r[k] = v
        bad.append(r)

    add("BADnull", cmagpsf=None)
    add("BADnan", cjd=np.where(np.arange(len(row["cjd"])) == 1, np.nan, row["cjd"]))
    add("BADband", cfid=np.full(len(row["cfid"]), 7))
    add("BADragged", csigmapsf=np.asarray(row["csigmapsf"])[:-1])
    # unsorted and duplicated epochs are repaired, not fatal: the alert is scored like the clean one
    order = np.arange(len(row["cjd"]))[::-1]
    add(
        "OKunsorted",
        **{c: np.asarray(row[c])[order] for c in ("cjd", "cfid", "cmagpsf", "csigmapsf")},
    )
    add(
        "OKdup",
        **{
            c: np.concatenate([np.asarray(row[c]), np.asarray(row[c])[-1:]])
            for c in ("cjd", "cfid", "cmagpsf", "csigmapsf")
        },
    )
    return pd.concat([sub, pd.DataFrame(bad)], ignore_index=True), {
        "BADnull",
        "BADnan",
        "BADband",
        "BADragged",
    }


def test_broken_alerts_are_reported_and_the_rest_scored(tmp_path, small_input, model):
    m, _, _ = model
    path, sub = small_input
    frame, bad_ids = _broken_frame(sub)
    frame.to_parquet(tmp_path / "broken.parquet")
    score_files([path], m, tmp_path / "clean.parquet", select=False)
    s = score_files(
        [tmp_path / "broken.parquet"], m, tmp_path / "out.parquet", chunk_size=200, select=False
    )
    clean = pd.read_parquet(tmp_path / "clean.parquet").set_index("alert_id")
    out = pd.read_parquet(tmp_path / "out.parquet")
    for oid in bad_ids:
        rows = out[out["object_id"] == oid]
        assert (
            len(rows) >= 1
            and not rows["passed"].any()
            and (rows["score"] == 0).all()
            and (rows["reason"] != "").all()
        ), oid
    assert s.n_problems >= len(bad_ids)
    good = out[out["alert_id"].isin(clean.index)].set_index("alert_id")
    assert len(good) == len(clean)
    np.testing.assert_array_equal(good.loc[clean.index, "score"], clean["score"])
    ref_score = clean.loc[
        sub["candid"].iloc[sub["objectId"].eq(sub["objectId"].iloc[0]).to_numpy().nonzero()[0][-1]],
        "score",
    ]
    for oid in ("OKunsorted", "OKdup"):
        assert out.loc[out["object_id"] == oid, "score"].iloc[0] == pytest.approx(ref_score)


def test_writer_merges_chunks_with_different_columns(tmp_path):
    w = ScoresWriter(tmp_path / "s.parquet", {"x": 1})
    w.write(problem_rows([Problem("f1", "o1", "bad")], ["a"]).assign(extra_a=1.5))
    w.write(problem_rows([Problem("f2", "o2", "worse")], ["a"]).assign(extra_b="x"))
    w.write(problem_rows([Problem("f3", None, "unreadable")], ["a"]))
    w.close()
    df = pd.read_parquet(tmp_path / "s.parquet")
    assert (
        list(df["object_id"]) == ["o1", "o2", ""]
        and df["extra_a"].iloc[0] == 1.5
        and df["extra_b"].iloc[1] == "x"
    )
    assert list(df.columns[: len(SCORE_COLUMNS)]) == list(SCORE_COLUMNS)
    assert [p.name for p in tmp_path.iterdir()] == ["s.parquet"]  # no temporary leftovers


# ---------------------------------------------------------------------------- the CLI
def test_cli_train_show_score(tmp_path, small_input, model, capsys):
    _, feats, ext = model
    path, sub = small_input
    write_features(
        feats.drop(columns="label"), tmp_path / "feats.parquet", ext, survey="ZTF", bands=("g", "r")
    )
    labels = shared("ztf_fink_tns_labelled/objects.csv")
    rc = main(
        [
            "train",
            str(tmp_path / "feats.parquet"),
            "--labels",
            str(labels),
            "--out",
            str(tmp_path / "m.eia"),
            "--trees",
            "15",
        ]
    )
    assert rc == 0
    m = Model.load(tmp_path / "m.eia")
    assert m.card["training"]["n_samples"] == int(
        feats["valid"].sum() - feats.loc[feats["valid"], "label"].isin(["", "SN", "Other"]).sum()
    )
    assert main(["models", "show", str(tmp_path / "m.eia")]) == 0
    shown = capsys.readouterr().out
    for word in ("a_g", "SN Ia", m.hash, "oob", "scikit-learn", "parent"):
        assert word in shown
    rc = main(
        [
            "score",
            str(path),
            "--model",
            str(tmp_path / "m.eia"),
            "--out",
            str(tmp_path / "s.parquet"),
            "--chunk-size",
            "100",
            "--no-select",
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert (
        "it/s" not in err and "scoring:" not in err
    )  # no progress bar when stderr is not a terminal
    out = pd.read_parquet(tmp_path / "s.parquet")
    assert len(out) == len(sub) and out["passed"].any()
    # --from-run: only the ids an AL run trained on
    run = tmp_path / "run"
    run.mkdir()
    chosen = feats.loc[feats["valid"], "alert_id"].iloc[::2].tolist()
    (run / "ids.json").write_text(
        json.dumps({"initial_ids": chosen[:10], "queried_ids": [chosen[10:20], chosen[20:]]})
    )
    rc = main(
        [
            "train",
            str(tmp_path / "feats.parquet"),
            "--labels",
            str(labels),
            "--from-run",
            str(run),
            "--out",
            str(tmp_path / "r.eia"),
            "--trees",
            "5",
            "--parent",
            str(tmp_path / "m.eia"),
        ]
    )
    assert rc == 0
    r = Model.load(tmp_path / "r.eia")
    assert set(r.card["training"]["alert_ids"]) <= set(chosen) and r.card["parent"] == m.hash
    assert r.card["lineage"]["ids_file"].endswith("ids.json")
    # an experiment folder: best.json names the realisation whose ids are used
    exp = tmp_path / "exp"
    for strategy, r_, ids in (
        ("uncertainty", 0, chosen[:30]),
        ("random", 0, chosen[30:60]),
        ("uncertainty", 1, chosen[60:90]),
    ):
        d = exp / "realisations" / strategy / f"r{r_:03d}"
        d.mkdir(parents=True)
        (d / "ids.json").write_text(
            json.dumps(
                {
                    "strategy": strategy,
                    "realisation": r_,
                    "initial_ids": ids[:10],
                    "queried_ids": ids[10:],
                }
            )
        )
    (exp / "best.json").write_text(json.dumps({"strategy": "random", "realisation": 0}))
    assert (
        main(
            [
                "train",
                str(tmp_path / "feats.parquet"),
                "--labels",
                str(labels),
                "--from-run",
                str(exp),
                "--out",
                str(tmp_path / "b.eia"),
                "--trees",
                "5",
            ]
        )
        == 0
    )
    b = Model.load(tmp_path / "b.eia")
    assert (
        set(b.card["training"]["alert_ids"]) <= set(chosen[30:60])
        and b.card["lineage"]["best"]["strategy"] == "random"
    )
    (exp / "best.json").unlink()
    assert (
        main(
            [
                "train",
                str(tmp_path / "feats.parquet"),
                "--from-run",
                str(exp),
                "--out",
                str(tmp_path / "x.eia"),
            ]
        )
        == 2
    )
    assert "3 ids.json" in capsys.readouterr().err


def test_cli_refuses_tampered_and_mismatched_models(tmp_path, small_input, model, capsys):
    m, feats, _ = model
    path, _ = small_input
    good = m.save(tmp_path / "m.eia")
    with zipfile.ZipFile(good) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    card = json.loads(members["card.json"])
    card["features"][0] = "a_x"
    members["card.json"] = json.dumps(card).encode()
    with zipfile.ZipFile(tmp_path / "t.eia", "w") as zf:
        for n, d in members.items():
            zf.writestr(n, d)
    rc = main(
        [
            "score",
            str(path),
            "--model",
            str(tmp_path / "t.eia"),
            "--out",
            str(tmp_path / "s.parquet"),
        ]
    )
    assert rc == 2 and "modified or corrupted" in capsys.readouterr().err
    # a model whose card says other features than the extractor produces
    renamed = feats.rename(columns={"mse_r": "mse_red"})
    cfg = dict(m.extractor_config, names=[("mse_red" if n == "mse_r" else n) for n in m.features])
    other = train_model(renamed, cfg, Recipe(n_estimators=3)).save(tmp_path / "o.eia")
    rc = main(["score", str(path), "--model", str(other), "--out", str(tmp_path / "s.parquet")])
    err = capsys.readouterr().err
    assert rc == 2 and "mse_red" in err
    assert not (tmp_path / "s.parquet").exists()


def test_cli_notes_a_model_trained_by_another_release(tmp_path, small_input, model, capsys):
    """Feature values can change between releases (a fitter change): scoring says so, and still
    scores."""
    from earlyia import __version__
    from earlyia.model.artifact import Model

    m, _, _ = model
    path, _ = small_input
    assert m.version_note() is None
    rc = main(
        [
            "score",
            str(path),
            "--model",
            str(m.save(tmp_path / "now.eia")),
            "--out",
            str(tmp_path / "a.parquet"),
        ]
    )
    assert rc == 0 and "trained with earlyia" not in capsys.readouterr().err
    card = dict(m.card, versions=dict(m.card["versions"], earlyia="0.0.1"))
    old = Model(m.ensemble, card, m.calibration).save(tmp_path / "old.eia")
    rc = main(["score", str(path), "--model", str(old), "--out", str(tmp_path / "b.parquet")])
    err = capsys.readouterr().err
    assert rc == 0 and f"trained with earlyia 0.0.1, this is earlyia {__version__}" in err
    assert (tmp_path / "b.parquet").exists()


def test_cli_exit_code_when_nothing_scored(tmp_path, small_input, model, capsys):
    m, _, _ = model
    _, sub = small_input
    frame, _ = _broken_frame(sub)
    m.save(tmp_path / "m.eia")
    frame = frame[frame["objectId"].str.startswith("BAD")]
    frame.to_parquet(tmp_path / "bad.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    rc = main(
        [
            "score",
            str(tmp_path / "bad.parquet"),
            str(tmp_path / "junk.parquet"),
            "--model",
            str(tmp_path / "m.eia"),
            "--out",
            str(tmp_path / "s.parquet"),
        ]
    )
    assert rc == 1 and "nothing could be scored" in capsys.readouterr().err
    out = pd.read_parquet(tmp_path / "s.parquet")
    assert not out["passed"].any() and out["reason"].str.len().gt(0).all()
    assert out["reason"].str.contains("junk.parquet").any()


# ---------------------------------------------------------------------------- Fink's model end to
# end
def test_fink_model_scores_replay_like_anchor(replay_df):
    model = Model.from_fink(shared("anchor_models_fink/default-model_sigmoid.obj.xz"))
    assert (
        model.features[:3] == ["a_g", "b_g", "c_g"]
        and model.card["extractor"]["params"]["mode"] == "fink"
    )
    lc = lightcurves_from_fink_frame(replay_df, source="replay")
    out = score_lightcurves(lc, model)
    assert len(out) == len(replay_df)
    out = out.set_index("alert_id").loc[replay_df["candid"]]
    diff = np.abs(out["score"].to_numpy() - replay_df["anchor_score"].to_numpy())
    # same tolerance as the fink-mode acceptance (tests/test_fink_compat.py): a few alerts differ by
    # a handful of trees
    assert model.card["selection"] == {"rule": "fink"}
    assert diff.max() <= 0.01 and (diff <= 1e-6).mean() >= 0.99
    assert ((out["score"] > 0).to_numpy() == (replay_df["anchor_score"] > 0).to_numpy()).all()


def test_lsst_model_scores_lsst_alerts_through_the_same_command(tmp_path, capsys):
    """The card's extractor (here with LSST bands) is rebuilt by `earlyia score`; nothing
    ZTF-specific is assumed."""
    from earlyia.io import read

    path = shared("fixtures/elasticc/test_elasticc_earlysnia_with_truth.parquet")
    lc = read(path)
    ext = get_extractor("sigmoid", mode="robust", bands=("g", "r", "i"))
    feats = ext.transform(lc, per="alert")
    # plumbing test: the fixture holds only SN Ia, so the two classes alternate by object
    rank = pd.factorize(feats["object_id"])[0]
    feats["label"] = np.where(rank % 2 == 0, "SN Ia", "SN II")
    train_model(feats, ext.config(), Recipe(n_estimators=5)).save(tmp_path / "lsst.eia")
    rc = main(
        [
            "score",
            str(path),
            "--model",
            str(tmp_path / "lsst.eia"),
            "--out",
            str(tmp_path / "s.parquet"),
            "--no-select",
        ]
    )
    capsys.readouterr()
    assert rc == 0
    out = pd.read_parquet(tmp_path / "s.parquet")
    assert len(out) == len(lc.alerts) and out["passed"].any()
    assert list(out.columns[-len(ext.names) :]) == ext.names and "a_i" in out.columns
    assert set(out["first_det_band"]) - {""} <= set("ugrizY")
    meta = json.loads(pq.read_schema(tmp_path / "s.parquet").metadata[METADATA_KEY])
    assert meta["extractor"]["params"]["bands"] == ["g", "r", "i"]


def test_selection_from_the_card(small_input, model):
    m, _, _ = model
    _, sub = small_input
    strict = Model(m.ensemble, {**m.card, "selection": {"max_ndethist": 5}})
    assert strict.hash != m.hash
    lc = lightcurves_from_fink_frame(sub, source="small")
    out = score_lightcurves(lc, strict)
    late = out["ndethist"] > 5
    assert (
        late.any()
        and not out.loc[late, "passed"].any()
        and out.loc[late, "reason"].str.startswith("ndethist").all()
    )
    default = score_lightcurves(lc, m)
    assert default.loc[late, "passed"].any()
    explicit = score_lightcurves(
        lc, strict, selection={}
    )  # the caller's selection wins over the card's
    pd.testing.assert_frame_equal(explicit, default)


def test_avro_directory_chunks_keep_an_objects_alerts_together(tmp_path, model):
    """Alerts of one object in separate Avro files, with histories that differ (a later alert's
    window lost old points)."""
    import copy

    import fastavro

    m, _, _ = model
    with open(shared("fixtures/fink_ztf/avro_multi_alerts.avro"), "rb") as fh:
        reader = fastavro.reader(fh)
        schema = reader.writer_schema
        records = list(reader)
    base = max(
        records,
        key=lambda r: sum(p.get("magpsf") is not None for p in (r.get("prv_candidates") or [])),
    )
    later = copy.deepcopy(base)
    later["candid"] = base["candid"] + 1
    later["candidate"]["candid"] = later["candid"]
    later["candidate"]["jd"] = base["candidate"]["jd"] + 1.0
    prv = later["prv_candidates"]
    later["prv_candidates"] = prv[len(prv) // 2 :]  # the older half fell out of the history window
    alerts = dir_ = tmp_path / "alerts"
    dir_.mkdir()
    for i, rec in enumerate(
        [later, *records]
    ):  # the two alerts of the object far apart in file order
        with open(alerts / f"{i:03d}.avro", "wb") as out:
            fastavro.writer(out, schema, [rec])
    one = score_files([alerts], m, tmp_path / "one.parquet", chunk_size=10**6, select=False)
    many = score_files([alerts], m, tmp_path / "many.parquet", chunk_size=2, select=False)
    assert one.n_chunks == 1 and many.n_chunks > 3
    a = pd.read_parquet(tmp_path / "one.parquet").sort_values("alert_id").reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "many.parquet").sort_values("alert_id").reset_index(drop=True)
    assert len(a) == len(records) + 1
    pd.testing.assert_frame_equal(a, b)
    # the merged history is what made the two paths agree: the later alert alone sees fewer
    # detections
    alone = tmp_path / "alone"
    alone.mkdir()
    with open(alone / "later.avro", "wb") as out:
        fastavro.writer(out, schema, [later])
    score_files([alone], m, tmp_path / "alone.parquet", select=False)
    n_alone = pd.read_parquet(tmp_path / "alone.parquet")["n_detections"].iloc[0]
    assert a.loc[a["alert_id"] == str(later["candid"]), "n_detections"].iloc[0] > n_alone


def test_fink_rule_reasons_match_the_rows(model):
    """Fink's cuts on mixed alert and object rows: the reason names the failed cut with the row's
    own numbers."""
    m, _, _ = model
    fink_rule = Model(m.ensemble, {**m.card, "selection": {"rule": "fink"}})
    lc = _random_lc(1)
    out = score_lightcurves(lc, fink_rule)
    few = out["n_detections"] < 4
    assert few.any() and (~few).any() and (out["alert_id"] == "").any()
    for _, r in out[few].iterrows():
        assert (
            r["reason"].startswith(f"Fink cuts: {r['n_detections']} detections < 4")
            and not r["passed"]
        )
    assert not out.loc[~few, "reason"].str.startswith("Fink cuts").any()


def test_cli_train_records_the_selection_scoring_applies(tmp_path, small_input, model):
    _, feats, ext = model
    path, _ = small_input
    write_features(feats, tmp_path / "feats.parquet", ext, survey="ZTF", bands=("g", "r"))
    base = ["train", str(tmp_path / "feats.parquet"), "--trees", "10", "--cv-folds", "0"]
    assert main([*base, "--out", str(tmp_path / "strict.eia")]) == 0
    assert (
        main(
            [
                *base,
                "--out",
                str(tmp_path / "loose.eia"),
                "--select-min-points",
                "1",
                "--select-no-rising",
            ]
        )
        == 0
    )
    assert Model.load(tmp_path / "loose.eia").card["selection"] == {
        "min_points_per_band": 1,
        "require_rising": False,
    }
    for name in ("strict", "loose"):
        assert main(
            [
                "score",
                str(path),
                "--model",
                str(tmp_path / f"{name}.eia"),
                "--out",
                str(tmp_path / f"{name}.parquet"),
            ]
        ) in (0, 1)
    strict = pd.read_parquet(tmp_path / "strict.parquet")
    loose = pd.read_parquet(tmp_path / "loose.parquet")
    # the card's selection is what scoring applies: the default cuts reject on 3 nights per band and
    # on the rising test; the recorded looser ones never do, and an alert passing the strict cuts
    # passes the loose ones too
    assert (
        strict["reason"].str.contains("points < 3").any()
        and strict["reason"].str.contains("not rising in").any()
    )
    assert not loose["reason"].str.contains("points < 3|not rising in").any()
    assert not (
        strict.set_index("alert_id")["passed"] & ~loose.set_index("alert_id")["passed"]
    ).any()
    assert main([*base, "--out", str(tmp_path / "x.eia"), "--select-min-points", "-1"]) == 2
