"""The default early model holds on what the stream delivers: features blind to what must not
matter, the stress report, calibrated scores on alerts that hold too little, and candidate
thresholds that follow the prevalence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import reference, shared
from earlyia import augment, stress
from earlyia.cli.main import main
from earlyia.features import get_extractor
from earlyia.features.early import STREAM_PARAMS
from earlyia.io import read
from earlyia.labels import TypeMap, read_labels
from earlyia.model.training import train_recipe


@pytest.fixture(scope="module")
def replay_lc():
    lc = read([reference("ztf_replay_alerts_with_anchor.parquet")])
    lc.objects["label"] = lc.objects["object_id"].map(
        read_labels(shared("ztf_fink_tns_labelled/objects.csv"))
    )
    return lc


def _features(ext, lc):
    seg = augment.replay_segments(lc, 1, 20)
    X, ok, why = ext.extract_lc(seg.lc, seg.starts, seg.ends)
    return X, ok, why, seg


def test_stream_features_ignore_limits_brightness_and_a_negative_residual(replay_lc):
    lc = replay_lc.take(np.arange(150))
    ext = get_extractor("early", **STREAM_PARAMS)
    X, _, _, _ = _features(ext, lc)
    X2, _, _, _ = _features(ext, augment.drop_limits(lc, None))
    np.testing.assert_array_equal(X, X2)
    # the same objects 1 mag closer (flux and errors scaled): the same features, to the fits'
    # tolerance, except the sigmoid's parameter uncertainties, which flip between "unconstrained"
    # and "undefined" where a fit is degenerate (a covariance determinant at machine precision)
    closer = augment.shift_magnitude(lc, np.random.default_rng(0), delta=-1.0)
    X3, _, _, _ = _features(ext, closer)
    cols = [i for i, n in enumerate(ext.names) if not n.startswith(("a_err", "b_err"))]
    np.testing.assert_allclose(X3[:, cols], X[:, cols], rtol=1e-4, atol=1e-6)
    legacy = get_extractor("early")
    assert (
        ~np.isclose(
            _features(legacy, closer)[0], _features(legacy, lc)[0], rtol=1e-6, atol=1e-6
        ).all(axis=1)
    ).mean() > 0.9
    L1, _, _, _ = _features(legacy, lc)
    L2, _, _, _ = _features(legacy, augment.drop_limits(lc, None))
    assert not np.array_equal(L1, L2)  # the check can fail: the earlier features do see the limits


def test_a_negative_detection_changes_only_the_negative_fraction(replay_lc):
    lc = augment.drop_limits(replay_lc.take(np.arange(60)), None)
    ext = get_extractor("early", **STREAM_PARAMS)
    with_neg = augment.negative_difference(lc, np.random.default_rng(1))

    # compare each object's last alert: same positive detections, one extra negative one
    def last(lcx):
        return np.array([lcx.offsets[i + 1] for i in range(lcx.n_objects)]), np.asarray(
            lcx.offsets[:-1]
        )

    e1, s1 = last(lc)
    e2, s2 = last(with_neg)
    X1, _, _ = ext.extract_lc(lc, s1, e1)
    X2, _, _ = ext.extract_lc(with_neg, s2, e2)
    j = ext.names.index("early_frac_negative")
    others = [i for i in range(len(ext.names)) if i != j]
    np.testing.assert_allclose(X2[:, others], X1[:, others], rtol=1e-9, atol=1e-9)
    assert (X2[:, j] > 0).all() and (X1[:, j] == 0).all()
    neg_only = augment.flip_sign(lc, None)
    _, ok, why = ext.extract_lc(neg_only)
    assert not ok.any() and set(why) == {"no positive detection"}


@pytest.fixture(scope="module")
def small_models(replay_lc):
    """The default recipe and the earlier features' recipe, trained on 700 objects (fewer trees
    and copies)."""
    rng = np.random.default_rng(0)
    idx = rng.permutation(replay_lc.n_objects)
    train, test = replay_lc.take(np.sort(idx[:700])), replay_lc.take(np.sort(idx[700:1000]))
    stream_model = train_recipe(
        train, "early", overrides={"n_estimators": 60, "augment_copies": 1, "cv_folds": 3}, n_jobs=2
    )
    feats = get_extractor("early").transform(train.replay(3, 20), per="alert")
    feats["label"] = feats["object_id"].map(
        dict(zip(train.objects["object_id"], train.objects["label"], strict=True))
    )
    legacy = train_recipe(
        feats,
        "early",
        meta={"extractor": get_extractor("early").config(), "survey": "ZTF"},
        overrides={"n_estimators": 60, "calibrate": "none", "cv_folds": 0},
        n_jobs=2,
    )
    return stream_model, legacy, test


def test_stress_report_the_default_model_is_blind_to_limits_and_flags_no_negative_only_curve(
    small_models,
):
    model, legacy, test = small_models
    cases = [
        stress.case_named(n)
        for n in ("as given", "no upper limits", "negative differences only", "g band only")
    ]
    table = stress.stress_test(
        test,
        [stress.model_scorer(model, "default"), stress.model_scorer(legacy, "earlier")],
        cases=cases,
    )
    t = table.set_index(["case", "scorer", "threshold", "max_detections"])
    for thr in ("0.5", "own"):
        a, b = (
            t.loc[("as given", "default", thr, 20)],
            t.loc[("no upper limits", "default", thr, 20)],
        )
        assert a["efficiency"] == b["efficiency"] and a["purity"] == pytest.approx(
            b["purity"], nan_ok=True
        )
    assert t.loc[("negative differences only", "default", "0.5", 20), "flagged_fraction"] == 0
    e_leg = t.loc[("as given", "earlier", "0.5", 20), "efficiency"]
    e_leg_nolim = t.loc[("no upper limits", "earlier", "0.5", 20), "efficiency"]
    assert (
        e_leg_nolim < 0.5 * e_leg
    )  # the earlier features collapse without limits: the comparison can fail
    md = stress.to_markdown(table)
    assert "| no upper limits |" in md and "default @ own threshold" in md


def test_alerts_that_hold_too_little_stay_below_the_threshold_and_say_so(small_models, tmp_path):
    model, _, test = small_models
    judged = model.card["evidence"]["judged_from"]
    assert judged is not None and judged >= 2
    alerts = test.replay(1, 3)
    from earlyia.score.pipeline import score_lightcurves

    s = score_lightcurves(alerts, model, per="alert")
    thin = s["n_detections"] < judged
    assert thin.any() and (s.loc[thin, "score"] <= model.threshold(20)["threshold"]).all()
    assert s.loc[thin & s["passed"], "reason"].str.startswith("too little to judge").all()
    one = s[s["n_detections"] == 1]
    prev = model.card["evidence"]["prevalence"]
    assert (
        one["score"] - prev
    ).abs().max() < 0.15  # one detection: close to the prevalence, calibrated


def test_threshold_moves_with_the_prevalence(small_models):
    model, _, _ = small_models
    at_training = model.threshold(20, 0.8)
    low = model.threshold(20, 0.8, prevalence=0.1)
    assert low["threshold"] > at_training["threshold"] or np.isnan(low["threshold"])
    assert model.threshold(20, 0.8, prevalence=model.prevalence)["threshold"] == pytest.approx(
        at_training["threshold"], rel=0.02
    )
    assert TypeMap().encode(["SN Ia"])[0] == 1


def test_cli_stress_report_writes_table_and_png(small_models, tmp_path):
    model, _, test = small_models
    path = tmp_path / "m.eia"
    model.save(path)
    lc_path = tmp_path / "held_out.parquet"
    test.take(np.arange(80)).to_parquet(lc_path)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"objectId": test.objects["object_id"], "tns_type": test.objects["label"]}).to_csv(
        labels, index=False
    )
    out = tmp_path / "stress"
    assert (
        main(
            [
                "evaluate-early",
                str(lc_path),
                "--labels",
                str(labels),
                "--model",
                str(path),
                "--stress",
                "--out",
                str(out),
                "--cases",
                "as given",
                "no upper limits",
            ]
        )
        == 0
    )
    table = pd.read_csv(out / "stress.csv")
    assert (
        set(table["case"]) == {"as given", "no upper limits"}
        and (out / "stress.png").stat().st_size > 1000
    )
    assert "as given" in (out / "stress.md").read_text()
