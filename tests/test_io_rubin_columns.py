"""The compiled columnar walk of Rubin alerts (Avro containers, wire-format batches) gives the
very LightCurves of the records' reader (``lightcurves_from_records``, the reference): on every
Rubin / ELAsTiCC Avro sample, and on generated alerts with random nulls, empty histories,
solar-system alerts, shared ids and damaged data."""

from __future__ import annotations

import copy
import functools
import gzip
import io
import json
import re
import struct
from pathlib import Path

import fastavro
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import shared
from earlyia.errors import EarlyIAError
from earlyia.features.lsst_early import LsstEarlyFeatures
from earlyia.io import rubin
from earlyia.io.lsst import read_elasticc
from earlyia.model.recipe import Recipe
from earlyia.model.training import train_model
from earlyia.stream import Decoder, Message, _score_columnar, score_messages
from test_io_rubin import RUBIN_VERSIONS, SAMPLES

SAMPLE_FILES = [f"lsst_alert_packet/v{v}_fakeAlert.avro" for v in RUBIN_VERSIONS] + [
    "fink_client/lsst_part-2-918301.avro",
    "fink_client/elasticc_alert_mjd60674.0512_obj747_src1494043.avro.gz",
]
#: Schemas the generated alerts are written with: Rubin before v8 (alertId, limits, ssObject), v9
#: and v11 (top-level diaSourceId, ssSource), Fink's data transfer (broker scores), ELAsTiCC.
GEN_SCHEMAS = [
    "lsst_alert_packet/v7_4_fakeAlert.avro",
    "lsst_alert_packet/v9_0_fakeAlert.avro",
    "lsst_alert_packet/v11_0_fakeAlert.avro",
    "fink_client/lsst_part-2-918301.avro",
    "fink_client/elasticc_alert_mjd60674.0512_obj747_src1494043.avro.gz",
]


def _open(path: Path):
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def writer_schema(path: Path) -> dict:
    with _open(path) as fh:
        return fastavro.reader(fh).writer_schema


def projected_records(path: Path) -> list[dict]:
    """The records the records' reader is given: decoded with the projected reader schema."""
    with _open(path) as fh:
        reader = fastavro.reader(fh)
        schema = rubin.project_schema(reader.writer_schema)
    with _open(path) as fh:
        return list(fastavro.reader(fh, reader_schema=schema))


def assert_same(a, b) -> None:
    """Same objects, alerts (columns, order, dtypes, values), photometry arrays and problems."""
    pd.testing.assert_frame_equal(a.objects, b.objects, check_exact=True)
    pd.testing.assert_frame_equal(a.alerts, b.alerts, check_exact=True)
    for name in ("offsets", "mjd", "band", "flux", "flux_err", "detected", "alert_id"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert (a.bands, a.survey) == (b.bands, b.survey)

    def problems(lc):
        return [(p.source, p.object_id, _plain(p.reason)) for p in lc.problems]

    assert problems(a) == problems(b)


def _plain(text: str) -> str:
    """A message without the object addresses fastavro's errors quote (``<_io.BytesIO object at
    0x...>``)."""
    return re.sub(r" at 0x[0-9a-f]+", " at 0x", text)


def outcome(fn):
    """The LightCurves, or the error's type and message."""
    try:
        return fn()
    except EarlyIAError as exc:
        return (type(exc).__name__, _plain(str(exc)))


def assert_same_outcome(a, b) -> None:
    if isinstance(a, tuple) or isinstance(b, tuple):
        assert a == b
    else:
        assert_same(a, b)


@pytest.fixture
def columnar_calls(monkeypatch):
    """How many times the columnar assembly produced a result (to check which path was taken)."""
    calls = []
    original = rubin.lightcurves_from_columns

    def spy(*args, **kwargs):
        calls.append(True)
        return original(*args, **kwargs)

    monkeypatch.setattr(rubin, "lightcurves_from_columns", spy)
    return calls


def slow_read(path):
    """read_rubin_avro by the records' reader only."""
    original = rubin._read_avro_columns
    rubin._read_avro_columns = lambda *a: None
    try:
        return rubin.read_rubin_avro(path)
    finally:
        rubin._read_avro_columns = original


def wire_messages(schema: dict, records: list[dict], schema_id: int = 7) -> list[bytes]:
    parsed = fastavro.parse_schema(schema)
    out = []
    for r in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, r)
        out.append(struct.pack(">bI", 0, schema_id) + buf.getvalue())
    return out


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_every_sample_reads_the_same_by_columns_and_by_records(name, columnar_calls):
    path = shared(f"{SAMPLES}/{name}")
    fast = outcome(lambda: rubin.read_rubin_avro(path))
    assert columnar_calls == [True], "the columnar walk was not used"
    reference = outcome(
        lambda: rubin.lightcurves_from_records(projected_records(path), source=str(path))
    )
    assert_same_outcome(fast, reference)
    assert_same_outcome(fast, outcome(lambda: slow_read(path)))
    # the same alerts as Kafka wire-format messages, with a schema file
    with _open(path) as fh:
        reader = fastavro.reader(fh)
        schema, records = reader.writer_schema, list(reader)
    parsed = fastavro.parse_schema(schema)
    columnar_calls.clear()
    fast = outcome(
        lambda: rubin.lightcurves_from_wire(
            wire_messages(schema, records), schema=parsed, source="wire"
        )
    )
    assert columnar_calls == [True]
    decoded = [
        rubin.decode_wire(m, schema=parsed, project=True) for m in wire_messages(schema, records)
    ]
    assert_same_outcome(
        fast, outcome(lambda: rubin.lightcurves_from_records(decoded, source="wire"))
    )


