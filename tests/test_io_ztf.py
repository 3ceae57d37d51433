"""ZTF Avro and alert-parquet readers: counts on the shared fixtures, values against a
plain-Python reference."""

from __future__ import annotations

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import shared
from earlyia.errors import FormatError, InputError, SchemaError
from earlyia.io import detect_format, read
from earlyia.io.photometry import limit_to_flux_err, mag_to_fluxcal
from earlyia.io.table import JD_MJD_OFFSET

FIXTURES = [
    ("fixtures/ztf_avro/2019_01_10_739260766315010006.avro", "ztf_avro", 1),
    ("fixtures/ztf_avro/472263571115115000.avro", "ztf_avro", 1),
    ("fixtures/fink_ztf/avro_multi_alerts.avro", "ztf_avro", 11),
    ("fixtures/fink_ztf/avro_multi_alerts_other.avro", "ztf_avro", 3),
    ("fixtures/fink_ztf/ztf_alerts_51.parquet", "ztf_alert_parquet", 51),
    ("fixtures/fink_ztf/fink_science_alert_samples_11.parquet", "ztf_alert_parquet", 11),
]


@pytest.mark.parametrize(("rel", "fmt", "n_alerts"), FIXTURES)
def test_fixture_counts(rel, fmt, n_alerts):
    path = shared(rel)
    assert detect_format(path) == fmt
    lc = read(path)
    assert len(lc.alerts) == n_alerts
    assert not lc.problems
    assert lc.survey == "ZTF" and lc.bands == ("g", "r", "i")
    # each alert's own candidate point is in its segment, last, with its candid
    starts, ends = lc.alert_segments()
    assert (ends > starts).all()
    cand = lc.alerts["candid"].astype(np.int64).to_numpy()
    for s, e, c in zip(starts, ends, cand, strict=True):
        assert c in lc.alert_id[s:e]


def _reference_points(alert):
    """Plain-Python reading of one alert packet: sorted (mjd, fid, flux, err, detected)."""
    out = []
    for p in [*(alert["prv_candidates"] or []), alert["candidate"]]:
        if p["magpsf"] is None:
            out.append(
                (
                    p["jd"] - JD_MJD_OFFSET,
                    p["fid"],
                    np.nan,
                    float(limit_to_flux_err(p["diffmaglim"])),
                    False,
                )
            )
        else:
            f, e = mag_to_fluxcal(p["magpsf"], p["sigmapsf"])
            sign = -1.0 if p["isdiffpos"] in ("f", "0") else 1.0
            out.append((p["jd"] - JD_MJD_OFFSET, p["fid"], sign * float(f), float(e), True))
    return sorted(out, key=lambda r: (r[0], r[1]))


def test_avro_values_against_reference():
    path = shared("fixtures/ztf_avro/2019_01_10_739260766315010006.avro")
    with open(path, "rb") as fh:
        alert = next(iter(fastavro.reader(fh)))
    ref = _reference_points(alert)
    lc = read(path)
    assert lc.n_points == len(ref)
    band_fid = {"g": 1, "r": 2, "i": 3}
    for k, (t, fid, f, e, det) in enumerate(ref):
        assert np.isclose(lc.mjd[k], t)
        assert band_fid[lc.bands[lc.band[k]]] == fid
        assert lc.detected[k] == det
        assert np.isclose(lc.flux_err[k], e)
        assert (np.isnan(lc.flux[k]) and np.isnan(f)) or np.isclose(lc.flux[k], f)
    assert (lc.flux[lc.detected] < 0).any()  # this alert has isdiffpos='f' points
    assert lc.alerts.loc[0, "alert_id"] == str(alert["candid"])
    assert lc.objects.loc[0, "ndethist"] == alert["candidate"]["ndethist"]


def test_pool_counts_and_reference_values():
    path = shared("ztf_fink_alerts_pool/ztf_alerts_pool.parquet")
    lc = read(path)
    assert len(lc.alerts) == 1577
    assert lc.n_objects == 1362
    assert lc.alerts["rf_snia_vs_nonia"].notna().sum() == 399
    rows = pq.read_table(path).slice(0, 40).to_pylist()
    for r in rows[:40:7]:
        alert = {
            "candidate": {k[5:]: v for k, v in r.items() if k.startswith("cand_")},
            "prv_candidates": r["prv_candidates"],
        }
        ref = _reference_points(alert)
        i = lc.object_index([r["objectId"]])[0]
        s, e = lc.offsets[i], lc.offsets[i + 1]
        got = {
            (round(lc.mjd[k], 6), lc.band[k] + 1): (lc.flux[k], lc.flux_err[k]) for k in range(s, e)
        }
        for t, fid, f, err, _ in ref:
            gf, ge = got[(round(t, 6), fid)]
            assert np.isclose(ge, err) and ((np.isnan(gf) and np.isnan(f)) or np.isclose(gf, f))


