"""Candidate rule, per-object selection, reported record, calibration and stacking."""

from __future__ import annotations

import csv
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlyia.cli.main import main
from earlyia.errors import InputError, SchemaError
from earlyia.io.spreadsheet import spreadsheet_safe
from earlyia.report.calibration import (
    ScoreCalibrator,
    brier_score,
    calibration_report,
    expected_calibration_error,
)
from earlyia.report.candidates import CandidateRule, ReportedRecord, select_candidates
from earlyia.report.stacking import (
    StackedScorer,
    compare_rule_and_stacking,
    cross_val_stacked,
    object_folds,
)

XM = ("Unknown", "SN", "galaxy")


def _alerts(n: int, seed: int = 0, snn: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "object_id": [f"ZTF{i % max(1, n // 3):03d}" for i in range(n)],
            "alert_id": [f"a{i}" for i in range(n)],
            "mjd": 59000 + rng.uniform(0, 30, n),
            "score": rng.uniform(0, 1, n),
            "passed": rng.uniform(size=n) > 0.1,
            "reason": "",
            "ra": rng.uniform(0, 360, n),
            "dec": rng.uniform(-30, 60, n),
            "ndethist": rng.integers(1, 30, n).astype(float),
            "drb": rng.uniform(0, 1, n),
            "classtar": rng.uniform(0, 1, n),
            "cdsxmatch": rng.choice(["Unknown", "SN", "Star", "RRLyr", "galaxy"], n),
            "first_det_mjd": 58990 + rng.uniform(0, 5, n),
            "first_det_mag": rng.uniform(17, 21, n),
            "first_det_band": rng.choice(["g", "r"], n),
            "n_detections": rng.integers(1, 20, n),
        }
    )
    if snn:
        df["snn_snia_vs_nonia"] = rng.uniform(0, 1, n)
        df["snn_sn_vs_all"] = rng.uniform(0, 1, n)
    return df


def _reference_pass(r: dict, rule: CandidateRule, allowed: set[str]) -> bool:
    """The rule written as plain if-statements, one alert at a time."""
    if rule.require_passed and not r["passed"]:
        return False
    if rule.min_score is not None and not r["score"] > rule.min_score:
        return False
    snn = [r.get(c) for c in rule.snn_columns if c in r]
    snn = [v for v in snn if v is not None and not math.isnan(v)]
    if rule.min_snn is not None and snn and not any(v > rule.min_snn for v in snn):
        return False
    if rule.max_ndethist is not None and not r["ndethist"] <= rule.max_ndethist:
        return False
    if rule.min_drb is not None and not r["drb"] > rule.min_drb:
        return False
    if rule.min_classtar is not None and not r["classtar"] > rule.min_classtar:
        return False
    return r["cdsxmatch"] in allowed


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    min_score=st.sampled_from([None, 0.3, 0.5]),
    min_snn=st.sampled_from([None, 0.5]),
    max_nd=st.sampled_from([None, 10, 20]),
    nan_frac=st.floats(0, 0.5),
)
def test_rule_matches_plain_reference(seed, min_score, min_snn, max_nd, nan_frac):
    df = _alerts(60, seed)
    rng = np.random.default_rng(seed + 1)
    for c in ("snn_snia_vs_nonia", "snn_sn_vs_all", "drb"):
        df.loc[rng.uniform(size=len(df)) < nan_frac, c] = np.nan
    rule = CandidateRule(min_score=min_score, min_snn=min_snn, max_ndethist=max_nd, xmatch=XM)
    got = rule.evaluate(df).passed
    want = np.array([_reference_pass(r, rule, set(XM)) for r in df.to_dict("records")])
    np.testing.assert_array_equal(got, want)


def test_failing_alerts_say_which_cut():
    df = _alerts(6)
    df["passed"] = True
    df[["score", "snn_snia_vs_nonia", "snn_sn_vs_all", "ndethist", "drb", "classtar"]] = [
        0.9,
        0.9,
        0.9,
        5,
        0.9,
        0.9,
    ]
    df["cdsxmatch"] = "SN"
    df.loc[0, "score"] = 0.2
    df.loc[1, ["snn_snia_vs_nonia", "snn_sn_vs_all"]] = 0.1
    df.loc[2, "ndethist"] = 50
    df.loc[3, "drb"] = np.nan
    df.loc[4, "cdsxmatch"] = "Star"
    res = CandidateRule(xmatch=XM).evaluate(df)
    assert res.passed.tolist() == [False, False, False, False, False, True]
    assert "score" in res.reason[0] and "snn" in res.reason[1] and "ndethist" in res.reason[2]
    assert "drb" in res.reason[3] and "'Star'" in res.reason[4] and res.reason[5] == ""


