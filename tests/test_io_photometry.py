"""Magnitude <-> FLUXCAL conversions against hand computations."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from earlyia.io.photometry import (
    diffpos_sign,
    fluxcal_to_mag,
    limit_to_flux_err,
    mag_to_fluxcal,
    njy_to_fluxcal,
)


def test_hand_computed_flux():
    # m = 20 -> 10**(-8 + 11) = 1000; error = 0.4 ln10 * 1000 * 0.1 = 92.1034
    flux, err = mag_to_fluxcal(20.0, 0.1)
    assert math.isclose(float(flux), 1000.0, rel_tol=1e-12)
    assert math.isclose(float(err), 0.4 * math.log(10) * 1000.0 * 0.1, rel_tol=1e-6)
    # zero point: m = 27.5 -> FLUXCAL 1
    assert math.isclose(float(mag_to_fluxcal(27.5, 0.0)[0]), 1.0, rel_tol=1e-12)


def test_isdiffpos_negative_and_positive_spellings():
    mags = np.full(9, 19.0)
    sig = np.full(9, 0.05)
    flags = np.array(["t", "f", "1", "0", None, True, False, "F", "T"], dtype=object)
    flux, err = mag_to_fluxcal(mags, sig, flags)
    expected_sign = np.array([1, -1, 1, -1, 1, 1, -1, -1, 1])
    assert np.array_equal(np.sign(flux), expected_sign)
    assert np.all(err > 0)
    assert np.array_equal(diffpos_sign(np.array([1, -1, 0])), [1, -1, -1])
    assert np.array_equal(diffpos_sign(np.array([True, False])), [1, -1])


def _sign_one_by_one(v) -> int:
    """The sign of one isdiffpos value, spelled out (the reference for the vectorised
    :func:`diffpos_sign`)."""
    if isinstance(v, (bool, np.bool_)):
        return 1 if v else -1
    if isinstance(v, (int, float, np.integer, np.floating)):
        return -1 if (v == v and v <= 0) else 1
    return (
        -1
        if v is not None and str(v).strip().lower() in {"f", "0", "false", "-1", "n", "no"}
        else 1
    )


_ISDIFFPOS = st.one_of(
    st.sampled_from(
        ["t", "f", "T", "F", " f ", "1", "0", "-1", "+1", "true", "False", "no", "yes", "", "nan"]
    ),
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True),
    st.text(max_size=3),
)


@given(st.lists(_ISDIFFPOS, max_size=40))
def test_diffpos_sign_of_mixed_values_equals_the_value_by_value_rule(values):
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    assert diffpos_sign(arr).tolist() == [_sign_one_by_one(v) for v in values]


def test_limit_to_flux_err():
    # 5-sigma limit at m = 20 -> 1-sigma noise of 1000 / 5
    assert math.isclose(float(limit_to_flux_err(20.0)), 200.0, rel_tol=1e-12)
    assert np.isnan(limit_to_flux_err(np.nan))


def test_nan_and_nonpositive():
    flux, err = mag_to_fluxcal([np.nan], [0.1])
    assert np.isnan(flux[0]) and np.isnan(err[0])
    assert np.isnan(fluxcal_to_mag([-5.0, 0.0])).all()


@given(st.floats(12, 24), st.floats(0.001, 1.0))
def test_round_trip(m, s):
    flux, err = mag_to_fluxcal(m, s)
    m2, s2 = fluxcal_to_mag(flux, err)
    assert math.isclose(float(m2), m, abs_tol=1e-9)
    assert math.isclose(float(s2), s, rel_tol=1e-5)


def test_njy_zero_point():
    # 31.4 - 2.5 log10(f) = 27.5 - 2.5 log10(F)  ->  F = f * 10**(-0.4 * 3.9)
    f = 12345.0
    mag = 31.4 - 2.5 * math.log10(f)
    assert math.isclose(float(njy_to_fluxcal(f)), 10 ** (-0.4 * mag + 11), rel_tol=1e-12)