def test_truncated_avro(tmp_path):
    src = shared("fixtures/fink_ztf/avro_multi_alerts.avro").read_bytes()
    bad = tmp_path / "truncated.avro"
    bad.write_bytes(src[: len(src) // 2])
    try:
        lc = read(bad)
    except FormatError as exc:  # a single block: nothing readable
        assert "truncated.avro" in str(exc)
    else:
        assert 0 < len(lc.alerts) < 11 and any("damaged" in p.reason for p in lc.problems)
    head = tmp_path / "head.avro"
    head.write_bytes(src[:100])
    with pytest.raises(FormatError, match=r"head\.avro"):
        read(head)


def test_corrupted_parquet_and_batch(tmp_path):
    good = shared("fixtures/fink_ztf/ztf_alerts_51.parquet")
    bad = tmp_path / "broken.parquet"
    data = good.read_bytes()
    bad.write_bytes(
        data[:4] + data[4 : len(data) // 3] + data[-8:]
    )  # PAR1 ... PAR1 with garbage footer
    with pytest.raises(FormatError, match=r"broken\.parquet"):
        read(bad, format="ztf_alert_parquet")
    lc = read([good, bad])
    assert len(lc.alerts) == 51
    assert len(lc.problems) == 1 and "broken.parquet" in lc.problems[0].source
    with pytest.raises(InputError, match="none of the 2 inputs"):
        read([bad, tmp_path / "missing.avro"])


def test_missing_candidate_fields(tmp_path):
    t = pa.table({"objectId": ["a"], "cand_jd": [2459000.5], "cand_magpsf": [19.0]})
    p = tmp_path / "flat.parquet"
    pq.write_table(t, p)
    assert detect_format(p) == "ztf_alert_parquet"
    with pytest.raises(SchemaError, match=r"flat.parquet.*lacks field\(s\) \['fid', 'sigmapsf'\]"):
        read(p)


def test_candidate_without_history_but_fink_lists(tmp_path):
    """A nested candidate plus Fink's lists (no prv_candidates): the lists carry the history, so
    fink_parquet reads it."""
    t = pa.table(
        {
            "objectId": ["ZTFx"],
            "candid": [5],
            "candidate": [
                {
                    "jd": 2459002.5,
                    "fid": 1,
                    "magpsf": 18.0,
                    "sigmapsf": 0.1,
                    "ndethist": 2,
                    "drb": 0.9,
                }
            ],
            "cjd": [[2459000.5, 2459002.5]],
            "cmagpsf": [[19.0, 18.0]],
            "csigmapsf": [[0.1, 0.1]],
            "cfid": [[1, 1]],
        }
    )
    p = tmp_path / "mixed.parquet"
    pq.write_table(t, p)
    assert detect_format(p) == "fink_parquet"
    lc = read(p)
    assert lc.n_points == 2 and lc.alerts.loc[0, "drb"] == 0.9 and lc.alerts.loc[0, "ndethist"] == 2


def test_tar_of_avro_alerts(tmp_path):
    """ZTF's nightly alert archives are tarballs of single-alert Avro files."""
    import tarfile

    src = [shared(rel) for rel, fmt, _ in FIXTURES if fmt == "ztf_avro"]
    path = tmp_path / "ztf_public_20190110.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for p in src:
            tar.add(p, arcname=f"night/{p.name}")
        broken = tmp_path / "broken.avro"
        broken.write_bytes(src[0].read_bytes()[:300])
        tar.add(broken, arcname="night/broken.avro")
    assert detect_format(path) == "ztf_avro"
    lc = read(path)
    assert len(lc.alerts) == sum(n for _, fmt, n in FIXTURES if fmt == "ztf_avro") == 16
    assert len(lc.problems) == 1 and "broken.avro" in lc.problems[0].source
