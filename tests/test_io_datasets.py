"""The shared data sets through earlyia.io.datasets: counts, and the SNPCC fast path equal to the
archive."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import reference, shared
from earlyia.errors import DataNotFoundError
from earlyia.io import datasets, read
from earlyia.io.table import LightCurves
from earlyia.labels import TypeMap


def test_ztf_tns_labelled():
    shared("ztf_fink_tns_labelled/objects.csv")
    lc = datasets.ztf_tns_labelled()
    assert lc.n_objects == 1502
    assert (lc.objects["label"] == "SN Ia").sum() == 599
    truth = pd.read_csv(shared("ztf_fink_tns_labelled/objects.csv")).set_index("objectId")[
        "tns_type"
    ]
    assert (lc.objects.set_index("object_id")["label"].loc[truth.index] == truth).all()
    assert len(lc.alerts) == 1829 and lc.survey == "ZTF"


def test_alerts_pool():
    shared("ztf_fink_alerts_pool/ztf_alerts_pool.parquet")
    lc = datasets.alerts_pool()
    assert (len(lc.alerts), lc.n_objects) == (1577, 1362)


def test_replay_has_labels():
    reference("ztf_replay_alerts_with_anchor.parquet")
    lc = datasets.replay()
    assert len(lc.alerts) == 19778 and lc.n_objects == 1444
    assert lc.objects["label"].notna().all()
    assert "anchor_score" in lc.alerts.columns


def test_snpcc_fast_path_matches_dat_files():
    """The Parquet extract gives the same light curves and truth as parsing the DAT files."""
    dat = read(shared("fixtures/snpcc_dat"))
    fast = datasets.snpcc()
    assert fast.n_objects == 21319 and (fast.objects["label"] == "SN Ia").sum() == 5088
    sub = fast.take(fast.object_index(dat.object_ids))
    assert np.array_equal(sub.offsets, dat.offsets)
    assert np.allclose(sub.mjd, dat.mjd) and np.array_equal(sub.band, dat.band)
    assert np.allclose(sub.flux, dat.flux, rtol=1e-6) and np.allclose(
        sub.flux_err, dat.flux_err, rtol=1e-6
    )
    for col in ("label", "sim_type", "is_ia", "sample", "sim_model", "sim_comment"):
        assert list(sub.objects[col]) == list(dat.objects[col]), col
    for col in ("ra", "dec", "redshift", "sim_redshift", "sim_peakmjd", "sntype", "sim_non1a"):
        assert np.allclose(
            sub.objects[col].astype(float), dat.objects[col].astype(float), rtol=1e-5
        ), col


def test_missing_data_dir(tmp_path):
    with pytest.raises(DataNotFoundError, match="EARLYIA_DATA"):
        datasets.alerts_pool(tmp_path)
    with pytest.raises(DataNotFoundError):
        datasets.snpcc(tmp_path)


def test_labelled_keeps_typed_objects_with_their_class(tmp_path):
    phot = pd.DataFrame(
        {
            "object_id": list("ABCDE"),
            "mjd": 1.0,
            "band": "g",
            "flux": 1.0,
            "flux_err": 0.1,
            "detected": True,
        }
    )
    lc = LightCurves.from_frames(phot, survey="ZTF")
    path = tmp_path / "labels.csv"
    pd.DataFrame(
        {"objectId": ["A", "B", "C", "E"], "type": ["SN Ia", "SN II", "", "SN Ia-91bg"]}
    ).to_csv(path, index=False)
    got, y = datasets.labelled(lc, path)
    # the reference: a label and a known class (the default TypeMap keeps sub-types out of both
    # classes or in one)
    codes = dict(
        zip("ABCDE", TypeMap().encode(["SN Ia", "SN II", None, None, "SN Ia-91bg"]), strict=True)
    )
    assert list(got.object_ids) == [o for o in "ABCDE" if codes[o] >= 0]
    assert list(y) == [codes[o] == 1 for o in got.object_ids]
    assert set(got.objects["label"]) <= {"SN Ia", "SN II", "SN Ia-91bg"}
