"""lsst_early: the ELAsTiCC classifier's features from one extractor, and its model scored
through `earlyia score` with the card's extractor and rise gate."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import shared
from earlyia.cli.main import main
from earlyia.errors import ConfigError, InputError
from earlyia.features import get_extractor, read_features
from earlyia.features.early import EarlyFeatures
from earlyia.features.gates import GATE_REASON, apply_gate, gate_spec, rise_gate
from earlyia.features.lsst_early import HOSTLESS, LsstEarlyFeatures, host_columns
from earlyia.features.rainbow import RainbowFeatures
from earlyia.io.lsst import read_elasticc
from earlyia.io.table import LightCurves
from earlyia.model.artifact import Model

ROOT = "elasticc_fink_ia_ii/ftransfer_elasticc_2023-02-08_902820"


@pytest.fixture(scope="module")
def alerts():
    return read_elasticc(shared(f"{ROOT}/classId=111/part-0-0.parquet"))


def test_blocks_match_their_extractors_and_host_columns_follow_the_object(alerts):
    ext = LsstEarlyFeatures()
    df = ext.transform(alerts, per="alert")
    X = df[ext.names].to_numpy()
    starts, ends = alerts.alert_segments()
    # the early block is EarlyFeatures on the same bands; Rainbow's block its extractor where it
    # fitted
    early = EarlyFeatures(
        bands=("g", "r", "i", "z", "u", "Y"),
        sigmoid=None,
        extra_colours=(("r", "i"), ("i", "z"), ("u", "g")),
    )
    XE, _, _ = early.extract_lc(alerts, starts, ends)
    np.testing.assert_array_equal(
        X[:, : len(early.names)], np.nan_to_num(XE, nan=-999.0, posinf=1e6, neginf=-1e6)
    )
    rb = RainbowFeatures.fink(survey="LSST", min_points=3, detections_only=False)
    XR, fitted, _ = rb.extract_lc(alerts, starts, ends)
    assert fitted.any() and not fitted.all()
    j0 = len(early.names)
    block = X[:, j0 : j0 + len(rb.names)]
    np.testing.assert_array_equal(df["rainbow_valid"].to_numpy() == 1, fitted)
    np.testing.assert_allclose(
        block[fitted], np.nan_to_num(XR[fitted], nan=-999.0, posinf=1e6, neginf=-1e6)
    )
    always = [rb.names.index(c) for c in ("n_points", "rise_sig")]
    np.testing.assert_allclose(
        block[~fitted][:, always], np.nan_to_num(XR[~fitted][:, always], nan=-999.0)
    )
    assert (block[~fitted][:, rb.names.index("amplitude")] == -999.0).all()
    # host columns: slow reference, alert by alert, from the alert's own object row
    obj = alerts.alerts["object_index"].to_numpy()
    for i in np.random.default_rng(0).choice(len(df), 25, replace=False):
        o = alerts.objects.iloc[obj[i]]
        assert df["hostgal_zphot"].iloc[i] == pytest.approx(o["hostgal_zphot"])
        assert df["hostgal_g-r"].iloc[i] == pytest.approx(o["hostgal_mag_g"] - o["hostgal_mag_r"])
        assert df["object_id"].iloc[i] == o["object_id"]


def test_host_settings_and_plasticc_mapping(alerts):
    assert LsstEarlyFeatures(host="z").names[-3:] == ["hostgal_zphot", "hostgal_zphot_err", "mwebv"]
    none = LsstEarlyFeatures(host="none")
    starts, ends = alerts.alert_segments()
    X1, _, _ = none.extract(
        alerts.mjd,
        alerts.band,
        alerts.flux,
        alerts.flux_err,
        alerts.detected,
        starts,
        ends,
        bands=tuple(alerts.bands),
        survey=alerts.survey,
    )
    X2, _, _ = LsstEarlyFeatures().extract_lc(alerts, starts, ends)
    np.testing.assert_array_equal(X1, X2[:, : len(none.names)])
    with pytest.raises(ConfigError, match="host-galaxy columns"):
        LsstEarlyFeatures().extract(
            alerts.mjd,
            alerts.band,
            alerts.flux,
            alerts.flux_err,
            alerts.detected,
            starts,
            ends,
            bands=tuple(alerts.bands),
            survey=alerts.survey,
        )
    with pytest.raises(ConfigError, match="host must be one of"):
        _ = LsstEarlyFeatures(host="all").names
    # PLAsTiCC metadata: photo-z 0 = galactic = ELAsTiCC's no-host values; unknown magnitudes stay
    # NaN
    meta = pd.DataFrame(
        {"hostgal_photoz": [0.0, 0.31], "hostgal_photoz_err": [0.0, 0.02], "mwebv": [0.1, 0.02]}
    )
    H = host_columns(meta, "full")
    assert H[0, 0] == HOSTLESS["hostgal_zphot"] and H[1, 0] == 0.31 and H[1, 2] == 0.02
    assert np.isnan(H[1, 3]) and H[0, 3] == HOSTLESS["hostgal_mag_r"]


def test_gate_spec_finds_prefixed_features_and_refuses_models_without_them():
    names = LsstEarlyFeatures().names
    spec = gate_spec("rise", names)
    assert spec["prefix"] == "rainbow_" and gate_spec("none", names) is None
    X = np.zeros((3, len(names)))
    X[:, names.index("rainbow_n_points")] = [2, 5, 5]
    X[:, names.index("rainbow_rise_sig")] = [0.0, 1.0, 4.0]
    np.testing.assert_array_equal(apply_gate(spec, X, names), [True, False, True])
    # the rise with one offset per band opens the gate too, unless the card predates it (no
    # band_offsets key)
    assert spec["band_offsets"] is True
    X[:, names.index("rainbow_rise_sig_band")] = [0.0, 3.5, -999.0]
    np.testing.assert_array_equal(apply_gate(spec, X, names), [True, True, True])
    old_card = {k: v for k, v in spec.items() if k != "band_offsets"}
    np.testing.assert_array_equal(apply_gate(old_card, X, names), [True, False, True])
    np.testing.assert_array_equal(apply_gate(None, X, names), [True, True, True])
    np.testing.assert_array_equal(
        apply_gate(spec, X, names), rise_gate(X, names, prefix="rainbow_")
    )
    with pytest.raises(InputError, match="rise_sig"):
        gate_spec("rise", get_extractor("early").names)
    with pytest.raises(InputError, match="unknown gate"):
        gate_spec("bright", names)


def _flat_and_fading(n=12, seed=3):
    """LSST light curves that must not score: flat and fading from the first point, 8-14 points
    in ugrizY."""
    rng = np.random.default_rng(seed)
    rows, hosts = [], []
    for k in range(n):
        m = int(rng.integers(8, 15))
        t = np.sort(rng.uniform(0, 30, m)) + 60000.0
        f = (
            300.0 + rng.normal(0, 10, m)
            if k % 2
            else 900.0 * np.exp(-(t - t[0]) / 12.0) + rng.normal(0, 10, m)
        )
        bands = np.asarray(list("ugrizY"), object)[rng.integers(0, 6, m)]
        rows += [(f"gen{k}", ti, b, fi, 10.0, True) for ti, b, fi in zip(t, bands, f, strict=True)]
        hosts.append(f"gen{k}")
    lc = LightCurves.from_frames(
        pd.DataFrame(rows, columns=["object_id", "mjd", "band", "flux", "flux_err", "detected"]),
        survey="LSST",
    )
    lc.objects["hostgal_zphot"] = 0.3
    return lc


@pytest.fixture(scope="module")
def lsst_table(tmp_path_factory):
    """`earlyia features --extractor lsst_early` on one SN Ia and one SN II file: (path, table,
    metadata, inputs)."""
    ia, ii = (
        shared(f"{ROOT}/classId=111/part-0-0.parquet"),
        shared(f"{ROOT}/classId=113/part-0-0.parquet"),
    )
    feats = tmp_path_factory.mktemp("lsst_table") / "f.parquet"
    assert (
        main(["features", str(ia), str(ii), "--extractor", "lsst_early", "--out", str(feats)]) == 0
    )
    df, meta = read_features(feats)
    return feats, df, meta, (ia, ii)


def test_features_train_score_through_the_cli(tmp_path, capsys, lsst_table):
    feats, df, meta, _ = lsst_table
    model_path, out = tmp_path / "m.eia", tmp_path / "s.parquet"
    assert meta["extractor"]["extractor"] == "lsst_early" and meta["survey"] == "LSST"
    assert df["valid"].all() and set(df["label"]) == {
        "SN Ia",
        "SN II",
    }  # every alert has features, even one point
    assert (
        main(["train", str(feats), "--out", str(model_path), "--trees", "40", "--cv-folds", "0"])
        == 0
    )
    model = Model.load(model_path)
    card = model.card
    assert (
        card["lineage"]["recipe"] == "lsst"
        and card["gate"]["kind"] == "rise"
        and card["selection"] == {"rule": "none"}
    )
    # the recipe learns only from the alerts the gate lets it score
    accepted = apply_gate(card["gate"], df[model.features].to_numpy(), model.features)
    assert card["training"]["rows"] == "gate" and 0 < card["training"]["n_gate_rejected"] == int(
        (~accepted).sum()
    )
    assert sorted(card["training"]["alert_ids"]) == sorted(df.loc[accepted, "alert_id"].astype(str))
    assert main(["models", "show", str(model_path)]) == 0
    shown = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert json.loads(shown["gate"]) == card["gate"] and json.loads(shown["selection"]) == {
        "rule": "none"
    }
    assert (
        f"only rows the gate accepts ({card['training']['n_gate_rejected']} labelled rows left out)"
        in shown["training"]
    )
    other = shared(f"{ROOT}/classId=111/part-0-1000.parquet")
    assert main(["score", str(other), "--model", str(model_path), "--out", str(out)]) == 0
    scores = pd.read_parquet(out)
    n_alerts = len(pd.read_parquet(other, columns=["alertId"]))
    assert len(scores) == n_alerts  # every alert is scored: no SIMBAD / ndethist cut on LSST
    # the same numbers as the extractor + model + gate called by hand
    lc = read_elasticc(other)
    ref = (
        get_extractor(card["extractor"])
        .transform(lc, per="alert")
        .set_index("alert_id")
        .loc[scores["alert_id"].astype(str)]
    )
    Xr = ref[model.features].to_numpy()
    keep = apply_gate(card["gate"], Xr, model.features)
    assert keep.any() and not keep.all()
    expect = np.where(keep, model.predict_proba(Xr)[:, 1], 0.0)
    np.testing.assert_allclose(scores["score"].to_numpy(), expect, atol=1e-12)
    assert (scores.loc[~keep, "reason"] == GATE_REASON).all() and not scores.loc[
        ~keep, "passed"
    ].any()
    # flat and fading light curves: gated to 0 by the card, whatever the forest says
    gen = _flat_and_fading()
    gpath = tmp_path / "gen.parquet"
    gen.to_parquet(gpath)
    # exit code 1: nothing could be scored (the table still says why for every alert)
    assert (
        main(
            ["score", str(gpath), "--model", str(model_path), "--out", str(tmp_path / "g.parquet")]
        )
        == 1
    )
    g = pd.read_parquet(tmp_path / "g.parquet")
    assert len(g) == 12 and (g["score"] == 0).all() and (g["reason"] == GATE_REASON).all()


def test_a_rainbow_table_of_lsst_alerts_trains_the_lsst_recipe_and_scores(tmp_path):
    """`earlyia train` on any LSST feature table picks the lsst recipe: Fink's ZTF selection (g
    and r points, ndethist, SIMBAD) would leave every LSST alert unscored."""
    ia, ii = (
        shared(f"{ROOT}/classId=111/part-0-0.parquet"),
        shared(f"{ROOT}/classId=113/part-0-0.parquet"),
    )
    feats, model_path, out = tmp_path / "rb.parquet", tmp_path / "rb.eia", tmp_path / "s.parquet"
    assert main(["features", str(ia), str(ii), "--extractor", "rainbow", "--out", str(feats)]) == 0
    assert (
        main(["train", str(feats), "--out", str(model_path), "--trees", "30", "--cv-folds", "0"])
        == 0
    )
    card = Model.load(model_path).card
    assert (
        card["lineage"]["recipe"] == "lsst"
        and card["selection"] == {"rule": "none"}
        and card["gate"]["band_offsets"]
    )
    assert (
        main(
            [
                "score",
                str(shared(f"{ROOT}/classId=111/part-0-1000.parquet")),
                "--model",
                str(model_path),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    scores = pd.read_parquet(out)
    assert scores["passed"].any() and (scores["score"] > 0.5).any()
    # the rows not scored failed Rainbow's own cuts or its gate, never a ZTF cut
    reasons = set(scores.loc[~scores["passed"], "reason"])
    assert not any("ndethist" in r or "band g" in r or "SIMBAD" in r for r in reasons), reasons


def test_learn_with_the_gate_queries_only_alerts_the_model_will_score(tmp_path, capsys, lsst_table):
    """`earlyia learn --gate rise`: the pool and the test rows are the alerts the gate accepts;
    the run's labels then train the lsst recipe without any being left out; a table without
    Rainbow's statistics is refused."""
    feats, df, meta, (ia, ii) = lsst_table
    out = tmp_path / "run"
    names = meta["extractor"]["names"]
    accepted = apply_gate(gate_spec("rise", names), df[names].to_numpy(), names)
    args = [
        "learn",
        str(feats),
        "--strategy",
        "uncertainty",
        "--loops",
        "4",
        "--batch-size",
        "5",
        "--initial",
        "10",
        "--realisations",
        "1",
        "--trees",
        "20",
        "--n-jobs",
        "1",
        "--quiet",
        "--gate",
        "rise",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["config"]["gate"] == "rise"
        and manifest["data"]["dropped"]["gate"] == int((~accepted).sum()) > 0
    )
    assert manifest["data"]["n_rows"] == int(accepted.sum())
    ids = json.loads(next(out.rglob("ids.json")).read_text())
    chosen = set(ids["initial_ids"]) | set(ids["queried_ids"])
    assert len(chosen) == 30 and chosen <= set(df.loc[accepted, "alert_id"].astype(str))
    model_path = tmp_path / "m.eia"
    assert (
        main(
            [
                "train",
                str(feats),
                "--from-run",
                str(next(out.rglob("ids.json")).parent),
                "--out",
                str(model_path),
                "--trees",
                "5",
                "--cv-folds",
                "0",
            ]
        )
        == 0
    )
    training = Model.load(model_path).card["training"]
    assert training["n_samples"] == 30 and training["n_gate_rejected"] == 0
    sig = tmp_path / "sigmoid.parquet"
    assert main(["features", str(ia), str(ii), "--extractor", "sigmoid", "--out", str(sig)]) == 0
    capsys.readouterr()
    assert main([*args[:1], str(sig), *args[2:-1], str(tmp_path / "run2")]) != 0
    assert "gate 'rise' needs Rainbow's rise_sig" in capsys.readouterr().err


