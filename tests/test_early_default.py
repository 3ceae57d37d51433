"""The default early pipeline: recipe, generated impostors, and what must never score above 0.5."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import reference, shared
from earlyia.cli.main import main
from earlyia.errors import ConfigError
from earlyia.features import get_extractor
from earlyia.features.early import STREAM_PARAMS
from earlyia.model.artifact import Model
from earlyia.model.recipe import recipe_for
from earlyia.sim.impostors import KINDS, generate, impostor_features


def _per_object(lc):
    for i, oid in enumerate(lc.objects["object_id"]):
        a, b = lc.offsets[i], lc.offsets[i + 1]
        yield oid, lc.mjd[a:b], lc.band[a:b], lc.flux[a:b], lc.flux_err[a:b]


def test_impostors_are_what_they_say():
    lc = generate(40, random_state=3, min_detections=4, max_detections=12)
    again = generate(40, random_state=3, min_detections=4, max_detections=12)
    np.testing.assert_array_equal(lc.flux, again.flux)
    assert not np.array_equal(
        lc.flux, generate(40, random_state=4, min_detections=4, max_detections=12).flux
    )
    kinds = lc.objects["label"].to_numpy()
    assert sorted(set(kinds)) == sorted(KINDS) and (pd.Series(kinds).value_counts() == 40).all()
    chi2 = {k: [] for k in KINDS}
    for (_oid, t, band, f, e), kind in zip(_per_object(lc), kinds, strict=True):
        assert 4 <= len(t) <= 12 and np.all(np.diff(t) > 0) and set(band) <= {0, 1}
        for b in np.unique(band):
            fb, eb, tb = f[band == b], e[band == b], t[band == b]
            mu = np.average(fb, weights=eb**-2)
            chi2[kind].append(np.sum(((fb - mu) / eb) ** 2) / max(len(fb) - 1, 1))
            if kind == "declining" and len(fb) >= 2:
                assert np.polyfit(tb - tb[0], -2.5 * np.log10(fb), 1)[0] > 0  # fading
    assert 0.6 < np.median(chi2["flat"]) < 1.6  # errors right: scatter explained
    assert np.median(chi2["noisy_constant"]) > 5  # errors too small: scatter looks significant
    with pytest.raises(ConfigError):
        generate(1, kinds=("rising",))


def test_impostor_features_are_labelled_negatives():
    df = impostor_features(get_extractor("early").config(), 5, random_state=1)
    assert set(df["label"]) == {f"impostor ({k})" for k in KINDS}
    assert (df["n_detections"] >= 3).all() and (df["n_detections"] <= 20).all()


def test_recipe_follows_the_feature_table():
    assert recipe_for(get_extractor("early").config())[0] == "early"
    assert recipe_for(get_extractor("sigmoid", mode="fink").config())[0] == "fink"
    # another survey than ZTF: the lsst recipe (no ZTF selection); its gate only where the features
    # can feed it
    rainbow, sig_lsst = get_extractor("rainbow").config(), get_extractor("sigmoid_lsst").config()
    assert recipe_for(rainbow, survey="ZTF")[0] == "fink"
    name, rec = recipe_for(rainbow, survey="LSST")
    assert name == "lsst" and rec.gate == "rise" and rec.selection == {"rule": "none"}
    name, rec = recipe_for(sig_lsst, survey="LSST")
    assert name == "lsst" and rec.gate == "none"
    assert (
        recipe_for(sig_lsst, "lsst", survey="LSST")[1].gate == "rise"
    )  # asked for by name: kept (train then says why not)
    assert recipe_for(get_extractor("early").config(), survey="LSST") == (
        "lsst",
        recipe_for(sig_lsst, survey="LSST")[1],
    )
    assert recipe_for(get_extractor("early").config(), survey="ZTF")[0] == "early"
    assert recipe_for(get_extractor("early").config(), "fink")[1].impostors == 0
    with pytest.raises(ConfigError, match="recipe"):
        recipe_for({}, "best")


@pytest.fixture(scope="module")
def early_models(tmp_path_factory):
    """`earlyia train` with the defaults on the shared replay's light curves (fewer trees and
    copies), and a model of the same features from `earlyia features` without impostors or
    calibration."""
    tmp = tmp_path_factory.mktemp("early_default")
    replay = reference("ztf_replay_alerts_with_anchor.parquet")
    labels = shared("ztf_fink_tns_labelled/objects.csv")
    feats = tmp / "f.parquet"
    assert main(["features", str(replay), "--out", str(feats)]) == 0
    default, plain = tmp / "default.eia", tmp / "plain.eia"
    common = ["--labels", str(labels), "--trees", "60"]
    assert (
        main(
            [
                "train",
                str(replay),
                "--out",
                str(default),
                *common,
                "--cv-folds",
                "3",
                "--augment-copies",
                "1",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                str(feats),
                "--out",
                str(plain),
                *common,
                "--cv-folds",
                "0",
                "--impostors",
                "0",
                "--calibrate",
                "none",
            ]
        )
        == 0
    )
    return tmp, Model.load(default), Model.load(plain), replay


def _score(tmp, model, data, name, code=0):
    """Write ``data`` (light curves or a Fink-format frame) and the model, run `earlyia score`,
    return SCORES."""
    path, model_path, out = (
        tmp / f"{name}.parquet",
        tmp / f"{name}.eia",
        tmp / f"{name}_scores.parquet",
    )
    data.to_parquet(path)
    model.save(model_path)
    assert main(["score", str(path), "--model", str(model_path), "--out", str(out)]) == code
    return pd.read_parquet(out)


def test_default_model_card(early_models):
    _, model, plain, _ = early_models
    card = model.card
    assert card["extractor"]["extractor"] == "early" and card["lineage"]["recipe"] == "early"
    assert {k: card["extractor"]["params"][k] for k in STREAM_PARAMS} == STREAM_PARAMS
    assert (
        card["classifier"]["params"]["min_samples_leaf"] == 5
        and card["classifier"]["params"]["class_weight"] == "balanced"
    )
    assert (
        card["classifier"]["object_weights"] and card["lineage"]["impostors"]["n_per_kind"] == 100
    )
    assert card["selection"] == {"min_points_per_band": 0, "require_rising": False}
    assert [o["max_detections"] for o in card["operating_points"]] == [10, 20]
    assert [c["max_detections"] for c in card["operating_curves"]] == [10, 20]
    # the card records the augmentation, the calibration by evidence and the evidence the model
    # flags from
    aug = card["augmentation"]
    assert (
        aug["copies"] == 1
        and aug["seed"] == 42
        and {s["name"] for s in aug["steps"]} >= {"drop_limits", "shift_magnitude"}
    )
    assert (
        card["calibration"]["method"] == "evidence" and card["evidence"]["feature"] == "early_n_det"
    )
    assert 0.3 < card["evidence"]["prevalence"] < 0.5 and card["evidence"]["judged_from"] >= 2
    # the training ids are the original labelled objects, not their copies or the generated
    # impostors
    ids = set(card["training"]["object_ids"])
    assert len(ids) == card["training"]["n_objects"] and not any(
        i.startswith(("flat_", "declining_")) for i in ids
    )
    assert "impostors" not in plain.card["lineage"] and plain.card["calibration"] is None


def test_flat_fading_and_noisy_constant_never_reach_the_candidate_threshold(early_models):
    """Fresh impostors (a seed training never used) through `earlyia score`: no object reaches
    the card's candidate threshold at any alert, and hardly any 0.5. The same features without
    impostors and calibration flag many: the check can fail."""
    tmp, model, plain, _ = early_models
    lc = generate(60, random_state=2024).replay(1, 20)
    s = _score(tmp, model, lc, "imp_default")
    assert len(s) == len(lc.alerts) and s["passed"].all()
    best = s.groupby("object_id")["score"].max()
    assert best.max() <= model.threshold(20)["threshold"], best.sort_values().tail(3)
    assert (best > 0.5).mean() <= 0.02, best.sort_values().tail(5)
    s_plain = _score(tmp, plain, lc, "imp_plain")
    assert (s_plain.groupby("object_id")["score"].max() > 0.5).mean() > 0.1


def test_simbad_star_matches_score_zero(early_models):
    """Alerts of real SN Ia relabelled as SIMBAD stars/variables: the selection scores them 0 and
    says why."""
    tmp, model, _, replay = early_models
    df = pd.read_parquet(replay)
    labels = pd.read_csv(shared("ztf_fink_tns_labelled/objects.csv")).set_index("objectId")[
        "tns_type"
    ]
    ia = df[df["objectId"].map(labels).eq("SN Ia")]
    ia = ia[ia["objectId"].isin(ia["objectId"].drop_duplicates().iloc[:40])].copy()
    before = _score(tmp, model, ia, "ia_before")
    assert (
        before["score"] > 0.5
    ).any()  # these light curves do score high as extragalactic transients
    types = np.array(["RRLyr", "Star", "EB*", "CV*", "Mira"], dtype=object)
    ia["cdsxmatch"] = types[np.arange(len(ia)) % len(types)]
    after = _score(tmp, model, ia, "ia_star", code=1)  # exit 1: nothing could be scored
    assert (after["score"] == 0).all() and after["reason"].str.contains("SIMBAD").all()


#: SIMBAD types these classes carry in real Fink alerts (seen in the shared alert pool's cdsxmatch)
SIMBAD_OF = {
    "CV": ("CataclyV*", "CataclyV*_Candidate"),
    "AGN": ("AGN", "QSO", "AGN_Candidate"),
    "Varstar": ("RRLyrae", "EclBin", "LongPeriodV*", "Mira", "delSctV*", "RSCVnV*"),
}


def test_real_variables_with_their_simbad_match_score_zero(early_models):
    """The shared non-Ia classes CV, AGN and Varstar, with the SIMBAD types such objects carry in
    real alerts (the replay has none): every alert scores 0 with the SIMBAD reason, where without
    them they are scored."""
    tmp, model, _, replay = early_models
    df = pd.read_parquet(replay)
    labels = pd.read_csv(shared("ztf_fink_tns_labelled/objects.csv")).set_index("objectId")[
        "tns_type"
    ]
    var = df[df["objectId"].map(labels).isin(list(SIMBAD_OF))].copy()
    assert set(var["objectId"].map(labels)) == set(SIMBAD_OF) and var["objectId"].nunique() > 50
    before = _score(tmp, model, var, "var_before")
    assert (
        before["passed"].mean() > 0.9
    )  # without SIMBAD information they are scored like any transient
    k = var.groupby("objectId").ngroup().to_numpy()
    var["cdsxmatch"] = [
        SIMBAD_OF[labels[o]][i % len(SIMBAD_OF[labels[o]])]
        for o, i in zip(var["objectId"], k, strict=True)
    ]
    after = _score(tmp, model, var, "var_simbad", code=1)  # exit 1: nothing could be scored
    assert (
        len(after) == len(var)
        and (after["score"] == 0).all()
        and after["reason"].str.contains("SIMBAD").all()
    )


def test_candidates_use_the_card_threshold_at_the_streams_prevalence(early_models):
    """`earlyia candidates` applies the card's purity >= 0.8 threshold for N <= 20 by default: at
    the training prevalence it is the card's fixed number; estimated from a stream of fewer SN
    Ia, it is stricter."""
    tmp, model, _, replay = early_models
    df = pd.read_parquet(replay)
    sub = df[df["objectId"].isin(df["objectId"].drop_duplicates().iloc[:150])].copy()
    sub["objectId"] = (
        "NEW" + sub["objectId"]
    )  # not the model's training objects, which are never reported
    s = _score(tmp, model, sub, "cand")
    thr = max(model.card["operating_points"], key=lambda o: o["max_detections"])["threshold"]
    assert (s["score"] > 0.5).sum() > (s["score"] > thr).sum() > 0  # the two rules differ here
    loose = ["--min-snn", "none", "--min-drb", "none", "--min-classtar", "none"]
    out = {}
    for name, value in (
        ("card", ["--prevalence", "training"]),
        ("number", ["--min-score", repr(thr)]),
        ("half", ["--min-score", "0.5"]),
        ("metadata", ["--prevalence", "training"]),
    ):
        model_opt = [] if name == "metadata" else ["--model", str(tmp / "cand.eia")]
        assert (
            main(
                [
                    "candidates",
                    str(tmp / "cand_scores.parquet"),
                    *model_opt,
                    "--out",
                    str(tmp / name),
                    *value,
                    *loose,
                    "--record",
                    str(tmp / f"{name}.sqlite"),
                ]
            )
            == 0
        )
        out[name] = pd.read_csv(tmp / name / "candidates.csv")
    pd.testing.assert_frame_equal(
        out["card"].drop(columns="probability", errors="ignore"), out["number"]
    )
    pd.testing.assert_frame_equal(
        out["metadata"], out["card"]
    )  # the card summary in the scores' metadata is enough
    assert len(out["half"]) > len(out["card"]) > 0
    # a stream with a tenth of the SN Ia: the estimated prevalence is lower and the threshold
    # stricter
    labels = pd.read_csv(shared("ztf_fink_tns_labelled/objects.csv")).set_index("objectId")[
        "tns_type"
    ]
    is_ia = s["object_id"].str.removeprefix("NEW").map(labels).eq("SN Ia")
    keep_ia = set(s.loc[is_ia, "object_id"].drop_duplicates().iloc[::10])
    thin = s[~is_ia | s["object_id"].isin(keep_ia)]
    meta = pq.read_schema(tmp / "cand_scores.parquet").metadata
    thin_path = tmp / "thin_scores.parquet"
    pq.write_table(
        pa.Table.from_pandas(thin, preserve_index=False).replace_schema_metadata(meta), thin_path
    )
    assert (
        main(
            [
                "candidates",
                str(thin_path),
                "--model",
                str(tmp / "cand.eia"),
                "--out",
                str(tmp / "thin"),
                *loose,
                "--record",
                str(tmp / "thin.sqlite"),
            ]
        )
        == 0
    )
    summary = json.loads((tmp / "thin" / "summary.json").read_text())
    op = summary["operating_point"]
    assert (
        op["prevalence"] < 0.8 * model.card["evidence"]["prevalence"]
        and "estimated" in op["prevalence_source"]
    )
    assert op["threshold"] > thr and summary["rule"]["min_score"] == op["threshold"]