def test_without_snn_columns_uses_our_score_and_says_so():
    df = _alerts(30, snn=False)
    with_snn = _alerts(30)
    rule = CandidateRule(xmatch=XM)
    res = rule.evaluate(df)
    assert any("absent" in n for n in res.notes)
    assert not res.snn_used.any()
    # same as the rule with the SNN clause disabled
    np.testing.assert_array_equal(
        res.passed, CandidateRule(min_snn=None, xmatch=XM).evaluate(df).passed
    )
    sel = select_candidates(df, rule)
    assert any("absent" in n for n in sel.notes) and sel.summary()["snn_used"] is False
    assert rule.evaluate(with_snn).snn_used.all()


def test_enabled_cut_without_its_column_is_an_error_naming_it():
    df = _alerts(10).drop(columns=["classtar"])
    with pytest.raises(SchemaError, match="classtar"):
        CandidateRule(xmatch=XM).evaluate(df)
    CandidateRule(min_classtar=None, xmatch=XM).evaluate(df)  # disabled: fine
    # a column the input cannot carry (unknown for every alert): the cut is skipped and says so,
    # never an empty result
    unknown = _alerts(10).assign(drb=np.nan)
    res = CandidateRule(xmatch=XM).evaluate(unknown)
    known = CandidateRule(xmatch=XM, min_drb=None).evaluate(unknown)
    assert res.passed.any() and (res.passed == known.passed).all()
    assert any("drb is unknown for every alert" in n and "skipped" in n for n in res.notes)
    # partly known: a missing value fails the cut, as in Fink (NaN compares false)
    partly = _alerts(10).assign(drb=[np.nan] + [0.9] * 9)
    assert not CandidateRule(xmatch=XM).evaluate(partly).passed[0]


def test_no_simbad_information_counts_as_unknown_and_says_so():
    df = _alerts(10).assign(cdsxmatch="")
    res = CandidateRule().evaluate(df)
    assert res.passed.any() and any("no SIMBAD cross-match" in n for n in res.notes)
    stars = _alerts(10).assign(cdsxmatch=["RRLyr"] * 5 + [""] * 5)
    res = CandidateRule().evaluate(stars)
    assert not res.passed[:5].any() and not any("no SIMBAD" in n for n in res.notes)


def test_one_candidate_per_object_from_its_latest_qualifying_alert_without_mixing():
    good = {
        "passed": True,
        "score": 0.9,
        "snn_snia_vs_nonia": 0.9,
        "snn_sn_vs_all": 0.2,
        "ndethist": 5.0,
        "drb": 0.99,
        "classtar": 0.9,
        "cdsxmatch": "SN",
        "first_det_band": "g",
        "n_detections": 3,
    }
    rows = [
        {
            **good,
            "object_id": "A",
            "alert_id": "A1",
            "mjd": 10.0,
            "ra": 1.0,
            "dec": 1.0,
            "first_det_mjd": 9.0,
            "first_det_mag": 19.0,
        },
        {
            **good,
            "object_id": "A",
            "alert_id": "A2",
            "mjd": 12.0,
            "ra": 2.0,
            "dec": 2.0,
            "first_det_mjd": 9.5,
            "first_det_mag": 18.0,
            "score": 0.6,
        },
        # a later alert of A that fails: never used, and its fields never leak in
        {
            **good,
            "object_id": "A",
            "alert_id": "A3",
            "mjd": 15.0,
            "ra": 3.0,
            "dec": 3.0,
            "first_det_mjd": 1.0,
            "first_det_mag": 12.0,
            "drb": 0.1,
        },
        {
            **good,
            "object_id": "B",
            "alert_id": "B1",
            "mjd": 11.0,
            "ra": 5.0,
            "dec": 5.0,
            "first_det_mjd": 10.0,
            "first_det_mag": 20.0,
        },
        {
            **good,
            "object_id": "C",
            "alert_id": "C1",
            "mjd": 11.0,
            "ra": 6.0,
            "dec": 6.0,
            "first_det_mjd": 10.0,
            "first_det_mag": 20.0,
            "score": 0.4,
        },
    ]
    df = pd.DataFrame(rows).sample(frac=1, random_state=3)
    sel = select_candidates(df, CandidateRule(xmatch=XM))
    c = sel.candidates.set_index("object_id")
    assert sorted(c.index) == ["A", "B"]
    src = pd.DataFrame(rows).set_index("alert_id")
    a = c.loc["A"]
    assert a["alert_id"] == "A2"
    for col in ("mjd", "ra", "dec", "first_det_mjd", "first_det_mag", "score"):
        assert a[col] == src.loc["A2", col], col
    assert sel.n_alerts_passing == 3


