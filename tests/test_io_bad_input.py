"""Bad input: every reader names the file/object, and one bad item never
loses the batch."""

from __future__ import annotations

import fastavro
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from earlyia.errors import FormatError, InputError, SchemaError
from earlyia.io import detect_format, read
from earlyia.io.fink import lightcurves_from_fink_frame


def _fink(rows):
    return pd.DataFrame(rows, columns=["objectId", "cjd", "cmagpsf", "csigmapsf", "cfid"])


GOOD = ["ok", [2459000.5, 2459002.5], [19.0, 18.8], [0.1, 0.1], [1, 2]]


def test_nan_and_inf_values():
    rows = [
        GOOD,
        ["nan_time", [np.nan, 2459002.5], [19.0, 18.8], [0.1, 0.1], [1, 1]],
        ["inf_sigma", [2459000.5], [19.0], [np.inf], [1]],
        ["inf_mag", [2459000.5, 2459001.5], [np.inf, 19.0], [0.1, 0.1], [1, 1]],
        ["bad_band", [2459000.5], [19.0], [0.1], [7]],
    ]
    lc = lightcurves_from_fink_frame(_fink(rows), source="mem.parquet")
    assert sorted(lc.object_ids) == ["inf_mag", "ok"]
    by_obj = {p.object_id: p.reason for p in lc.problems}
    assert "non-finite time" in by_obj["nan_time"]
    assert "flux error" in by_obj["inf_sigma"]
    assert "unknown band" in by_obj["bad_band"]
    i = lc.object_index(["inf_mag"])[0]
    assert lc.detected[lc.offsets[i] : lc.offsets[i + 1]].tolist() == [
        False,
        True,
    ]  # inf magnitude = no detection
    assert all(p.source == "mem.parquet" for p in lc.problems)


def test_unsorted_duplicates_single_band():
    rows = [
        [
            "x",
            [2459003.5, 2459000.5, 2459003.5, 2459001.5],
            [18.0, 19.5, 18.0, 19.0],
            [0.1] * 4,
            [2, 2, 2, 2],
        ]
    ]
    lc = lightcurves_from_fink_frame(_fink(rows), source="mem")
    assert lc.n_points == 3 and np.all(np.diff(lc.mjd) > 0)
    assert set(lc.band.tolist()) == {lc.band_code("r")} and lc.bands == ("g", "r", "i")


def test_empty_inputs(tmp_path):
    empty = tmp_path / "empty.parquet"
    pq.write_table(
        pa.table(
            {
                c: pa.array([], pa.list_(pa.float64()))
                for c in ("cjd", "cmagpsf", "csigmapsf", "cfid")
            }
        ).append_column("objectId", pa.array([], pa.string())),
        empty,
    )
    with pytest.raises(InputError, match=r"empty\.parquet.*empty"):
        read(empty)
    csv = tmp_path / "empty.csv"
    csv.write_text("objectId,cjd,cfid,cmagpsf,csigmapsf\n")
    with pytest.raises(InputError, match=r"empty\.csv"):
        read(csv)
    folder = tmp_path / "nothing"
    folder.mkdir()
    with pytest.raises(InputError, match="no data file"):
        read(folder)
    with pytest.raises(InputError, match="no input"):
        read([])
    with pytest.raises(FormatError, match="no such file"):
        detect_format(tmp_path / "absent.avro")


def test_missing_columns_name_the_file(tmp_path):
    p = tmp_path / "cols.parquet"
    pq.write_table(
        pa.table({"objectId": ["a"], "cjd": [[1.0]], "cmagpsf": [[19.0]], "cfid": [[1]]}), p
    )
    with pytest.raises(FormatError, match=r"cols\.parquet.*unrecognised"):
        read(p)
    with pytest.raises(SchemaError, match=r"cols\.parquet.*csigmapsf"):
        read(p, format="fink_parquet")


def test_truncated_parquet(tmp_path):
    p = tmp_path / "good.parquet"
    _fink([GOOD]).to_parquet(p)
    data = p.read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(data[: len(data) - 20])
    with pytest.raises(FormatError, match=r"cut\.parquet"):
        read(cut, format="fink_parquet")
    lc = read([p, cut], format="fink_parquet")
    assert (
        lc.n_objects == 1
        and len(lc.problems) == 1
        and lc.problems[0].source.endswith("cut.parquet")
    )


_SCHEMA = {
    "type": "record",
    "name": "alert",
    "fields": [
        {"name": "objectId", "type": "string"},
        {"name": "candid", "type": "long"},
        {
            "name": "candidate",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "candidate",
                    "fields": [
                        {"name": f, "type": ["null", t]}
                        for f, t in [
                            ("jd", "double"),
                            ("fid", "int"),
                            ("magpsf", "float"),
                            ("sigmapsf", "float"),
                            ("isdiffpos", "string"),
                            ("diffmaglim", "float"),
                            ("candid", "long"),
                        ]
                    ],
                },
            ],
        },
        {"name": "prv_candidates", "type": ["null", {"type": "array", "items": "candidate"}]},
    ],
}


def _alert(oid, candid, jd, mag, isdiffpos="t", prv=None):
    return {
        "objectId": oid,
        "candid": candid,
        "candidate": {
            "jd": jd,
            "fid": 1,
            "magpsf": mag,
            "sigmapsf": 0.1,
            "isdiffpos": isdiffpos,
            "diffmaglim": 20.5,
            "candid": candid,
        },
        "prv_candidates": prv,
    }


def test_avro_container_with_a_bad_alert(tmp_path):
    prv = [
        {
            "jd": 2459000.5,
            "fid": 2,
            "magpsf": None,
            "sigmapsf": None,
            "isdiffpos": None,
            "diffmaglim": 20.0,
            "candid": None,
        }
    ]
    records = [
        _alert("ZTFa", 1, 2459001.5, 19.0, prv=prv),
        {"objectId": "ZTFbad", "candid": 2, "candidate": None, "prv_candidates": None},
        _alert("ZTFa", 3, 2459002.5, 18.5, isdiffpos="f"),
    ]
    p = tmp_path / "alerts.avro"
    with open(p, "wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(_SCHEMA), records, codec="deflate")
    assert detect_format(p) == "ztf_avro"
    lc = read(p)
    assert lc.n_objects == 1 and list(lc.alerts["alert_id"]) == ["1", "3"]
    assert [p.object_id for p in lc.problems] == ["ZTFbad"]
    assert lc.detected.tolist() == [False, True, True] and lc.flux[2] < 0 < lc.flux[1]
    assert np.isclose(lc.flux_err[0], 10 ** (-0.4 * 20.0 + 11) / 5)


@pytest.mark.parametrize("codec", ["null", "deflate", "snappy"])
def test_avro_codecs(tmp_path, codec):
    p = tmp_path / f"{codec}.avro"
    with open(p, "wb") as fh:
        fastavro.writer(
            fh, fastavro.parse_schema(_SCHEMA), [_alert("ZTFc", 7, 2459001.5, 19.0)], codec=codec
        )
    lc = read(p)
    assert list(lc.alerts["alert_id"]) == ["7"] and np.isclose(lc.flux[0], 10 ** (-0.4 * 19.0 + 11))
