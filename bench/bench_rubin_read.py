"""Rubin alert reading: alerts per second per core, and memory over many alerts.

    python bench/bench_rubin_read.py [--repeats 5] [--alerts 2000] \\
        [--only avro,avro-records,parquet,wire,wire-records]

Inputs are the real Rubin alerts of ``external_alert_samples`` (Fink's Rubin data transfer: the Avro
container and the Parquet parts, ~700 photometry points per alert), replicated ``--alerts`` times
with distinct ``diaObjectId`` and ``diaSourceId`` so that nothing merges, and written once to a
temporary Avro container, a Parquet file and a list of Kafka wire-format messages. For each input it
prints the median over ``--repeats`` of the CPU time (``time.process_time``: all threads of this
process, so alerts/s of CPU is alerts/s per core, robust on a shared machine), and, in a fresh child
process per input, the peak resident memory the read added (``VmHWM`` minus ``VmRSS`` before
reading, from ``/proc/self/status``).

Avro and wire-format messages are read by the compiled columnar walk (the readers' default);
``avro-records`` and ``wire-records`` read the same inputs through fastavro and
``lightcurves_from_records`` (the reference path), and the last column gives each input's speed-up
over its records path, measured in the same run.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fastavro
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from earlyia.data import data_dir

SAMPLES = "external_alert_samples"


def _status(key: str) -> float:
    """A ``/proc/self/status`` memory line in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _shift_ids(rec: dict, k: int) -> dict:
    rec = copy.deepcopy(rec)
    offset = (k + 1) * 10**12
    for name in ("diaObject", "diaSource"):
        if rec.get(name) and rec[name].get("diaObjectId"):
            rec[name]["diaObjectId"] += offset
    if rec.get("diaSourceId"):
        rec["diaSourceId"] += offset
    if rec.get("diaSource") and rec["diaSource"].get("diaSourceId"):
        rec["diaSource"]["diaSourceId"] += offset
    return rec


def make_inputs(folder: Path, n_alerts: int) -> dict[str, Path]:
    """Replicated Avro container, Parquet file and wire-format messages of ``n_alerts`` alerts
    each."""
    with open(data_dir() / SAMPLES / "fink_client" / "lsst_part-2-918301.avro", "rb") as fh:
        reader = fastavro.reader(fh)
        schema = reader.writer_schema
        base = [
            r for r in reader if (r.get("diaObject") or {}).get("diaObjectId")
        ]  # asteroid alerts are skipped
    records = [_shift_ids(base[k % len(base)], k // len(base)) for k in range(n_alerts)]
    for r in records:
        for c in ("cutoutDifference", "cutoutScience", "cutoutTemplate"):
            r[c] = b""
    avro = folder / "rubin.avro"
    with open(avro, "wb") as fh:
        fastavro.writer(fh, fastavro.parse_schema(schema), records, codec="deflate")
    parsed = fastavro.parse_schema(schema)
    wire = folder / "rubin.wire"
    with open(
        wire, "wb"
    ) as fh:  # length-prefixed messages (the bench's own container, not a public format)
        for r in records:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed, r)
            msg = struct.pack(">bI", 0, 1) + buf.getvalue()
            fh.write(struct.pack(">I", len(msg)) + msg)
    (folder / "schema.avsc").write_text(json.dumps(schema))
    parts = sorted((data_dir() / SAMPLES / "fink_lsst_transfer").glob("part-*.parquet"))
    table = pa.concat_tables([pq.read_table(p) for p in parts], promote_options="permissive")
    obj = pc.struct_field(table.column("diaObject").combine_chunks(), "diaObjectId")
    table = table.filter(pc.fill_null(pc.not_equal(obj, 0), False))
    copies, k = [], 0
    while sum(t.num_rows for t in copies) < n_alerts:
        offset = (k + 1) * 10**12
        t = table
        for col in ("diaObject", "diaSource"):
            arr = t.column(col).combine_chunks()
            ids = pc.struct_field(arr, "diaObjectId")
            shifted = pc.if_else(pc.equal(ids, 0), ids, pc.add(ids, offset))
            fields = {
                f.name: (shifted if f.name == "diaObjectId" else pc.struct_field(arr, f.name))
                for f in arr.type
            }
            new = pa.StructArray.from_arrays(
                list(fields.values()), fields=list(arr.type), mask=pc.is_null(arr)
            )
            t = t.set_column(t.column_names.index(col), col, new)
        t = t.set_column(
            t.column_names.index("diaSourceId"),
            "diaSourceId",
            pc.add(t.column("diaSourceId"), offset),
        )
        copies.append(t)
        k += 1
    parquet = folder / "rubin.parquet"
    pq.write_table(pa.concat_tables(copies).slice(0, n_alerts), parquet)
    return {"avro": avro, "parquet": parquet, "wire": wire}


def read_input(kind: str, path: Path):
    from earlyia.io import read, rubin
    from earlyia.io.rubin import lightcurves_from_wire, load_schema

    if kind.endswith("-records"):  # the reference path: fastavro, then the records' reader
        kind = kind.removesuffix("-records")
        rubin._read_avro_columns = lambda *a: None
        rubin._wire_columns = lambda *a, **k: None
    if kind != "wire":
        return read(path)
    data = path.read_bytes()
    messages, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from(">I", data, i)
        messages.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    return lightcurves_from_wire(messages, schema=load_schema(path.parent / "schema.avsc"))


def child(kind: str, path: str) -> None:
    before = _status("VmRSS")
    lc = read_input(kind, Path(path))
    print(f"{len(lc.alerts)} {lc.n_points} {_status('VmHWM') - before:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--alerts", type=int, default=2000)
    ap.add_argument(
        "--only",
        default="avro,avro-records,parquet,wire,wire-records",
        help="inputs to measure (comma-separated)",
    )
    ap.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp), args.alerts)
        print(
            f"{args.alerts} replicated real Rubin alerts per input, median of "
            f"{args.repeats} repeats"
        )
        print(
            f"{'input':13s} {'alerts':>7s} {'points':>9s} {'CPU s':>7s} "
            f"{'alerts/s/core':>14s} {'peak MB':>8s} {'MB/1k alerts':>12s} "
            f"{'x records':>9s}"
        )
        kinds = [k for k in args.only.split(",") if k.removesuffix("-records") in inputs]
        # the records' path last: it replaces the readers' fast path in this process for good
        rows: dict[str, tuple] = {}
        for kind in sorted(kinds, key=lambda k: k.endswith("-records")):
            path = inputs[kind.removesuffix("-records")]
            read_input(kind, path)  # warm-up: compiled kernels, imports
            times = []
            for _ in range(args.repeats):
                t0 = time.process_time()
                lc = read_input(kind, path)
                times.append(time.process_time() - t0)
            out = subprocess.run(
                [sys.executable, __file__, "--child", kind, str(path)],
                capture_output=True,
                text=True,
                check=True,
            )
            n_alerts, _points, mb = out.stdout.split()
            assert int(n_alerts) == len(lc.alerts) == args.alerts, (kind, n_alerts, len(lc.alerts))
            rows[kind] = (len(lc.alerts), lc.n_points, statistics.median(times), float(mb))
        for kind in kinds:
            n, points, cpu, mb = rows[kind]
            ratio = (
                f"{rows[kind + '-records'][2] / cpu:9.1f}"
                if kind + "-records" in rows
                else f"{'':9s}"
            )
            print(
                f"{kind:13s} {n:7d} {points:9d} {cpu:7.2f} {n / cpu:14,.0f} {mb:8.0f} "
                f"{1000 * mb / n:12.1f} {ratio}"
            )


if __name__ == "__main__":
    main()