def test_prohibited_and_already_reported_objects_are_excluded(tmp_path):
    df = _alerts(90, seed=4)
    rule = CandidateRule(
        min_score=0.0,
        min_snn=None,
        max_ndethist=None,
        min_drb=None,
        min_classtar=None,
        xmatch=(),
        require_passed=False,
    )
    everyone = select_candidates(df, rule).candidates["object_id"].tolist()
    assert len(everyone) == df["object_id"].nunique()
    record = ReportedRecord(tmp_path / "rec" / "reported.sqlite")
    record.add([{"object_id": everyone[0], "alert_id": "x"}], destination="test")
    record.add([{"object_id": everyone[0], "alert_id": "y"}], destination="test")  # idempotent
    sel = select_candidates(df, rule, prohibited=[everyone[1]], record=ReportedRecord(record.path))
    got = set(sel.candidates["object_id"])
    assert got == set(everyone) - {everyone[0], everyone[1]}
    assert sel.excluded_prohibited == [everyone[1]] and sel.excluded_reported == [everyone[0]]
    assert len(record.table()) == 1


def test_default_rule_uses_the_shared_extragalactic_list():
    select = pytest.importorskip("earlyia.select")
    allowed = CandidateRule().allowed_xmatch()
    assert allowed == frozenset(select.EXTRAGALACTIC_TYPES)
    assert "Star" not in allowed


def test_candidates_csv_cannot_run_formulas(tmp_path):
    """Alert text in candidates.csv (object ids, SIMBAD types, labels) never runs as a
    spreadsheet formula."""
    df = _alerts(3, seed=1).assign(
        object_id=['=HYPERLINK("http://evil.example","click")', "ZTF2", "ZTF3"],
        passed=True,
        score=0.9,
        ndethist=5.0,
        drb=0.9,
        classtar=0.9,
        dec=[-12.5, 3.0, 4.0],
        cdsxmatch=["SN", "@SUM(1+1)*cmd|' /C calc'!A0", "SN"],
        label=["+1", "-2", "\tx"],
    )
    scores = tmp_path / "scores.parquet"
    df.to_parquet(scores)
    code = main(
        [
            "candidates",
            str(scores),
            "--out",
            str(tmp_path / "o"),
            "--record",
            str(tmp_path / "r.sqlite"),
            "--min-score",
            "0.5",
            "--min-snn",
            "none",
            "--any-xmatch",
        ]
    )
    assert code == 0
    with open(tmp_path / "o" / "candidates.csv", newline="") as fh:
        body = list(csv.reader(fh))[1:]
    assert len(body) == 3
    for row in body:
        for cell in row:
            if cell and cell[0] in "=+-@\t\r":
                float(cell)  # only numbers (a negative declination) may start so
    cells = {c for row in body for c in row}
    assert (
        "'" + '=HYPERLINK("http://evil.example","click")' in cells
        and "'+1" in cells
        and "'\tx" in cells
        and "-12.5" in cells
    )
    assert np.allclose(
        sorted(pd.read_csv(tmp_path / "o" / "candidates.csv")["dec"]), [-12.5, 3.0, 4.0]
    )
    safe = spreadsheet_safe(
        pd.DataFrame({"a": ["=1", "ok", "", "-x", "\r1"], "n": [-1, 2, 3, 4, 5]})
    )
    assert safe["a"].tolist() == ["'=1", "ok", "", "'-x", "'\r1"] and safe["n"].tolist() == [
        -1,
        2,
        3,
        4,
        5,
    ]


