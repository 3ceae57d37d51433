"""Calibration by evidence, prevalence moves and operating curves, against slow obviously-correct
references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.isotonic import IsotonicRegression

from earlyia.errors import InputError, ModelError
from earlyia.model.calibration import (
    EvidenceCalibration,
    fit_evidence_calibration,
    pav,
    platt_knots,
    shrunk_isotonic,
)
from earlyia.model.operating import OperatingCurve, adjust_prevalence, estimate_prevalence


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1000), st.integers(0, 1), st.floats(0.1, 3.0)),
        min_size=1,
        max_size=60,
        unique_by=lambda d: d[0],
    )
)
def test_pav_equals_scikit_learn_isotonic_regression(data):
    # distinct scores on a grid (shrunk_isotonic pools equal scores before calling pav)
    p = np.array([d[0] for d in data]) / 1000.0
    y = np.array([d[1] for d in data], float)
    w = np.array([d[2] for d in data])
    order = np.argsort(p, kind="mergesort")
    vals, _wts, ends = pav(y[order], w[order])
    ours = np.repeat(vals, np.diff(np.concatenate([[0], ends])))
    ref = IsotonicRegression().fit(p[order], y[order], sample_weight=w[order]).predict(p[order])
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    assert np.all(np.diff(vals) > 0)


def test_shrunk_isotonic_without_pseudo_objects_is_isotonic_and_shrinks_small_top_blocks():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 400)
    y = (rng.uniform(0, 1, 400) < p).astype(float)
    x, v = shrunk_isotonic(p, y, np.ones(400), 0.0)
    ref = IsotonicRegression(out_of_bounds="clip").fit(p, y)
    np.testing.assert_allclose(np.interp(p, x, v), ref.predict(p), atol=1e-9)
    # three positives alone at the top: pure isotonic says 1.0, shrunk says much less
    p2 = np.r_[rng.uniform(0, 0.5, 200), [0.97, 0.98, 0.99]]
    y2 = np.r_[(rng.uniform(0, 1, 200) < 0.3).astype(float), [1, 1, 1]]
    _, raw = shrunk_isotonic(p2, y2, np.ones(len(p2)), 0.0)
    _, shrunk = shrunk_isotonic(p2, y2, np.ones(len(p2)), 20.0)
    assert raw.max() == 1.0 and shrunk.max() < 0.6
    assert np.all(np.diff(shrunk) >= -1e-12)


def test_platt_knots_are_monotone_flat_when_uninformative_and_stay_in_range():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.2, 0.8, 500)
    y = (rng.uniform(0, 1, 500) < 0.4).astype(float)  # labels unrelated to p
    x, v = platt_knots(p, y, np.ones(500), 1.0)
    assert x.min() == pytest.approx(p.min()) and x.max() == pytest.approx(p.max())
    assert np.all(np.diff(v) >= 0) and np.ptp(v) < 0.15 and abs(np.mean(v) - y.mean()) < 0.05
    y2 = (rng.uniform(0, 1, 500) < p).astype(float)  # calibrated already
    x2, v2 = platt_knots(p, y2, np.ones(500), 1.0)
    np.testing.assert_allclose(np.interp([0.3, 0.5, 0.7], x2, v2), [0.3, 0.5, 0.7], atol=0.08)


def test_evidence_calibration_per_stratum_and_its_arrays():
    rng = np.random.default_rng(2)
    n = 4000
    ev = rng.integers(1, 20, n)
    y = rng.uniform(0, 1, n) < 0.4
    # raw scores: noise at 1-2 detections, informative from 5 on
    info = np.clip((ev - 2) / 10, 0, 1)
    p = np.clip(0.5 + info * (y - 0.5) * 0.8 + rng.normal(0, 0.2, n), 0.001, 0.999)
    groups = np.arange(n) // 3
    cal = fit_evidence_calibration(p, y, ev, feature="early_n_det", groups=groups)
    out = cal.apply(p, ev)
    assert (
        np.ptp(out[ev == 1]) < 0.1 and abs(out[ev == 1].mean() - 0.4) < 0.05
    )  # one detection: the prevalence
    assert out[(ev >= 15) & y].mean() > 0.8 and out[(ev >= 15) & ~y].mean() < 0.2
    again = EvidenceCalibration.from_arrays(cal.to_arrays())
    np.testing.assert_array_equal(again.apply(p, ev), out)
    assert cal.stratum_max()[0] < 0.5 < cal.stratum_max()[-1]
    bad = cal.to_arrays() | {"y": np.full_like(cal.to_arrays()["y"], 7.5)}
    with pytest.raises(ModelError, match="outside"):
        EvidenceCalibration.from_arrays(bad)


@settings(max_examples=50, deadline=None)
@given(
    st.floats(0.02, 0.98), st.floats(0.02, 0.98), st.lists(st.floats(0, 1), min_size=1, max_size=30)
)
def test_prevalence_moves_are_bayes_rule_and_invertible(trained, target, ps):
    p = np.array(ps)
    moved = adjust_prevalence(p, trained, target)
    odds = lambda q: q / (1 - q)  # noqa: E731
    inner = (p > 1e-9) & (p < 1 - 1e-9)
    np.testing.assert_allclose(
        odds(moved[inner]), odds(p[inner]) * odds(target) / odds(trained), rtol=1e-6
    )
    np.testing.assert_allclose(adjust_prevalence(moved, target, trained), p, atol=1e-9)


def test_em_recovers_the_prevalence_of_a_resampled_stream():
    rng = np.random.default_rng(3)
    n = 20000
    y = rng.uniform(0, 1, n) < 0.4
    x = rng.normal(np.where(y, 1.0, -1.0), 1.0)  # one Gaussian feature per class
    post = (
        0.4
        * np.exp(-((x - 1) ** 2) / 2)
        / (0.4 * np.exp(-((x - 1) ** 2) / 2) + 0.6 * np.exp(-((x + 1) ** 2) / 2))
    )
    # a stream with 10 % positives: keep every negative, a sixth of the positives
    keep = ~y | (rng.uniform(0, 1, n) < 1 / 6)
    truth = y[keep].mean()
    est, it = estimate_prevalence(post[keep], 0.4)
    assert abs(est - truth) < 0.02 and it < 1000
    assert estimate_prevalence(post, 0.4)[0] == pytest.approx(y.mean(), abs=0.02)
    with pytest.raises(InputError):
        estimate_prevalence(np.array([]), 0.4)
    with pytest.raises(InputError):
        adjust_prevalence(post, 0.4, 1.0)


def _brute_threshold(best, yy, purity, prevalence, min_flagged):
    """Every candidate threshold checked directly: the lowest one with purity >= target for every
    stricter threshold flagging at least ``min_flagged`` objects, purity computed from counts at
    the curve's prevalence."""
    n_pos, n_neg = yy.sum(), (~yy).sum()
    cands = np.sort(np.unique(best))[::-1]
    chosen = None
    for s in cands:
        t = np.nextafter(s, -np.inf)
        f = best > t
        tpr, fpr = (f & yy).sum() / n_pos, (f & ~yy).sum() / n_neg
        pur = prevalence * tpr / (prevalence * tpr + (1 - prevalence) * fpr)
        if f.sum() < min_flagged:
            if pur >= purity:
                chosen = (t, tpr)
            continue
        if pur < purity:
            break
        chosen = (t, tpr)
    return chosen


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.6, 0.95), st.sampled_from([None, 0.1, 0.5]))
def test_operating_curve_threshold_equals_brute_force(seed, purity, prevalence):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 200))
    yy = rng.uniform(0, 1, n) < 0.4
    if yy.all() or not yy.any():
        yy[0], yy[-1] = True, False
    best = np.round(np.clip(rng.normal(np.where(yy, 0.7, 0.4), 0.2), 0, 1), 2)
    curve = OperatingCurve.from_object_scores(best, yy, 20)
    got = curve.threshold_for(purity, prevalence)
    ref = _brute_threshold(
        best, yy, purity, curve.prevalence if prevalence is None else prevalence, 10
    )
    if ref is None:
        assert np.isnan(got["threshold"]) and got["efficiency"] == 0.0
    else:
        assert got["threshold"] == pytest.approx(ref[0]) and got["efficiency"] == pytest.approx(
            ref[1]
        )
    again = OperatingCurve.from_card(curve.to_card()).threshold_for(purity, prevalence)
    assert pd.Series(again).equals(pd.Series(got))


def test_a_lower_prevalence_needs_a_stricter_threshold():
    rng = np.random.default_rng(5)
    yy = rng.uniform(0, 1, 3000) < 0.4
    best = np.clip(rng.normal(np.where(yy, 0.75, 0.35), 0.15), 0, 1)
    curve = OperatingCurve.from_object_scores(best, yy, 20)
    t40 = curve.threshold_for(0.8)
    t10 = curve.threshold_for(0.8, 0.1)
    assert t10["threshold"] > t40["threshold"] and t10["efficiency"] < t40["efficiency"]
    frame = pd.DataFrame({"best": best, "y": yy})
    flagged = frame[frame["best"] > t40["threshold"]]
    assert flagged["y"].mean() == pytest.approx(t40["purity"]) and t40["purity"] >= 0.8
