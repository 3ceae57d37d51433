"""Alerts as JSON (one alert, a list, JSON Lines, gzip): the same light curves as the Avro they
were decoded from."""

from __future__ import annotations

import base64
import datetime
import gzip
import json

import numpy as np
import pytest

from conftest import shared
from earlyia.errors import FormatError
from earlyia.io import detect_format, read
from test_io_rubin import RUBIN_VERSIONS, SAMPLES, ZTF_HISTORY, avro_records


def _jsonable(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()  # cutouts, as JSON brokers send them
    if isinstance(value, datetime.datetime):
        return value.isoformat()  # Avro timestamps
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _same(a, b):
    assert list(a.object_ids) == list(b.object_ids)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    for col in ("mjd", "band", "flux", "flux_err", "detected"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col), err_msg=col)
    assert a.alerts["alert_id"].tolist() == b.alerts["alert_id"].tolist()
    assert a.survey == b.survey and a.bands == b.bands
    assert [p.reason for p in a.problems] == [p.reason for p in b.problems]


@pytest.mark.parametrize("version", RUBIN_VERSIONS)
def test_rubin_alert_json_reads_like_its_avro(tmp_path, version):
    avro = shared(f"{SAMPLES}/lsst_alert_packet/v{version}_fakeAlert.avro")
    (rec,) = avro_records(avro)
    path = tmp_path / "alert.json"
    path.write_text(json.dumps(_jsonable(rec), indent="\t"))
    assert detect_format(path) == "alert_json"
    _same(read(path), read(avro))


def test_many_alerts_as_list_json_lines_and_gzip(tmp_path):
    avro = shared(f"{SAMPLES}/fink_client/lsst_part-2-918301.avro")
    records = [_jsonable(r) for r in avro_records(avro)]
    expected = read(avro)
    as_list = tmp_path / "alerts.json"
    as_list.write_text(json.dumps(records))
    lines = tmp_path / "alerts.ndjson"
    lines.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    packed = tmp_path / "alerts.bin"  # gzip, and a name that says nothing
    packed.write_bytes(gzip.compress(lines.read_bytes()))
    for path in (as_list, lines, packed):
        assert detect_format(path) == "alert_json", path.name
        got = read(path)
        assert got.n_objects == expected.n_objects and got.n_points == expected.n_points
        np.testing.assert_array_equal(np.sort(got.mjd), np.sort(expected.mjd))


def test_ztf_alert_json_reads_like_its_avro(tmp_path):
    for name in ZTF_HISTORY:
        avro = shared(f"{SAMPLES}/ztf_avro_history/{name}.avro")
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps([_jsonable(r) for r in avro_records(avro)]))
        assert detect_format(path) == "alert_json", name
        _same(read(path), read(avro))


def test_bad_json_names_the_file_and_line(tmp_path):
    avro = shared(f"{SAMPLES}/lsst_alert_packet/v11_0_fakeAlert.avro")
    good = json.dumps(_jsonable(avro_records(avro)[0]))
    broken = tmp_path / "broken.jsonl"
    broken.write_text(good + "\n" + good[:-5] + "\n")
    with pytest.raises(FormatError, match=r"broken\.jsonl.*line 2"):
        read(broken)
    ztf = json.dumps(
        _jsonable(avro_records(shared(f"{SAMPLES}/ztf_avro_history/{ZTF_HISTORY[-1]}.avro"))[0])
    )
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(good + "\n" + ztf + "\n")
    with pytest.raises(FormatError, match="mixes Rubin and ZTF"):
        read(mixed)
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"diaSource": None}, {"foo": 1}]))
    with pytest.raises(FormatError, match=r"other\.json"):
        read(other)
    config = tmp_path / "config.json"  # JSON that is no alert: not taken by this reader
    config.write_text(json.dumps({"topic": "ztf", "servers": "x"}))
    with pytest.raises(FormatError, match="unrecognised format"):
        detect_format(config)


def test_values_that_are_not_alerts_are_reported_and_the_rest_kept(tmp_path):
    avro = shared(f"{SAMPLES}/lsst_alert_packet/v11_0_fakeAlert.avro")
    rec = _jsonable(avro_records(avro)[0])
    path = tmp_path / "alerts.json"
    path.write_text(json.dumps([rec, {"note": "heartbeat"}, 3]))
    lc = read(path)
    assert lc.n_objects == 1
    assert any("2 JSON value(s) are not RUBIN alerts" in p.reason for p in lc.problems)