# ----------------------------------------------------------------------------------------------
# calibration
def _slow_ece(score, y, n_bins=10):
    total = 0.0
    edges = np.linspace(0, 1, n_bins + 1)  # the reliability table's bin edges
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        idx = [i for i, s in enumerate(score) if (lo <= s < hi) or (b == n_bins - 1 and s == 1.0)]
        if idx:
            total += len(idx) * abs(np.mean([y[i] for i in idx]) - np.mean([score[i] for i in idx]))
    return total / len(score)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), n=st.integers(5, 200))
def test_ece_and_brier_match_plain_formulas(seed, n):
    rng = np.random.default_rng(seed)
    s = rng.uniform(0, 1, n)
    s[: n // 5] = np.round(s[: n // 5], 1)  # values on bin edges
    y = rng.uniform(size=n) < s
    assert expected_calibration_error(s, y) == pytest.approx(_slow_ece(s, y), abs=1e-12)
    assert brier_score(s, y) == pytest.approx(
        sum((a - b) ** 2 for a, b in zip(s, y, strict=True)) / n
    )


def test_calibrator_repairs_a_miscalibrated_score_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    p_true = rng.uniform(0, 1, 6000)
    y = rng.uniform(size=p_true.size) < p_true
    raw = p_true**3  # overconfident against the negative class
    fit, test = slice(0, 3000), slice(3000, None)
    for method in ("isotonic", "sigmoid"):
        cal = ScoreCalibrator(method).fit(raw[fit], y[fit])
        out = cal.transform(raw[test])
        assert expected_calibration_error(out, y[test]) < 0.5 * expected_calibration_error(
            raw[test], y[test]
        )
        assert np.all(np.diff(out[np.argsort(raw[test])]) >= -1e-12)  # monotone
        cal.save(tmp_path / f"{method}.json")
        np.testing.assert_array_equal(
            ScoreCalibrator.load(tmp_path / f"{method}.json").transform(raw[test]), out
        )
    assert np.isnan(cal.transform(np.array([np.nan]))[0])
    with pytest.raises(InputError):
        ScoreCalibrator().fit(raw, np.ones(raw.size, bool))
    rep = calibration_report(raw, y)
    assert rep.curve["count"].sum() == raw.size and rep.n_positive == int(y.sum())


# ----------------------------------------------------------------------------------------------
# stacking
def _stack_data(n_obj=300, seed=0):
    rng = np.random.default_rng(seed)
    obj = np.repeat([f"o{i}" for i in range(n_obj)], 3)
    y_obj = rng.uniform(size=n_obj) < 0.4
    y = np.repeat(y_obj, 3)
    n = len(obj)
    informative = 1 / (1 + np.exp(-(3.0 * (2 * y - 1) + rng.normal(0, 1.5, n))))
    noise = rng.uniform(0, 1, n)
    df = pd.DataFrame(
        {
            "object_id": obj,
            "score": noise,
            "snn_snia_vs_nonia": informative,
            "ndethist": np.tile([3.0, 6.0, 12.0], n_obj),
            "drb": 0.9,
            "classtar": 0.9,
            "cdsxmatch": "SN",
        }
    )
    df.loc[rng.uniform(size=n) < 0.2, "snn_snia_vs_nonia"] = np.nan
    return df, y


def test_object_folds_keep_objects_together_and_stratify():
    df, y = _stack_data()
    folds = object_folds(df["object_id"], y, 5, random_state=1)
    assert (pd.Series(folds).groupby(df["object_id"].to_numpy()).nunique() == 1).all()
    pos_per_fold = pd.Series(y).groupby(folds).sum() / 3
    assert pos_per_fold.max() - pos_per_fold.min() <= 1
    np.testing.assert_array_equal(folds, object_folds(df["object_id"], y, 5, random_state=1))


def test_stacking_learns_the_informative_score_and_is_out_of_fold():
    df, y = _stack_data()
    m = StackedScorer().fit(df, y)
    coef = m.coefficients()
    assert abs(coef["logit(snn_snia_vs_nonia)"]) > 5 * abs(coef["logit(score)"])
    assert "snn_snia_vs_nonia missing" in coef and "snn_sn_vs_all" not in m.used_columns_
    folds = object_folds(df["object_id"], y, 5, random_state=2)
    oof = cross_val_stacked(df, y, random_state=2)
    np.testing.assert_array_equal(oof, cross_val_stacked(df, y, folds=folds))
    # changing the labels of one fold must not change that fold's out-of-fold predictions
    y2 = y.copy()
    y2[folds == 0] = ~y2[folds == 0]
    oof2 = cross_val_stacked(df, y2, folds=folds)
    np.testing.assert_array_equal(oof[folds == 0], oof2[folds == 0])
    assert not np.array_equal(oof[folds == 1], oof2[folds == 1])


def test_compare_rule_and_stacking_counts_agree_with_direct_computation():
    df, y = _stack_data()
    rule = CandidateRule(xmatch=XM, require_passed=False)
    comp, oof = compare_rule_and_stacking(df, y, rule=rule, max_detections=(5,))
    t = comp.table.set_index(["method", "unit"])
    fixed = rule.evaluate(df).passed
    assert t.loc[("fixed rule", "alert"), "tp"] == int((fixed & y).sum())
    flagged = oof > 0.5
    obj_flag = (
        pd.Series(flagged & (df["ndethist"] <= 5).to_numpy())
        .groupby(df["object_id"].to_numpy())
        .max()
    )
    obj_y = pd.Series(y).groupby(df["object_id"].to_numpy()).max()
    assert t.loc[("stacked > 0.5", "object, <= 5 det."), "tp"] == int((obj_flag & obj_y).sum())
    # the informative score, learned, beats a rule that also requires the noise score > 0.5
    assert (
        t.loc[("stacked > 0.5", "alert"), "efficiency"]
        > t.loc[("fixed rule", "alert"), "efficiency"]
    )


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 80))
def test_selection_matches_a_plain_per_object_reference(seed, n):
    df = _alerts(n, seed)
    df["mjd"] = np.round(df["mjd"], 0)  # ties on time, broken by ndethist then alert id
    rule = CandidateRule(xmatch=XM, min_snn=0.3, min_drb=0.2, min_classtar=0.2)
    got = select_candidates(df, rule).candidates.set_index("object_id")
    ok = rule.evaluate(df).passed
    want = {}
    for r, passed in zip(df.to_dict("records"), ok, strict=True):
        if passed:
            key = (r["mjd"], r["ndethist"], r["alert_id"])
            if r["object_id"] not in want or key > want[r["object_id"]][0]:
                want[r["object_id"]] = (key, r)
    assert sorted(got.index) == sorted(want)
    for oid, (_, r) in want.items():
        row = got.loc[oid]
        for col in ("alert_id", "mjd", "score", "ra", "dec", "first_det_mag", "drb"):
            assert row[col] == r[col], (oid, col)


