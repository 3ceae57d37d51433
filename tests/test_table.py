"""The canonical light-curve table: construction, dedup, views, Parquet round trip."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlyia.errors import FormatError, SchemaError
from earlyia.io.table import LightCurves


def _phot(rows):
    return pd.DataFrame(rows, columns=["object_id", "mjd", "band", "flux", "flux_err", "detected"])


def test_sorts_dedups_and_offsets():
    phot = _phot(
        [
            ("B", 3.0, "r", 10.0, 1.0, True),
            ("A", 2.0, "g", 5.0, 1.0, True),
            ("A", 1.0, "g", np.nan, 0.5, False),
            ("A", 2.0 + 1e-7, "g", np.nan, 0.5, False),  # duplicate epoch of a detection: dropped
            ("A", 2.0, "r", 6.0, 1.0, True),  # same time, other band: kept
        ]
    )
    lc = LightCurves.from_frames(phot, survey="ZTF")
    assert list(lc.object_ids) == ["A", "B"]
    assert list(lc.offsets) == [0, 3, 4]
    assert list(lc.mjd[:3]) == [1.0, 2.0, 2.0]
    assert list(lc.detected[:3]) == [False, True, True]
    assert lc.bands == ("g", "r", "i")
    assert list(lc.n_detections()) == [2, 1]


def test_bad_object_is_reported_and_others_kept():
    phot = _phot(
        [
            ("A", 1.0, "g", np.inf, 1.0, True),
            ("B", 1.0, "g", 3.0, 1.0, True),
            ("C", 1.0, "q", 3.0, 1.0, True),
        ]
    )
    lc = LightCurves.from_frames(phot, survey="ZTF", source="x.parquet")
    assert list(lc.object_ids) == ["B"]
    reasons = {p.object_id: p.reason for p in lc.problems}
    assert "non-finite flux" in reasons["A"] and "unknown band" in reasons["C"]
    assert all(p.source == "x.parquet" for p in lc.problems)


def test_missing_column_names_it():
    with pytest.raises(SchemaError, match="flux_err"):
        LightCurves.from_frames(
            pd.DataFrame({"object_id": ["a"], "mjd": [1.0], "band": ["g"], "flux": [1.0]})
        )


def test_alerts_as_of_and_parquet_round_trip(tmp_path):
    phot = _phot([("A", float(t), "g", float(t), 1.0, True) for t in range(5)])
    alerts = pd.DataFrame(
        {"object_id": ["A", "A"], "alert_id": ["a2", "a4"], "mjd": [2.0, 4.0], "ndethist": [3, 5]}
    )
    objects = pd.DataFrame({"object_id": ["A"], "ra": [10.0], "label": ["SN Ia"]})
    lc = LightCurves.from_frames(phot, objects, alerts, survey="ZTF")
    s, e = lc.alert_segments()
    assert list(e - s) == [3, 5]
    path = tmp_path / "t.parquet"
    lc.to_parquet(path)
    back = LightCurves.read_parquet(path)
    np.testing.assert_array_equal(back.mjd, lc.mjd)
    np.testing.assert_array_equal(back.band, lc.band)
    assert back.objects["label"].tolist() == ["SN Ia"]
    assert back.alerts["alert_id"].tolist() == ["a2", "a4"]
    assert back.alerts["ndethist"].tolist() == [3, 5]
    s2, e2 = back.alert_segments()
    assert list(e2 - s2) == [3, 5]


def test_read_parquet_refuses_foreign_file(tmp_path):
    p = tmp_path / "x.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(p)
    with pytest.raises(FormatError, match="not an earlyia"):
        LightCurves.read_parquet(p)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1garbage")
    with pytest.raises(FormatError, match=r"bad\.parquet"):
        LightCurves.read_parquet(tmp_path / "bad.parquet")


def test_concat_merges_alerts_of_one_object():
    a = LightCurves.from_frames(
        _phot([("A", 1.0, "g", 1.0, 1.0, True), ("A", 2.0, "g", 2.0, 1.0, True)]), survey="ZTF"
    )
    b = LightCurves.from_frames(
        _phot([("A", 2.0, "g", 2.0, 1.0, True), ("A", 3.0, "r", 3.0, 1.0, True)]), survey="ZTF"
    )
    m = LightCurves.concat([a, b])
    assert m.n_objects == 1 and m.n_points == 3


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(0, 30), st.booleans()),
        min_size=1,
        max_size=60,
    ),
    st.integers(1, 6),
)
def test_truncate_and_replay_match_slow_reference(points, n):
    phot = _phot([(o, float(t), "g", 1.0 if d else np.nan, 1.0, d) for o, t, d in points])
    lc = LightCurves.from_frames(phot, survey="ZTF")
    tr = lc.truncate(n)
    rp = lc.replay(min_detections=1, max_detections=n)
    s, e = rp.alert_segments()
    for i in range(lc.n_objects):
        seg = slice(lc.offsets[i], lc.offsets[i + 1])
        det = lc.detected[seg]
        # slow reference: walk the points, stop after the n-th detection
        keep, count = [], 0
        for d in det:
            if count >= n:
                break
            keep.append(d)
            count += d
        got = tr.detected[tr.offsets[i] : tr.offsets[i + 1]]
        assert list(got) == keep
        mine = np.flatnonzero(rp.alerts["object_index"].to_numpy() == i)
        assert len(mine) == min(n, int(det.sum()))
        for k, j in enumerate(mine, start=1):
            assert lc.detected[s[j] : e[j]].sum() == k and lc.detected[e[j] - 1]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(0, 30), st.booleans()),
        min_size=1,
        max_size=40,
    ),
    st.lists(st.tuples(st.integers(0, 39), st.integers(0, 39)), max_size=8),
)
def test_from_segments_and_take_match_slicing(points, pairs):
    phot = _phot([(o, float(t), "gr"[t % 2], float(t), 1.0, d) for o, t, d in points])
    lc = LightCurves.from_frames(phot, survey="ZTF")
    n = lc.n_points
    segs = [(min(a, b) % (n + 1), max(a, b) % (n + 1)) for a, b in pairs]
    segs = [(s, max(s, e)) for s, e in segs]
    objects = pd.DataFrame({"object_id": [f"s{i}" for i in range(len(segs))]})
    out = lc.from_segments(
        np.array([s for s, _ in segs], np.int64), np.array([e for _, e in segs], np.int64), objects
    )
    assert out.n_objects == len(segs)
    for i, (s, e) in enumerate(segs):  # slow reference: plain slices of the source arrays
        got = slice(out.offsets[i], out.offsets[i + 1])
        for col in ("mjd", "band", "flux", "detected", "alert_id"):
            np.testing.assert_array_equal(getattr(out, col)[got], getattr(lc, col)[s:e])
    order = list(range(lc.n_objects))[::-1]
    taken = lc.take(order)
    assert list(taken.object_ids) == [lc.object_ids[i] for i in order]
    for k, i in enumerate(order):
        np.testing.assert_array_equal(
            taken.mjd[taken.offsets[k] : taken.offsets[k + 1]],
            lc.mjd[lc.offsets[i] : lc.offsets[i + 1]],
        )
