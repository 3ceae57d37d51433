"""SN Ia template-fit features: the compiled grid search against a dense brute-force reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlyia.errors import ConfigError
from earlyia.features import get_extractor
from earlyia.features.template import STRETCHES, IaTemplateFeatures, _template_arrays, load_template
from earlyia.io.table import LightCurves

TMPL, P0, DP = _template_arrays(("g", "r"))


def _model(t, band, t0, s, amp):
    phase = (t - t0) / s
    x = (phase - P0) / DP
    out = np.zeros(len(t))
    for b in (0, 1):
        m = band == b
        out[m] = amp[b] * np.interp(
            x[m], np.arange(TMPL.shape[1]), TMPL[b], left=0.0, right=TMPL[b, -1]
        )
    return out


def _lc(t, band, flux, err):
    phot = pd.DataFrame(
        {
            "object_id": "x",
            "mjd": t,
            "band": np.where(band == 0, "g", "r"),
            "flux": flux,
            "flux_err": err,
        }
    )
    return LightCurves.from_frames(phot, survey="ZTF")


def _brute(t, band, flux, err, sys_floor=0.03):
    """Dense search (0.02-day steps at every stretch of the grid) with the same model: the
    smallest chi2."""
    w = 1.0 / (err**2 + (sys_floor * flux) ** 2)
    best = np.inf
    for s in STRETCHES:
        for t0 in np.arange(t.min() - 15 * s, t.max() + 20 * s + 1e-9, 0.02):
            chi = 0.0
            for b in (0, 1):
                m = band == b
                if not m.any():
                    continue
                T = _model(t[m], np.full(m.sum(), b), t0, s, (1.0, 1.0))
                stt = np.sum(w[m] * T * T)
                a = max(np.sum(w[m] * flux[m] * T) / stt, 0.0) if stt > 0 else 0.0
                chi += np.sum(w[m] * (flux[m] - a * T) ** 2)
            best = min(best, chi)
    return best


def test_the_template_is_an_sn_ia_in_g_and_r():
    doc = load_template()
    phase = doc["phase_start"] + doc["phase_step"] * np.arange(len(doc["bands"]["g"]))
    g, r = np.array(doc["bands"]["g"]), np.array(doc["bands"]["r"])
    assert abs(phase[np.argmax(g)]) < 2 and 0 < phase[np.argmax(r)] < 4  # r peaks after g
    assert -0.3 < -2.5 * np.log10(g.max() / r.max()) < 0.1  # blue at maximum
    assert (
        g[phase == 20][0] / g.max() < 0.4
        and r[phase == 20][0] / r.max() > g[phase == 20][0] / g.max()
    )  # g fades faster


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000))
def test_grid_search_reaches_the_dense_minimum(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 14))
    t = np.sort(rng.uniform(0, 25, n))
    band = rng.integers(0, 2, n)
    s_true, t0_true = rng.uniform(0.7, 1.4), rng.uniform(5, 30)
    clean = _model(t, band, t0_true, s_true, (rng.uniform(500, 3000), rng.uniform(500, 3000)))
    err = 0.05 * clean + 30
    flux = clean + rng.normal(0, err)
    ok = flux > 0
    if ok.sum() < 3:
        return
    t, band, flux, err = t[ok], band[ok], flux[ok], err[ok]
    ext = IaTemplateFeatures()
    X, _, _ = ext.extract_lc(_lc(t, band, flux, err))
    feat = dict(zip(ext.names, X[0], strict=True))
    assert feat["tmpl_ok"] == 1
    dof = max(len(t) - (2 + len(set(band))), 1)
    ours = (10 ** feat["tmpl_chi2dof"] - 1) * dof
    ref = _brute(t, band, flux, err)
    assert ours <= ref * 1.05 + 0.5, (ours, ref)


def test_features_of_a_clean_sn_ia_and_of_a_flat_source():
    t = np.arange(0.0, 24.0, 1.5)
    band = np.arange(len(t)) % 2
    t0 = 18.0
    amp = (1000.0, 1000.0 * 10 ** (0.4 * 0.2))  # 0.2 mag redder than the template
    flux = _model(t, band, t0, 1.0, amp)
    keep = flux > 50
    t, band, flux = t[keep], band[keep], flux[keep]
    err = 0.02 * flux + 5
    ext = IaTemplateFeatures()
    f = dict(zip(ext.names, ext.extract_lc(_lc(t, band, flux, err))[0][0], strict=True))
    assert f["tmpl_ok"] == 1 and f["tmpl_chi2dof"] < 0.05
    assert f["tmpl_stretch"] == pytest.approx(1.0, abs=0.11)
    assert (
        f["tmpl_phase_last"] == pytest.approx((t.max() - t0), abs=1.5)
        and f["tmpl_phase_first"] < -5
    )
    assert f["tmpl_colour_excess"] == pytest.approx(0.2, abs=0.05)
    assert f["tmpl_gain_const"] > 1 and f["tmpl_gain_linear"] > 0.3
    flat = dict(
        zip(
            ext.names,
            ext.extract_lc(_lc(t, band, np.full(len(t), 800.0), np.full(len(t), 40.0)))[0][0],
            strict=True,
        )
    )
    assert flat["tmpl_gain_const"] < 0.2 < f["tmpl_gain_const"]


def test_too_few_points_negative_detections_and_limits_give_no_fit():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    flux = np.array([-500.0, -600.0, 400.0, np.nan])
    err = np.array([30.0, 30.0, 30.0, 40.0])
    phot = pd.DataFrame(
        {
            "object_id": "x",
            "mjd": t,
            "band": ["g", "r", "g", "r"],
            "flux": flux,
            "flux_err": err,
            "detected": [True, True, True, False],
        }
    )
    ext = IaTemplateFeatures()
    X, ok, _ = ext.extract_lc(LightCurves.from_frames(phot, survey="ZTF"))
    assert ok.all() and X[0, 0] == 0 and (X[0] == 0).all()  # one positive detection: no fit, zeros
    with pytest.raises(ConfigError, match="sys_floor"):
        _ = IaTemplateFeatures(sys_floor=2.0).names
    with pytest.raises(ConfigError, match="no band"):
        IaTemplateFeatures(bands=("g", "i")).extract_lc(LightCurves.from_frames(phot, survey="ZTF"))


def test_the_early_extractor_appends_the_template_and_drops_brightness():
    ext = get_extractor(
        "early", limits=False, magnitudes=False, negatives="separate", template=True
    )
    names = ext.names
    assert names[-8:] == IaTemplateFeatures().names
    assert not any(
        n.startswith("early_mag_") or n in ("c_g", "c_r", "snratio_g", "snratio_r") for n in names
    )
    legacy = get_extractor("early")
    assert "early_mag_peak" in legacy.names and not any(n.startswith("tmpl_") for n in legacy.names)
