"""``earlyia convert``: mixed inputs -> one table, summary, problems, exit codes, no half-written
output."""

from __future__ import annotations

import numpy as np

from conftest import shared
from earlyia.cli.main import main
from earlyia.io import read
from earlyia.io.table import LightCurves


def test_convert_mixed_inputs(tmp_path, capsys):
    d = shared("ztf_fink_tns_labelled/objects.csv").parent
    months = sorted(d.glob("fink_cross_tns_2020*.parquet"))[:2]
    junk = tmp_path / "notes.bin"
    junk.write_bytes(b"\x00\x01 nothing we know")
    out = tmp_path / "out" / "table.parquet"
    rc = main(
        ["convert", *map(str, months), str(d / "all_nonIa.csv.gz"), str(junk), "--out", str(out)]
    )
    text = capsys.readouterr().out
    assert rc == 0 and out.exists()
    lc = LightCurves.read_parquet(out)
    direct = read([*months, d / "all_nonIa.csv.gz"])
    assert lc.n_objects == direct.n_objects and lc.n_points == direct.n_points
    assert np.allclose(lc.flux[lc.detected], direct.flux[direct.detected])
    assert len(lc.alerts) == len(direct.alerts)
    assert f"objects {lc.n_objects}" in text and f"alerts {len(lc.alerts)}" in text
    assert "notes.bin" in text and "unrecognised format" in text


def test_convert_nothing_read(tmp_path, capsys):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 this is not parquet PAR1")
    out = tmp_path / "t.parquet"
    rc = main(["convert", str(bad), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert "broken.parquet" in err and "nothing was read" in err
    assert list(tmp_path.iterdir()) == [bad]  # no temporary file left behind


def test_convert_forced_format_and_list(tmp_path, capsys):
    assert main(["convert", "--list-formats"]) == 0
    listed = capsys.readouterr().out
    for name in (
        "ztf_avro",
        "fink_parquet",
        "fink_csv",
        "snana_dat",
        "plasticc_csv",
        "elasticc_parquet",
        "ztf_alert_parquet",
        "earlyia",
    ):
        assert name in listed
    src = shared("fixtures/snpcc_dat/DES_SN008623.DAT")
    out = tmp_path / "one.parquet"
    assert main(["convert", str(src), "--format", "snana_dat", "--out", str(out)]) == 0
    assert LightCurves.read_parquet(out).n_objects == 1
    assert (
        main(["convert", str(src), "--format", "ztf_avro", "--out", str(tmp_path / "x.parquet")])
        == 2
    )


def test_convert_mixed_candid_types(tmp_path):
    """String candids (the replay file) and integer candids (ZTF packets) end up in one column of
    strings."""
    import pandas as pd

    fink = tmp_path / "replay_like.parquet"
    pd.DataFrame(
        {
            "objectId": ["ZTF18abc"],
            "candid": ["ZTF18abc_3"],
            "cjd": [[2459000.5, 2459001.5, 2459002.5]],
            "cmagpsf": [[19.0, 18.9, 18.7]],
            "csigmapsf": [[0.1, 0.1, 0.1]],
            "cfid": [[1, 2, 1]],
        }
    ).to_parquet(fink)
    avro = shared("fixtures/ztf_avro/472263571115115000.avro")
    out = tmp_path / "mixed.parquet"
    assert main(["convert", str(fink), str(avro), "--out", str(out)]) == 0
    lc = LightCurves.read_parquet(out)
    assert sorted(lc.alerts["alert_id"]) == sorted(
        ["ZTF18abc_3", str(read(avro).alerts["alert_id"].iloc[0])]
    )
    assert set(map(type, lc.alerts["candid"].dropna())) == {str}


def test_convert_says_why_when_every_object_was_dropped(tmp_path, capsys):
    """Nothing left after reading: each dropped object and its reason is printed, not only "no
    light curve"."""
    bad = tmp_path / "lightcurves.csv"
    bad.write_text(
        "object_id,mjd,passband,flux,flux_err,detected_bool\n"
        "1,60000.0,9,10.0,1.0,1\n1,60001.0,9,12.0,1.0,1\n2,60000.0,7,10.0,1.0,1\n"
    )
    out = tmp_path / "t.parquet"
    assert main(["convert", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert not out.exists()
    for oid in ("1", "2"):
        assert f"problem: {bad}: object {oid}: unknown band(s)" in err
    assert "every object was dropped (2 problem(s) above)" in err


def test_convert_rubin_alerts_reports_solar_system_alerts(tmp_path, capsys):
    """A Rubin file of only asteroid alerts: nothing to write, and every alert says it is a
    solar-system object."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    src = shared("external_alert_samples/fink_lsst_transfer/part-1-0-209652396.parquet")
    table = pq.read_table(src)
    oid = pc.struct_field(table.column("diaObject"), "diaObjectId")
    ss = table.filter(pc.fill_null(pc.equal(oid, 0), True))
    assert 0 < ss.num_rows < table.num_rows
    path = tmp_path / "asteroids.parquet"
    pq.write_table(ss, path)
    assert main(["convert", str(path), "--out", str(tmp_path / "t.parquet")]) == 2
    err = capsys.readouterr().err
    assert f"no alert with a usable object in {ss.num_rows} alert(s)" in err
    assert err.count("a solar-system object (ssObjectId") == min(ss.num_rows, 3)