# ----------------------------------------------------------------------------------------------
# generated alerts
_IDS = (0, 0, 1, 2, 3, 5, 8, 13, 2**40 + 1)
_BANDS = ("u", "g", "r", "i", "z", "y") * 3 + ("Y", "q", "")


def random_value(
    schema,
    rng: np.random.Generator,
    named: dict,
    name: str = "",
    p_null: float = 0.2,
    depth: int = 0,
):
    """A random value of ``schema`` (field ``name`` decides plausible values: ids that repeat or
    are 0, bands known or not, times that repeat, errors that are sometimes not positive)."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        if "null" in schema and rng.random() < p_null:
            return None
        branches = [s for s in schema if s != "null"] or ["null"]
        return random_value(
            branches[int(rng.integers(len(branches)))], rng, named, name, p_null, depth
        )
    if isinstance(schema, dict):
        t = schema.get("type")
        if t == "record":
            return {
                f["name"]: random_value(f["type"], rng, named, f["name"], p_null, depth + 1)
                for f in schema["fields"]
            }
        if t == "array":
            n = int(rng.integers(0, 5)) if depth < 2 else 0
            return [
                random_value(schema["items"], rng, named, name, p_null, depth + 1) for _ in range(n)
            ]
        if t == "map":
            return {
                f"k{i}": random_value(schema["values"], rng, named, name, p_null, depth + 1)
                for i in range(int(rng.integers(0, 3)))
            }
        if t == "enum":
            return schema["symbols"][int(rng.integers(len(schema["symbols"])))]
        if t == "fixed":
            return bytes(int(schema["size"]))
        return random_value(t, rng, named, name, p_null, depth)
    lname = name.lower()
    if schema == "null":
        return None
    if schema == "boolean":
        return bool(rng.integers(2))
    if schema in ("int", "long"):
        if lname.endswith("id"):
            return int(_IDS[int(rng.integers(len(_IDS) - (schema == "int")))])
        return int(rng.integers(-3, 1000))
    if schema in ("float", "double"):
        if "mjd" in lname or lname == "midpointtai":
            return 60000.0 + float(rng.integers(0, 6)) * 0.5
        if lname.endswith("err") or lname == "dianoise":
            return float(rng.choice([-1.0, 0.0, np.nan, *([1.5, 20.0, 300.0] * 4)]))
        v = float(rng.normal(0, 1000))
        return float(np.float32(v)) if schema == "float" else v
    if schema == "string":
        if lname in ("band", "filtername"):
            return _BANDS[int(rng.integers(len(_BANDS)))]
        return str(rng.choice(["", "a", "SN Ia", "é"]))
    if schema == "bytes":
        return b"\x00\x01"
    raise ValueError(f"no generator for {schema!r}")


def generated_alerts(schema: dict, rng: np.random.Generator, n: int) -> list[dict]:
    named = rubin.named_types(schema, {})
    p_null = float(rng.choice([0.0, 0.05, 0.3]))
    records = []
    for _ in range(n):
        rec = random_value(schema, rng, named, p_null=p_null)
        if rng.random() < 0.2 and rec.get("diaObject") is not None:
            rec["diaObject"]["diaObjectId"] = 0  # a solar-system alert as Fink writes it
        records.append(rec)
    return records


def write_container(
    path: Path, schema: dict, records: list[dict], codec: str, sync_interval: int
) -> None:
    with open(path, "wb") as fh:
        fastavro.writer(
            fh, fastavro.parse_schema(schema), records, codec=codec, sync_interval=sync_interval
        )


@functools.cache
def gen_schema(which: int) -> dict:
    return writer_schema(shared(f"{SAMPLES}/{GEN_SCHEMAS[which]}"))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    which=st.integers(0, len(GEN_SCHEMAS) - 1),
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 7),
    codec=st.sampled_from(["null", "deflate"]),
    sync_interval=st.sampled_from([1, 4000, 16000]),
)
def test_generated_alerts_read_the_same_by_columns_and_by_records(
    tmp_path_factory, columnar_calls, which, seed, n, codec, sync_interval
):
    rng = np.random.default_rng(seed)
    schema = gen_schema(which)
    records = generated_alerts(schema, rng, n)
    path = tmp_path_factory.mktemp("gen") / "alerts.avro"
    write_container(path, schema, records, codec, sync_interval)
    columnar_calls.clear()
    fast = outcome(lambda: rubin.read_rubin_avro(path))
    assert columnar_calls, "the columnar walk was not used"
    assert_same_outcome(
        fast,
        outcome(lambda: rubin.lightcurves_from_records(projected_records(path), source=str(path))),
    )
    parsed = fastavro.parse_schema(schema)
    messages = wire_messages(schema, records)
    columnar_calls.clear()
    fast = outcome(lambda: rubin.lightcurves_from_wire(messages, schema=parsed, source="wire"))
    assert columnar_calls
    decoded = [rubin.decode_wire(m, schema=parsed, project=True) for m in messages]
    assert_same_outcome(
        fast, outcome(lambda: rubin.lightcurves_from_records(decoded, source="wire"))
    )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    which=st.integers(0, len(GEN_SCHEMAS) - 1),
    seed=st.integers(0, 2**32 - 1),
    codec=st.sampled_from(["null", "deflate"]),
    where=st.floats(0.05, 0.99),
    how=st.sampled_from(["flip", "truncate", "zero"]),
)
def test_damaged_data_gives_what_the_records_reader_gives(
    tmp_path_factory, which, seed, codec, where, how
):
    """A damaged container or message: the same table and problems as the records' reader (the
    walk falls back to it wherever it cannot read exactly), and the alerts before the damage are
    kept."""
    rng = np.random.default_rng(seed)
    schema = gen_schema(which)
    records = generated_alerts(schema, rng, 6)
    path = tmp_path_factory.mktemp("bad") / "alerts.avro"
    write_container(path, schema, records, codec, 1)
    data = bytearray(path.read_bytes())
    at = int(len(data) * where)
    if how == "truncate":
        data = data[:at]
    elif how == "flip":
        data[at] ^= 0xFF
    else:
        data[at : at + 8] = bytes(len(data[at : at + 8]))
    path.write_bytes(bytes(data))
    assert_same_outcome(
        outcome(lambda: rubin.read_rubin_avro(path)), outcome(lambda: slow_read(path))
    )
    # a batch of wire-format messages with one damaged: its problem, and every other alert read
    parsed = fastavro.parse_schema(schema)
    messages = wire_messages(schema, records)
    k = int(rng.integers(len(messages)))
    m = bytearray(messages[k])
    messages[k] = (
        bytes(m[: max(5, int(len(m) * where))])
        if how == "truncate"
        else bytes(m[:5] + b"\xff" * 12 + m[17:])
    )
    fast = outcome(lambda: rubin.lightcurves_from_wire(messages, schema=parsed, source="wire"))
    original = rubin._wire_columns
    rubin._wire_columns = lambda *a, **kw: None
    try:
        slow = outcome(lambda: rubin.lightcurves_from_wire(messages, schema=parsed, source="wire"))
    finally:
        rubin._wire_columns = original
    assert_same_outcome(fast, slow)


def test_a_schema_the_walk_does_not_reproduce_is_read_as_records(tmp_path, columnar_calls):
    """A top-level field of two value types (kept by the records' reader, not by the walk): the
    records' reader."""
    schema = writer_schema(shared(f"{SAMPLES}/lsst_alert_packet/v9_0_fakeAlert.avro"))
    schema = {
        **schema,
        "fields": [
            *schema["fields"],
            {"name": "note", "type": ["null", "long", "string"], "default": None},
        ],
    }
    records = generated_alerts(schema, np.random.default_rng(3), 4)
    path = tmp_path / "a.avro"
    write_container(path, schema, records, "null", 16000)
    assert rubin._compile_rubin(writer_schema(path)) is None
    assert_same_outcome(
        outcome(lambda: rubin.read_rubin_avro(path)), outcome(lambda: slow_read(path))
    )
    assert columnar_calls == []


# ---------------------------------------------------------------------------------------------- the
# stream
ELASTICC = "elasticc_fink_ia_ii/ftransfer_elasticc_2023-02-08_902820"


@pytest.fixture(scope="module")
def lsst_model(tmp_path_factory):
    """A small `lsst`-recipe forest (20 trees) on 40 ELAsTiCC objects per class."""
    lcs = [read_elasticc(shared(f"{ELASTICC}/classId={c}/part-0-0.parquet")) for c in (111, 113)]
    ext = LsstEarlyFeatures()
    df = pd.concat(
        [ext.transform(lc.take(np.arange(40)), per="alert") for lc in lcs], ignore_index=True
    )
    df["label"] = np.where(df["object_id"].isin(set(lcs[0].objects["object_id"])), "SN Ia", "other")
    return train_model(df, ext.config(), Recipe(n_estimators=20), random_state=1)


def _shifted(rec: dict, k: int) -> dict:
    rec = copy.deepcopy(rec)
    offset = (k + 1) * 10**12
    for name in ("diaObject", "diaSource"):
        if rec.get(name) and rec[name].get("diaObjectId"):
            rec[name]["diaObjectId"] += offset
    for holder in (rec, rec.get("diaSource") or {}):
        if holder.get("diaSourceId"):
            holder["diaSourceId"] += offset
    return rec


def test_stream_scores_rubin_messages_like_the_record_path(lsst_model):
    """Rubin messages (Fink's key schema) go through the columnar path, except the solar-system
    alerts and a damaged message, and give the record path's rows."""
    path = shared(f"{SAMPLES}/fink_client/lsst_part-2-918301.avro")
    with open(path, "rb") as fh:
        reader = fastavro.reader(fh)
        schema, records = reader.writer_schema, list(reader)
    records = (
        records + [_shifted(r, k) for k in range(3) for r in records] + [records[0]]
    )  # an object twice: two rounds
    key = json.dumps(schema).encode()
    values = wire_messages(schema, records)
    values = [v[5:] for v in values] + [values[0][5:-9]]  # a truncated one
    no_object = {
        i
        for i, r in enumerate(records)
        if not rubin._valid_id((r.get("diaObject") or {}).get("diaObjectId"))
    }

    def batch():
        return [Message("lsst", 0, i, key, v, 1_700_000_000_000) for i, v in enumerate(values)]

    frames: list[pd.DataFrame] = []
    assert (
        _score_columnar(batch(), lsst_model, None, Decoder(), frames, [])
        == no_object | {len(values) - 1}
        and frames
    )
    fast = score_messages(batch(), lsst_model, Decoder())

    class RecordsOnly(Decoder):
        def program(self, schema):
            return None

    slow = score_messages(batch(), lsst_model, RecordsOnly())
    assert len(fast) == len(slow) >= len(values)
    order = ["kafka_offset", "alert_id", "reason"]
    fast, slow = (
        fast.sort_values(order).reset_index(drop=True),
        slow.sort_values(order).reset_index(drop=True),
    )
    for col in ("alert_id", "object_id", "passed", "reason", "night", "kafka_offset"):
        assert (fast[col] == slow[col]).all(), col
    for col in ("score", "mjd", *lsst_model.features):
        np.testing.assert_array_equal(fast[col].to_numpy(float), slow[col].to_numpy(float))