def test_train_rows_follow_the_gate_and_need_one(tmp_path, lsst_table):
    """`--train-rows gate` (the lsst recipe's) needs a gate; `--gate none` falls back to every
    row; the library refuses gate rows without a gate instead of silently training on everything."""
    from earlyia.model.recipe import Recipe
    from earlyia.model.training import train_model

    feats, df, meta, _ = lsst_table
    with pytest.raises(ConfigError, match="train_rows='gate' needs a gate"):
        Recipe(n_estimators=5, gate="none", train_rows="gate", cv_folds=0)
    with pytest.raises(ConfigError, match="recipe setting train_rows"):
        Recipe(n_estimators=5, gate="rise", train_rows="accepted", cv_folds=0)
    with pytest.raises(
        InputError, match="gate 'rise' needs"
    ):  # the features decide whether the gate can be evaluated
        train_model(
            df.drop(columns=[c for c in df.columns if c.endswith("rise_sig")]),
            {
                **meta["extractor"],
                "names": [n for n in meta["extractor"]["names"] if not n.endswith("rise_sig")],
            },
            Recipe(n_estimators=5, gate="rise", cv_folds=0),
        )
    path = tmp_path / "m.eia"
    assert (
        main(
            [
                "train",
                str(feats),
                "--out",
                str(path),
                "--trees",
                "5",
                "--cv-folds",
                "0",
                "--gate",
                "none",
            ]
        )
        == 0
    )
    card = Model.load(path).card
    assert (
        card["gate"] is None
        and card["training"]["rows"] == "all"
        and card["training"]["n_samples"] == len(df)
    )
    assert (
        main(
            [
                "train",
                str(feats),
                "--out",
                str(path),
                "--trees",
                "5",
                "--cv-folds",
                "0",
                "--train-rows",
                "all",
            ]
        )
        == 0
    )
    card = Model.load(path).card
    assert (
        card["gate"]["kind"] == "rise"
        and card["training"]["rows"] == "all"
        and card["training"]["n_samples"] == len(df)
    )
