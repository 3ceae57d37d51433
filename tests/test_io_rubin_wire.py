"""Rubin's Kafka wire format (magic byte 0, 4-byte big-endian schema id, schemaless Avro) decoded
with schemas from a real schema-registry HTTP server on 127.0.0.1, or from a schema file."""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fastavro
import numpy as np
import pytest

from conftest import shared
from earlyia.errors import ConfigError, FormatError, RemoteError
from earlyia.io.rubin import (
    SchemaRegistry,
    decode_wire,
    lightcurves_from_wire,
    load_schema,
    read_rubin_avro,
    split_wire,
)

SAMPLES = "external_alert_samples"
USER, PASSWORD = "reader", "s3cret-pw"


def sample(path):
    with open(path, "rb") as fh:
        reader = fastavro.reader(fh)
        return reader.writer_schema, list(reader)


def wire(schema_id: int, schema: dict, record: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return struct.pack(">bI", 0, schema_id) + buf.getvalue()


@pytest.fixture
def registry_server():
    """A Confluent-style registry: GET /schemas/ids/<id> -> {"schema": "<json>"}; basic auth
    required; counts requests."""
    schemas: dict[int, dict] = {}
    hits: list[str] = []
    token = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            if self.headers.get("Authorization") != token:
                self.send_response(401)
                self.end_headers()
                return
            try:
                sid = int(self.path.rsplit("/", 1)[1])
            except ValueError:
                sid = -1
            if not self.path.startswith("/schemas/ids/") or sid not in schemas:
                body = json.dumps({"error_code": 40403, "message": "Schema not found"}).encode()
                self.send_response(404)
            else:
                body = json.dumps({"schema": json.dumps(schemas[sid])}).encode()
                self.send_response(200)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://{USER}:{PASSWORD}@127.0.0.1:{server.server_address[1]}"
    yield url, schemas, hits
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_wire_messages_through_a_schema_registry_equal_the_avro_file(registry_server):
    url, schemas, hits = registry_server
    path = shared(f"{SAMPLES}/fink_client/lsst_part-2-918301.avro")
    schema, records = sample(path)
    v74_schema, v74 = sample(shared(f"{SAMPLES}/lsst_alert_packet/v7_4_fakeAlert.avro"))
    # the v7.4 sample's times are Unix seconds, no MJD: give its alert plausible ones so that it is
    # read
    src = v74[0]["diaSource"]
    v74 = [
        {
            **v74[0],
            "diaSource": {**src, "midpointMjdTai": 60000.5},
            "prvDiaSources": [
                {**s, "midpointMjdTai": 59990.5 + i}
                for i, s in enumerate(v74[0].get("prvDiaSources") or [])
            ],
        }
    ]
    schemas[703] = schema
    schemas[704] = v74_schema
    messages = [wire(703, schema, r) for r in records]
    reg = SchemaRegistry(url)
    lc = lightcurves_from_wire(messages, registry=reg, source="topic")
    ref = read_rubin_avro(path)
    assert lc.object_ids.tolist() == ref.object_ids.tolist() and lc.n_objects == 5
    for name in ("offsets", "mjd", "band", "flux", "flux_err", "detected", "alert_id"):
        np.testing.assert_array_equal(getattr(lc, name), getattr(ref, name), err_msg=name)
    assert hits == ["/schemas/ids/703"]  # fetched once, then cached
    # one batch may mix schema versions; a bad message is reported and the rest read
    bad_magic = b"\x01" + messages[0][1:]
    truncated = messages[1][:40]
    mixed = lightcurves_from_wire(
        [wire(704, v74_schema, v74[0]), bad_magic, *messages, truncated],
        registry=reg,
        source="topic",
    )
    assert mixed.n_objects == 6 and hits == ["/schemas/ids/703", "/schemas/ids/704"]
    reasons = [p.reason for p in mixed.problems]
    assert any(r.startswith("message 1: ") and "first byte 1, expected 0" in r for r in reasons)
    assert any(
        r.startswith(f"message {len(messages) + 2}: ") and "does not decode" in r for r in reasons
    )


def test_wire_with_a_schema_file_and_registry_errors(registry_server, tmp_path):
    url, _, _ = registry_server
    schema, records = sample(shared(f"{SAMPLES}/lsst_alert_packet/v10_0_fakeAlert.avro"))
    avsc = tmp_path / "lsst.v10_0.alert.avsc"
    avsc.write_text(json.dumps(schema))
    msg = wire(5, schema, records[0])
    rec = decode_wire(msg, schema=load_schema(avsc))
    assert rec["diaSource"]["diaSourceId"] == records[0]["diaSource"]["diaSourceId"]
    assert split_wire(msg)[0] == 5
    with pytest.raises(FormatError, match="at least 5"):
        split_wire(b"\x00\x00")
    with pytest.raises(ConfigError, match="needs a schema"):
        decode_wire(msg)
    # unknown id, wrong password, nobody listening: clear errors, never the password
    with pytest.raises(RemoteError, match="schema id 5: HTTP 404") as err:
        decode_wire(msg, registry=SchemaRegistry(url))
    assert PASSWORD not in str(err.value) and "127.0.0.1" in str(err.value)
    with pytest.raises(RemoteError, match="HTTP 401") as err:
        SchemaRegistry(url.replace(PASSWORD, "wrong")).schema(5)
    assert "wrong" not in str(err.value)
    with pytest.raises(RemoteError, match="unreachable") as err:
        SchemaRegistry(f"http://{USER}:{PASSWORD}@127.0.0.1:9/", timeout=2).schema(1)
    assert PASSWORD not in str(err.value)
    with pytest.raises(ConfigError, match="http"):
        SchemaRegistry("ftp://127.0.0.1/x")
    bad = tmp_path / "bad.avsc"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.avsc"):
        load_schema(bad)


def test_convert_wire_messages_with_registry_or_schema_file(registry_server, tmp_path, capsys):
    from earlyia.cli.main import main
    from earlyia.io.table import LightCurves

    url, schemas, _ = registry_server
    path = shared(f"{SAMPLES}/fink_client/lsst_part-2-918301.avro")
    schema, records = sample(path)
    schemas[9] = schema
    files = []
    for k, r in enumerate(records):
        f = tmp_path / f"msg-{k}.bin"
        f.write_bytes(wire(9, schema, r))
        files.append(str(f))
    junk = tmp_path / "msg-junk.bin"
    junk.write_bytes(b"Obj\x01 not a message")
    out = tmp_path / "rubin.parquet"
    assert main(["convert", *files, str(junk), "--schema-registry", url, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    lc, ref = LightCurves.read_parquet(out), read_rubin_avro(path)
    assert lc.object_ids.tolist() == ref.object_ids.tolist()
    np.testing.assert_array_equal(lc.flux, ref.flux)
    assert f"{junk}: not a wire-format message: first byte 79" in text and PASSWORD not in text
    avsc = tmp_path / "schema.avsc"
    avsc.write_text(json.dumps(schema))
    assert (
        main(["convert", *files, "--schema", str(avsc), "--out", str(tmp_path / "b.parquet")]) == 0
    )
    assert LightCurves.read_parquet(tmp_path / "b.parquet").n_points == ref.n_points
    # a registry that does not know the id: exit 2, one line, no password
    schemas.clear()
    assert (
        main(["convert", *files, "--schema-registry", url, "--out", str(tmp_path / "c.parquet")])
        == 2
    )
    err = capsys.readouterr().err
    assert "schema id 9: HTTP 404" in err and PASSWORD not in err and "Traceback" not in err