def test_calibration_command_writes_a_usable_map(tmp_path, capsys):
    from earlyia.cli.main import main

    rng = np.random.default_rng(5)
    ids = [f"o{i}" for i in range(400)]
    types = rng.choice(["SN Ia", "SN II"], 400)
    p = np.where(types == "SN Ia", 0.7, 0.3)
    score = np.clip(p**2 + rng.normal(0, 0.05, 400), 0, 1)
    pd.DataFrame({"object_id": ids, "score": score}).to_parquet(tmp_path / "s.parquet")
    pd.DataFrame({"objectId": ids, "tns_type": types}).to_csv(tmp_path / "labels.csv", index=False)
    argv = [
        "calibrate",
        str(tmp_path / "s.parquet"),
        "--labels",
        str(tmp_path / "labels.csv"),
        "--out",
        str(tmp_path / "c.json"),
    ]
    assert main(argv) == 0
    cal = ScoreCalibrator.load(tmp_path / "c.json")
    out = cal.transform(score)
    assert expected_calibration_error(out, types == "SN Ia") < expected_calibration_error(
        score, types == "SN Ia"
    )
    assert "Brier" in capsys.readouterr().out
    assert (
        main(
            [
                "calibrate",
                str(tmp_path / "s.parquet"),
                "--labels",
                str(tmp_path / "labels.csv"),
                "--score-column",
                "nope",
                "--out",
                str(tmp_path / "d.json"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "d.json").exists()
