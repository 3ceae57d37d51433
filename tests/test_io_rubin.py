"""Every real alert file in external_alert_samples/ reads: Rubin Avro of every schema version,
Fink's Rubin Parquet and data-transfer files, ELAsTiCC Avro, ZTF of every schema; counts derived
here from the raw files with fastavro / pyarrow, never from the reader."""

from __future__ import annotations

import gzip
import shutil
import tarfile

import fastavro
import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import shared
from earlyia.errors import InputError
from earlyia.io import detect_format, read
from earlyia.io.rubin import lightcurves_from_records, read_rubin_parquet

SAMPLES = "external_alert_samples"
NJY_TO_FLUXCAL = 10 ** (-0.4 * (31.4 - 27.5))
RUBIN_VERSIONS = [
    "3_0",
    "4_0",
    "5_0",
    "6_0",
    "6_1",
    "7_0",
    "7_1",
    "7_2",
    "7_3",
    "7_4",
    "8_0",
    "9_0",
    "10_0",
    "11_0",
]
TRANSFER_PARTS = [
    "120932350",
    "124102743",
    "179207654",
    "192771779",
    "204159575",
    "209652396",
    "243580376",
    "267012647",
]


def avro_records(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        return list(fastavro.reader(fh))


def parquet_records(path, columns=None):
    return pq.read_table(path, columns=columns).to_pylist()


def _first(d, *names):
    for n in names:
        if n in d:
            return d[n]
    return None


def rubin_counts(records):
    """(objects, points, detections, alerts of objects, skipped alerts) the plain way: sets of
    (object, time, band)."""
    objects, points, dets, alerts, skipped = set(), set(), set(), 0, 0
    for r in records:
        src, dob = r["diaSource"], r.get("diaObject") or {}
        oid = dob.get("diaObjectId") or src.get("diaObjectId")
        if not oid:
            skipped += 1
            continue
        objects.add(oid)
        alerts += 1
        lists = [
            ([src, *(r.get("prvDiaSources") or [])], "det"),
            (r.get("prvDiaForcedSources") or [], "forced"),
            (r.get("prvDiaNondetectionLimits") or [], "limit"),
        ]
        for items, kind in lists:
            for p in items:
                t, b = _first(p, "midpointMjdTai", "midPointTai"), _first(p, "band", "filterName")
                f = None if kind == "limit" else _first(p, "psfFlux", "psFlux")
                e = p.get("diaNoise") if kind == "limit" else _first(p, "psfFluxErr", "psFluxErr")
                if (
                    t is None
                    or b is None
                    or e is None
                    or not e > 0
                    or (kind != "limit" and f is None)
                ):
                    continue
                points.add((oid, t, b))
                if kind == "det":
                    dets.add((oid, t, b))
    return len(objects), len(points), len(dets), alerts, skipped


def ztf_counts(records):
    """(objects, points, detections, alerts) of ZTF alert dicts: sets of (object, jd, fid)."""
    objects, points, dets, alerts = set(), set(), set(), set()
    for r in records:
        oid = r.get("objectId") or r.get("alertId")
        objects.add(oid)
        alerts.add(r["candid"])
        for p in [*(r.get("prv_candidates") or []), *(r.get("fp_hists") or []), r["candidate"]]:
            if p.get("magpsf") is None and p.get("forcediffimflux") is not None:
                flux, unc = p["forcediffimflux"], p.get("forcediffimfluxunc")
                if (
                    flux == -99999
                    or unc is None
                    or not unc > 0
                    or str(p.get("procstatus", "0")) != "0"
                ):
                    continue
                points.add((oid, p["jd"], p["fid"]))
                if abs(flux) >= 5 * unc:
                    dets.add((oid, p["jd"], p["fid"]))
                continue
            points.add((oid, p["jd"], p["fid"]))
            if p.get("magpsf") is not None:
                dets.add((oid, p["jd"], p["fid"]))
    return len(objects), len(points), len(dets), len(alerts)


def check(lc, counts):
    n_obj, n_pts, n_det, n_alerts = counts[:4]
    assert (lc.n_objects, lc.n_points, int(lc.detected.sum()), len(lc.alerts)) == (
        n_obj,
        n_pts,
        n_det,
        n_alerts,
    )


# ----------------------------------------------------------------------------------------------
# Rubin Avro
@pytest.mark.parametrize("version", RUBIN_VERSIONS)
def test_rubin_sample_alert_of_every_schema_version(version):
    path = shared(f"{SAMPLES}/lsst_alert_packet/v{version}_fakeAlert.avro")
    assert detect_format(path) == "rubin_avro"
    records = avro_records(path)
    lc = read(path)
    rec = records[0]
    src = rec["diaSource"]
    if abs(_first(src, "midpointMjdTai", "midPointTai")) >= 1e6:
        # the sample alerts of the early schemas carry a time that is no MJD (Unix seconds): the
        # object is dropped, and the reason names the time
        assert lc.n_objects == 0
        (problem,) = lc.problems
        assert (
            problem.object_id == str(rec["diaObject"]["diaObjectId"])
            and "absurd time" in problem.reason
        )
        return
    check(lc, rubin_counts(records))
    assert lc.survey == "LSST" and lc.object_ids.tolist() == [str(rec["diaObject"]["diaObjectId"])]
    assert lc.alerts["alert_id"].tolist() == [str(rec.get("alertId") or rec["diaSourceId"])]
    # nJy -> FLUXCAL at the alert's own detection, band r
    t = _first(src, "midpointMjdTai", "midPointTai")
    own = np.flatnonzero(lc.mjd == t)[-1]
    assert lc.bands[lc.band[own]] == _first(src, "band", "filterName") == "r"
    assert lc.flux[own] == pytest.approx(_first(src, "psfFlux", "psFlux") * NJY_TO_FLUXCAL)
    assert lc.flux_err[own] == pytest.approx(
        _first(src, "psfFluxErr", "psFluxErr") * NJY_TO_FLUXCAL
    )


def test_fink_rubin_data_transfer_avro_and_solar_system_alerts():
    path = shared(f"{SAMPLES}/fink_client/lsst_part-2-918301.avro")
    assert detect_format(path) == "rubin_avro"
    records = avro_records(path)
    counts = rubin_counts(records)
    lc = read(path)
    check(lc, counts)
    assert counts[4] == 2  # two asteroid alerts: skipped, each reported with its ssObjectId
    ss = [p for p in lc.problems if "solar-system object" in p.reason]
    expect = sorted(
        f"ssObjectId={r['diaSource']['ssObjectId']}"
        for r in records
        if not r["diaSource"]["diaObjectId"]
    )
    assert sorted(p.object_id for p in ss) == expect
    # forced photometry is measured signed flux (negative values kept), never a limit
    forced = ~lc.detected
    assert forced.any() and np.isfinite(lc.flux[forced]).all() and (lc.flux[forced] < 0).any()
    # Fink's classifier scores ride along per alert
    assert {"earlySNIa_score", "snnSnVsOthers_score", "cats_score"} <= set(lc.alerts.columns)


def test_elasticc_avro_gz_reads_like_the_elasticc_parquet_convention():
    path = shared(f"{SAMPLES}/fink_client/elasticc_alert_mjd60674.0512_obj747_src1494043.avro.gz")
    assert detect_format(path) == "rubin_avro"
    records = avro_records(path)
    lc = read(path)
    check(lc, rubin_counts(records))
    src = records[0]["diaSource"]
    assert lc.object_ids.tolist() == [str(src["diaObjectId"])]
    last = int(np.argmax(lc.mjd))
    assert lc.bands[lc.band[last]] == "Y" and lc.flux[last] == pytest.approx(
        src["psFlux"] * NJY_TO_FLUXCAL
    )
    assert lc.objects["hostgal_snsep"].iloc[0] == pytest.approx(
        records[0]["diaObject"]["hostgal_snsep"]
    )
    # the same alerts as Fink stores them in Parquet: the ELAsTiCC reader, same counts
    path = shared(f"{SAMPLES}/fink_science/elasticc_parquet_part-00000.parquet")
    assert detect_format(path) == "elasticc_parquet"
    records = parquet_records(
        path, ["alertId", "diaSource", "diaObject", "prvDiaSources", "prvDiaForcedSources"]
    )
    n_obj, n_pts, n_det, _, _ = rubin_counts(records)
    lc = read(path)
    assert (lc.n_objects, lc.n_points, int(lc.detected.sum())) == (n_obj, n_pts, n_det)
    # its 29 test alerts all say alertId 1231321321: each stays an alert, named by its diaSourceId,
    # and it is said
    source_ids = sorted(str(r["diaSource"]["diaSourceId"]) for r in records)
    assert (
        len(records) == len(set(source_ids)) == 29 and sorted(lc.alerts["alert_id"]) == source_ids
    )
    assert any(
        "alertId 1231321321 is shared by alerts of 29 different diaSources" in p.reason
        for p in lc.problems
    )


# ----------------------------------------------------------------------------------------------
# Rubin Parquet
@pytest.mark.parametrize("part", TRANSFER_PARTS)
def test_fink_rubin_transfer_parquet(part):
    path = shared(f"{SAMPLES}/fink_lsst_transfer/part-1-0-{part}.parquet")
    assert detect_format(path) == "rubin_parquet"
    cols = ["diaSource", "diaObject", "prvDiaSources", "prvDiaForcedSources"]
    counts = rubin_counts(parquet_records(path, cols))
    lc = read(path)
    check(lc, counts)
    assert sum("solar-system object" in p.reason for p in lc.problems) == counts[4]


@pytest.mark.parametrize("version", ["7_4", "9_0", "10_0"])
def test_fink_rubin_parquet_schemas_are_rubin_not_elasticc(version):
    path = shared(
        f"{SAMPLES}/fink_broker/rubin_parquet_schema_lsst.v{version}.parquet__part-00000.parquet"
    )
    assert detect_format(path) == "rubin_parquet"
    assert (
        pq.read_metadata(path).num_rows == 0
    )  # Fink's schema samples hold no alert: said so, never an empty table
    with pytest.raises(InputError, match=r"holds no alert \(0 rows\)"):
        read(path)


def test_table_reader_equals_the_records_reader():
    """The vectorised Parquet path against the per-record path on the same alerts (every part,
    merged)."""
    paths = [shared(f"{SAMPLES}/fink_lsst_transfer/part-1-0-{p}.parquet") for p in TRANSFER_PARTS]
    fast = read(paths)
    records = [r for p in paths for r in parquet_records(p)]
    slow = lightcurves_from_records(records, source="records")
    assert fast.n_objects == slow.n_objects > 10
    assert fast.object_ids.tolist() == slow.object_ids.tolist()
    for name in ("offsets", "mjd", "band", "flux", "flux_err", "detected", "alert_id"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
    assert fast.alerts["alert_id"].tolist() == slow.alerts["alert_id"].tolist()
    for c in ("object_index", "mjd", "ra", "dec", "earlySNIa_score", "reliability"):
        np.testing.assert_array_equal(
            fast.alerts[c].to_numpy(np.float64), slow.alerts[c].to_numpy(np.float64), err_msg=c
        )
    ss_fast = sorted(p.object_id for p in fast.problems if "solar-system" in p.reason)
    assert (
        ss_fast == sorted(p.object_id for p in slow.problems if "solar-system" in p.reason)
        and len(ss_fast) > 3
    )


def test_one_bad_alert_or_point_never_loses_the_rest():
    rec = avro_records(shared(f"{SAMPLES}/lsst_alert_packet/v10_0_fakeAlert.avro"))[0]
    ss = {
        **rec,
        "diaObject": None,
        "diaSourceId": 7,
        "diaSource": {**rec["diaSource"], "diaSourceId": 7, "ssObjectId": 42},
    }
    bad_point = {**rec["prvDiaSources"][0], "psfFlux": None}
    odd_band = {**rec["prvDiaSources"][1], "band": "N708"}
    good = {**rec, "prvDiaSources": [bad_point, odd_band]}
    lc = lightcurves_from_records([ss, {"diaObject": {}}, good], source="s")
    assert lc.n_objects == 1 and lc.n_points == 1 and int(lc.detected.sum()) == 1
    reasons = [str(p) for p in lc.problems]
    assert any("object ssObjectId=42" in r and "solar-system object" in r for r in reasons)
    assert any("alert 1: no diaSource" in r for r in reasons)
    assert any("2 detection point(s)" in r and "unknown band(s) ['N708']" in r for r in reasons)
    with pytest.raises(InputError, match="ssObjectId 42"):
        lightcurves_from_records([ss], source="s")


# ---------------------------------------------------------------------------------------------- ZTF
# and Fink ZTF
ZTF_AVRO = sorted(
    [
        "fink_client/ZTF19acihgng.avro",
        "fink_client/ZTF19acxxwrs.avro",
        "fink_client/ZTF19acyfkzd.avro",
        "fink_client/ZTF19acyjzeo.avro",
        "fink_client/ztf_part-3-305711.avro",
    ]
)
ZTF_HISTORY = [
    "v1.1__1726958725155000",
    "v1.1__1726958725155001",
    "v1.1__1726958725155002",
    "v1.7__396522680015020000",
    "v1.7__396522680015025001",
    "v1.8__396522680015040000",
    "v1.8__396522680015040001",
    "v1.8__396522680015040002",
    "v2.0__472263571115090000",
    "v2.0__472263571115095000",
    "v2.0__472263571115095002",
    "v2.0__472263571115095005",
    "v3.0__472263571115115000",
    "v3.0__472263571115115008",
    "v3.0__472263571115115011",
    "v3.0__472263571115115014",
    "v3.1__472263571115115000",
    "v3.1__472263571115115008",
    "v3.1__472263571115115011",
    "v3.1__472263571115115014",
    "v3.2__472263571115115000",
    "v3.5fp__forcedphot_test_1660293514215020000",
    "v3.5fpvar__1661382530015060001",
]


ZTF_PARQUET = [
    "fink_broker/online_raw__part-00000.parquet",
    "fink_broker/online_raw__part-00001.parquet",
    "fink_broker/utest_datasets__part-00000.parquet",
    "fink_science/datatest_part-00002.parquet",
]


def test_every_ztf_sample_reads_with_its_counts():
    """ZTF Avro of every schema (1.1 without objectId: the alert is its own object) and Fink's
    ZTF Parquet."""
    for name in ZTF_AVRO + [f"ztf_avro_history/{n}.avro" for n in ZTF_HISTORY]:
        path = shared(f"{SAMPLES}/{name}")
        assert detect_format(path) == "ztf_avro", name
        records = avro_records(path)
        lc = read(path)
        check(lc, ztf_counts(records))
        if name.startswith("ztf_avro_history/v1.1"):
            assert lc.object_ids.tolist() == [str(records[0]["alertId"])]
    for name in ZTF_PARQUET:
        path = shared(f"{SAMPLES}/{name}")
        assert detect_format(path) == "ztf_alert_parquet", name
        cols = [
            c
            for c in ("objectId", "candid", "candidate", "prv_candidates", "fp_hists")
            if c in pq.read_schema(path).names
        ]
        check(read(path), ztf_counts(parquet_records(path, cols)))


# ----------------------------------------------------------------------------------------------
# detection by content
def test_detection_by_content_not_by_name(tmp_path):
    rubin = tmp_path / "alert.parquet"  # Avro named like Parquet
    shutil.copy(shared(f"{SAMPLES}/lsst_alert_packet/v9_0_fakeAlert.avro"), rubin)
    assert detect_format(rubin) == "rubin_avro" and read(rubin).n_objects == 1
    gz = tmp_path / "elasticc.bin"  # gzip Avro without .gz
    shutil.copy(
        shared(f"{SAMPLES}/fink_client/elasticc_alert_mjd60674.0512_obj747_src1494043.avro.gz"), gz
    )
    assert detect_format(gz) == "rubin_avro"
    pq_as_avro = tmp_path / "transfer.avro"  # Rubin Parquet named like Avro
    shutil.copy(shared(f"{SAMPLES}/fink_lsst_transfer/part-1-0-120932350.parquet"), pq_as_avro)
    assert detect_format(pq_as_avro) == "rubin_parquet"
    ztf = tmp_path / "ztf.parquet"
    shutil.copy(shared(f"{SAMPLES}/ztf_avro_history/v3.2__472263571115115000.avro"), ztf)
    assert detect_format(ztf) == "ztf_avro"
    # a gzip tar of ZTF alerts whose name says nothing about tar
    names = ZTF_HISTORY[3:8]
    night = tmp_path / "night_20240101.bin"
    with tarfile.open(night, "w:gz") as tar:
        for n in names:
            tar.add(shared(f"{SAMPLES}/ztf_avro_history/{n}.avro"), arcname=f"{n}.avro")
    assert detect_format(night) == "ztf_avro"
    lc = read(night)
    records = [
        r for n in names for r in avro_records(shared(f"{SAMPLES}/ztf_avro_history/{n}.avro"))
    ]
    check(lc, ztf_counts(records))


def test_elasticc_parquet_still_elasticc_and_rubin_folder_read_per_file(tmp_path):
    path = shared(
        "elasticc_fink_ia_ii/ftransfer_elasticc_2023-02-08_902820/classId=111/part-0-0.parquet"
    )
    assert detect_format(path) == "elasticc_parquet"
    # a folder of Rubin parts is not an ELAsTiCC folder: its files are read one by one (the schema
    # file skipped)
    folder = shared(f"{SAMPLES}/fink_lsst_transfer")
    lc = read(folder)
    parts = [folder / f"part-1-0-{p}.parquet" for p in TRANSFER_PARTS]
    n_obj, n_pts, n_det, n_alerts, _ = rubin_counts([r for p in parts for r in parquet_records(p)])
    assert (lc.n_objects, lc.n_points, int(lc.detected.sum()), len(lc.alerts)) == (
        n_obj,
        n_pts,
        n_det,
        n_alerts,
    )
    assert not any("metadata" in p.source for p in lc.problems)


def test_read_rubin_parquet_of_a_written_table(tmp_path):
    """Rows written back by pyarrow (no Fink metadata) read the same: detection uses the schema,
    not the writer."""
    src = shared(f"{SAMPLES}/fink_lsst_transfer/part-1-0-124102743.parquet")
    table = pq.read_table(src).drop_columns(["cutoutDifference", "cutoutScience", "cutoutTemplate"])
    out = tmp_path / "x.data"
    pq.write_table(table, out)
    assert detect_format(out) == "rubin_parquet"
    a, b = read_rubin_parquet(src), read(out)
    np.testing.assert_array_equal(a.flux, b.flux)


def test_alerts_sharing_an_alert_id_stay_apart():
    rec = avro_records(shared(f"{SAMPLES}/lsst_alert_packet/v7_4_fakeAlert.avro"))[0]
    # the sample's times are no MJD (Unix seconds): give them one
    rec = {
        **rec,
        "diaSource": {**rec["diaSource"], "midpointMjdTai": 60000.5},
        "prvDiaSources": [
            {**p, "midpointMjdTai": 59990.5 + i}
            for i, p in enumerate(rec.get("prvDiaSources") or [])
        ],
    }
    src = rec["diaSource"]
    later = {
        **rec,
        "diaSource": {**src, "diaSourceId": 99, "midpointMjdTai": src["midpointMjdTai"] + 1},
    }
    lc = lightcurves_from_records(
        [rec, later, rec], source="s"
    )  # the first alert read twice stays one alert
    assert sorted(lc.alerts["alert_id"]) == sorted([str(src["diaSourceId"]), "99"])
    assert 99 in lc.alert_id.tolist() and src["diaSourceId"] in lc.alert_id.tolist()
    assert [p.reason for p in lc.problems] == [
        "alertId 1231321321 is shared by alerts of 2 different diaSources: each of them is "
        "identified by its diaSourceId instead"
    ]


def test_damaged_rubin_avro_keeps_the_alerts_before_the_damage(tmp_path):
    src = shared(f"{SAMPLES}/fink_client/lsst_part-2-918301.avro")
    with open(src, "rb") as fh:
        reader = fastavro.reader(fh)
        schema, records = reader.writer_schema, list(reader)
    whole = tmp_path / "blocks.avro"
    with open(whole, "wb") as fh:  # one alert per block
        fastavro.writer(fh, fastavro.parse_schema(schema), records, sync_interval=1)
    data = whole.read_bytes()
    cut = tmp_path / "cut.avro"
    cut.write_bytes(data[: len(data) * 3 // 4])
    lc = read(cut)
    with open(cut, "rb") as fh:
        complete = []
        try:
            for r in fastavro.reader(fh):
                complete.append(r)
        except (EOFError, ValueError, OSError):
            pass
    assert 0 < len(complete) < len(records)
    check(lc, rubin_counts(complete))
    assert any("damaged after" in p.reason for p in lc.problems)
    cut.write_bytes(data[:200])
    with pytest.raises(InputError, match="cannot read Avro"):
        read(cut)
