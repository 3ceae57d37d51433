"""The extractor contract, the registry and the feature-file format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from earlyia.errors import ConfigError, FeatureMismatchError, FormatError
from earlyia.features import (
    FeatureExtractor,
    get_extractor,
    read_features,
    register_extractor,
    write_features,
)
from earlyia.io.table import LightCurves


class CountPoints(FeatureExtractor):
    """Toy extractor: number of detections per band and the max flux; invalid when no detection."""

    name = "test_count"

    def __init__(self, bands=("g", "r"), scale=1.0):
        self.bands = bands
        self.scale = scale

    @property
    def names(self):
        return [f"n_{b}" for b in self.bands] + ["max_flux"]

    def extract(self, mjd, band, flux, flux_err, detected, starts, ends, *, bands, survey):
        X = np.zeros((len(starts), len(self.names)))
        ok = np.ones(len(starts), bool)
        reason = np.full(len(starts), "", dtype=object)
        for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
            det = detected[s:e]
            for j, b in enumerate(self.bands):
                X[i, j] = np.sum(det & (band[s:e] == bands.index(b)))
            X[i, -1] = self.scale * (np.nanmax(flux[s:e][det]) if det.any() else 0.0)
            if not det.any():
                ok[i], reason[i] = False, "no detection"
        return X, ok, reason


register_extractor("test_count", CountPoints)


def _lc() -> LightCurves:
    phot = pd.DataFrame(
        {
            "object_id": ["A"] * 5 + ["B"] * 2,
            "mjd": [1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0],
            "band": ["g", "r", "g", "r", "g", "g", "r"],
            "flux": [10.0, 20.0, 30.0, 40.0, 50.0, np.nan, np.nan],
            "flux_err": [1.0] * 7,
            "detected": [True] * 5 + [False] * 2,
        }
    )
    objects = pd.DataFrame(
        {"object_id": ["A", "B"], "label": [1, 0], "cdsxmatch": ["Unknown", "SN"]}
    )
    alerts = pd.DataFrame(
        {
            "object_id": ["A", "A", "B"],
            "alert_id": ["a1", "a2", "b1"],
            "mjd": [3.0, 5.0, 2.0],
            "ndethist": [3, 5, 0],
        }
    )
    return LightCurves.from_frames(phot, objects, alerts, survey="ZTF")


def test_transform_per_object_and_alert():
    lc = _lc()
    ext = CountPoints()
    obj = ext.transform(lc, per="object")
    assert list(obj.columns[:7]) == [
        "object_id",
        "alert_id",
        "mjd",
        "n_detections",
        "label",
        "valid",
        "reason",
    ]
    assert list(obj.columns[-3:]) == ext.names
    a = obj.set_index("object_id")
    assert a.loc["A", "n_g"] == 3 and a.loc["A", "n_r"] == 2 and a.loc["A", "max_flux"] == 50
    assert a.loc["A", "mjd"] == 5.0 and a.loc["A", "n_detections"] == 5
    assert not a.loc["B", "valid"] and a.loc["B", "reason"] == "no detection"
    assert a.loc["A", "reason"] == ""
    assert obj["alert_id"].isna().all()

    al = ext.transform(lc, per="alert").set_index("alert_id")
    # alert a1 sees the history up to mjd 3 only
    assert al.loc["a1", "n_g"] == 2 and al.loc["a1", "n_r"] == 1 and al.loc["a1", "max_flux"] == 30
    assert al.loc["a1", "mjd"] == 3.0 and al.loc["a1", "ndethist"] == 3
    assert al.loc["a2", "max_flux"] == 50
    assert al.loc["b1", "cdsxmatch"] == "SN" and al.loc["b1", "label"] == 0
    assert ext.transform(lc, per="auto").shape[0] == 3


def test_registry_and_config_roundtrip():
    ext = get_extractor("test_count", bands=("r",), scale=2.0)
    cfg = ext.config()
    assert cfg == {
        "extractor": "test_count",
        "params": {"bands": ["r"], "scale": 2.0},
        "names": ["n_r", "max_flux"],
    }
    again = get_extractor(cfg)
    assert again.names == ext.names and again.scale == 2.0
    with pytest.raises(FeatureMismatchError):
        get_extractor({**cfg, "names": ["n_g", "max_flux"]})
    with pytest.raises(ConfigError):
        get_extractor("no_such_extractor")
    with pytest.raises(ConfigError):
        get_extractor({"extractor": "test_count", "params": {"bogus": 1}})


def test_write_read_features(tmp_path):
    lc = _lc()
    ext = CountPoints()
    df = ext.transform(lc, per="alert")
    path = tmp_path / "f.parquet"
    write_features(df, path, ext, survey=lc.survey, bands=lc.bands)
    back, meta = read_features(path)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert (
        meta["extractor"] == ext.config()
        and meta["survey"] == "ZTF"
        and meta["bands"] == ["g", "r", "i"]
    )
    # a plain parquet is not a feature table; the message names the file
    plain = tmp_path / "plain.parquet"
    df.to_parquet(plain)
    with pytest.raises(FormatError, match=r"plain\.parquet"):
        read_features(plain)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet")
    with pytest.raises(FormatError, match=r"junk\.parquet"):
        read_features(junk)
