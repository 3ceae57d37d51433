"""EarlyFeatures(extra_colours=...): more colours for surveys with more bands, default outputs
unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from earlyia.features.base import get_extractor
from earlyia.features.early import EarlyFeatures
from earlyia.io.table import LightCurves
from test_features_early import reference

LSST = ("g", "r", "i", "z", "u", "Y")

point = st.tuples(
    st.floats(0, 30, allow_nan=False).map(lambda x: round(x, 2)),
    st.integers(0, 5),
    st.one_of(st.floats(-50, -0.5), st.floats(0.5, 5000)),
    st.floats(1, 100),
    st.booleans(),
)


def _lc(points):
    df = pd.DataFrame(points, columns=["mjd", "b", "flux", "flux_err", "detected"])
    df["object_id"] = "x"
    df["band"] = np.asarray(LSST, dtype=object)[df["b"]]
    df.loc[~df["detected"], "flux"] = np.nan
    return LightCurves.from_frames(df, survey="LSST")


@settings(max_examples=80, deadline=None)
@given(st.lists(point, min_size=1, max_size=25))
def test_extra_colours_match_the_slow_reference(points):
    lc = _lc(points)
    ext = EarlyFeatures(bands=LSST, sigmoid=None, extra_colours=(("r", "i"), ("i", "z")))
    X, ok, _ = ext.extract_lc(lc)
    got = dict(zip(ext.names, X[0], strict=True))
    s, e = lc.offsets[0], lc.offsets[1]
    codes = np.asarray(lc.band[s:e], np.int64)
    for blue, red in (("g", "r"), ("r", "i"), ("i", "z")):
        # the reference computes the colour of band code 0 minus band code 1: recode the pair
        b = np.full(len(codes), 9)
        b[codes == lc.bands.index(blue)] = 0
        b[codes == lc.bands.index(red)] = 1
        ref = reference(lc.mjd[s:e], b, lc.flux[s:e], lc.flux_err[s:e], lc.detected[s:e])
        if ref is None:
            assert not ok[0]
            return
        suffix = "" if (blue, red) == ("g", "r") else f"_{blue}_{red}"
        for k in ("colour_mean", "colour_last", "colour_rate", "n_colour"):
            assert np.isclose(got[f"early_{k}{suffix}"], ref[k], rtol=1e-7, atol=1e-7), (
                blue,
                red,
                k,
            )


@settings(max_examples=30, deadline=None)
@given(st.lists(point, min_size=1, max_size=20))
def test_default_features_unchanged_by_extra_colours(points):
    lc = _lc(points)
    base = EarlyFeatures(bands=LSST, sigmoid=None)
    more = EarlyFeatures(bands=LSST, sigmoid=None, extra_colours=(("r", "i"),))
    X0, ok0, _ = base.extract_lc(lc)
    X1, ok1, _ = more.extract_lc(lc)
    assert more.names[: len(base.names)] == base.names and len(more.names) == len(base.names) + 4
    np.testing.assert_array_equal(X1[:, : X0.shape[1]], X0)
    np.testing.assert_array_equal(ok0, ok1)


def test_config_round_trip_and_missing_band():
    ext = EarlyFeatures(bands=LSST, sigmoid=None, extra_colours=(("r", "i"),))
    again = get_extractor(ext.config())
    assert again.names == ext.names
    # a band the light curves do not have: the colour is simply never measured
    lc = _lc([(0.0, 0, 100.0, 5.0, True), (0.1, 1, 120.0, 5.0, True)])
    X, ok, _ = EarlyFeatures(bands=LSST, sigmoid=None, extra_colours=(("r", "w"),)).extract_lc(lc)
    assert ok[0] and X[0, -1] == 0
