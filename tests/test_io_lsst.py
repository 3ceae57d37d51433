"""PLAsTiCC CSV and ELAsTiCC Parquet readers (LSST ugrizY)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import shared
from earlyia.errors import SchemaError
from earlyia.io import detect_format, read
from earlyia.io.lsst import read_elasticc, read_plasticc

NJY_TO_FLUXCAL = 10 ** (-0.4 * (31.4 - 27.5))


def test_plasticc_fixture_values():
    path = shared("fixtures/plasticc/plasticc_lightcurves.csv.gz")
    assert detect_format(path) == "plasticc_csv"
    lc = read(path)
    raw = pd.read_csv(path)
    assert lc.n_objects == raw["object_id"].nunique() and lc.n_points == len(raw)
    assert lc.survey == "LSST" and lc.bands == ("u", "g", "r", "i", "z", "Y")
    for oid, grp in raw.groupby("object_id"):
        grp = grp.sort_values(["mjd", "passband"])
        i = lc.object_index([str(oid)])[0]
        s, e = lc.offsets[i], lc.offsets[i + 1]
        assert np.allclose(lc.mjd[s:e], grp["mjd"]) and np.allclose(lc.flux[s:e], grp["flux"])
        assert np.array_equal(lc.band[s:e], grp["passband"].to_numpy())  # passband k -> LSST band k
        assert np.array_equal(lc.detected[s:e], grp["detected_bool"].to_numpy() == 1)


def test_plasticc_metadata_labels(tmp_path):
    lcs = tmp_path / "mini_lightcurves.csv"
    lcs.write_text(
        "object_id,mjd,passband,flux,flux_err,detected_bool\n1,59000.0,1,10.0,1.0,1\n2,59000.0,5,5.0,1.0,0\n"
    )
    (tmp_path / "mini_metadata.csv").write_text("object_id, target\n  1, 90\n  2, 42\n")
    lc = read(lcs)
    assert dict(zip(lc.objects["object_id"], lc.objects["label"], strict=True)) == {
        "1": "SN Ia",
        "2": "SN II",
    }
    bad = tmp_path / "bad.csv"
    bad.write_text("object_id,mjd,passband,flux\n1,2,3,4\n")
    with pytest.raises(SchemaError, match="flux_err"):
        read_plasticc(bad)


@pytest.mark.slow
def test_plasticc_full_training_set():
    lc = read(shared("plasticc_train_snmachine/plasticc_train_lightcurves.csv.xz"))
    assert lc.n_objects == 7848
    assert (lc.objects["label"] == "SN Ia").sum() == 2313
    assert lc.n_points == 1421705


def _ref_alert_points(row):
    pts = [
        (d["midPointTai"], d["filterName"], d["psFlux"] * NJY_TO_FLUXCAL)
        for d in [*(row["prvDiaSources"] or []), row["diaSource"]]
    ]
    return sorted(pts)


def test_elasticc_one_file_against_reference():
    path = shared(
        "elasticc_fink_ia_ii/ftransfer_elasticc_2023-02-08_902820/classId=113/part-0-0.parquet"
    )
    assert detect_format(path) == "elasticc_parquet"
    lc = read(path)
    rows = pq.read_table(path, partitioning=None).to_pylist()
    assert len(lc.alerts) == len(rows)
    assert set(lc.objects["label"]) == {"SN II"} and lc.survey == "LSST"
    starts, ends = lc.alert_segments()
    a = lc.alerts.reset_index(drop=True)
    for k in range(0, len(rows), 37):
        row = rows[k]
        j = int(np.flatnonzero(a["alert_id"].to_numpy() == str(row["alertId"]))[0])
        s, e = starts[j], ends[j]
        det = lc.detected[s:e]
        ours = sorted(
            zip(
                lc.mjd[s:e][det],
                np.asarray(lc.bands)[lc.band[s:e][det]],
                lc.flux[s:e][det],
                strict=True,
            )
        )
        ref = _ref_alert_points(row)
        # history (as of this alert) of the merged light curve includes this alert's own detections
        for t, b, f in ref:
            match = [x for x in ours if abs(x[0] - t) < 1e-6 and x[1] == b]
            assert match and np.isclose(match[0][2], f, rtol=1e-6)
    # forced photometry: non-detections with finite flux, none at a detection epoch of the same band
    assert (~lc.detected).any() and np.isfinite(lc.flux[~lc.detected]).all()
    no_forced = read_elasticc(path, forced=False)
    assert no_forced.detected.all() and no_forced.n_points < lc.n_points


def test_elasticc_aggregated_columns_match_nested():
    path = shared("fixtures/elasticc/test_elasticc_earlysnia_aggregated.parquet")
    lc = read_elasticc(path, forced=False)
    t = pq.read_table(
        path, columns=["alertId", "cmidPointTai", "cfilterName", "cpsFlux"]
    ).to_pylist()
    assert len(lc.alerts) == len(t) == 260
    starts, ends = lc.alert_segments()
    idx = {aid: j for j, aid in enumerate(lc.alerts["alert_id"])}
    for row in t[::13]:
        j = idx[str(row["alertId"])]
        s, e = starts[j], ends[j]
        got = {
            (round(m, 6), lc.bands[b]): f
            for m, b, f in zip(lc.mjd[s:e], lc.band[s:e], lc.flux[s:e], strict=True)
        }
        for m, b, f in zip(row["cmidPointTai"], row["cfilterName"], row["cpsFlux"], strict=True):
            assert np.isclose(got[(round(m, 6), b)], f * NJY_TO_FLUXCAL, rtol=1e-6)


def test_elasticc_schema_errors(tmp_path):
    p = tmp_path / "x.parquet"
    pq.write_table(
        pa.table(
            {
                "alertId": [1],
                "cmidPointTai": [[60000.0]],
                "cfilterName": [["g"]],
                "cpsFlux": [[1.0]],
                "cpsFluxErr": [[0.1]],
            }
        ),
        p,
    )
    assert detect_format(p) == "elasticc_parquet"
    with pytest.raises(SchemaError, match="diaObjectId"):
        read(p)


@pytest.mark.slow
def test_elasticc_full_counts():
    lc = read(shared("elasticc_fink_ia_ii"))
    assert len(lc.alerts) == 10567
    counts = lc.objects["label"].value_counts()
    assert counts["SN Ia"] == 3503 and counts["SN II"] == 3173
    assert not lc.problems


def test_elasticc_folder_with_a_broken_file(tmp_path):
    src = shared("elasticc_fink_ia_ii/ftransfer_elasticc_2023-02-08_902820/classId=111")
    folder = tmp_path / "classId=111"
    folder.mkdir()
    parts = sorted(src.glob("*.parquet"))[:2]
    for p in parts:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "part-broken.parquet").write_bytes(b"PAR1" + b"\x00" * 64 + b"PAR1")
    assert detect_format(tmp_path) == "elasticc_parquet"
    lc = read(tmp_path)
    n_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    assert len(lc.alerts) == n_rows
    assert set(lc.objects["label"]) == {"SN Ia"}  # classId from the folder name
    assert len(lc.problems) == 1 and lc.problems[0].source.endswith("part-broken.parquet")
