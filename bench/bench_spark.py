"""Spark scoring throughput: local[1] vs local[2] (or any masters) on replicated real alerts,
against plain local scoring.

    python bench/bench_spark.py [--alerts 20000] [--repeat 3] [--model MODEL] \\
        [--masters local[1] local[2] spark://HOST:PORT]

Alerts are the shared replay file's rows (Fink's ZTF schema), replicated under new object ids up to
``--alerts``. Each configuration runs once to warm up (Python workers start, the model is shipped),
then ``--repeat`` timed runs whose median is printed. The anchor is the same pure scoring function
called in this process without Spark (one core). Without ``--model`` a 100-tree model on Fink's
sigmoid features is trained on the first 300 replay objects. Figures are wall-clock times on the
machine at hand: compare rows of one run, not runs on different machines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from earlyia import spark as sp
from earlyia.data import shared_path


def make_alerts(n_alerts: int, out: Path) -> Path:
    replay = pd.read_parquet(shared_path("ztf_replay_alerts_with_anchor.parquet", reference=True))
    parts, k = [], 0
    while sum(len(p) for p in parts) < n_alerts:
        part = replay.copy()
        part["objectId"] = part["objectId"] + f"_r{k}"
        part["candid"] = part["candid"] + f"_r{k}"
        parts.append(part)
        k += 1
    df = pd.concat(parts, ignore_index=True).iloc[:n_alerts]
    path = out / "alerts.parquet"
    df.to_parquet(path)
    return path


def make_model(out: Path) -> Path:
    from earlyia.features import get_extractor
    from earlyia.io.fink import lightcurves_from_fink_frame
    from earlyia.model.recipe import Recipe
    from earlyia.model.training import train_model

    replay = pd.read_parquet(shared_path("ztf_replay_alerts_with_anchor.parquet", reference=True))
    labels = pd.read_csv(shared_path("ztf_fink_tns_labelled/objects.csv")).set_index("objectId")[
        "tns_type"
    ]
    sub = replay[replay["objectId"].isin(replay["objectId"].unique()[:300])].copy()
    sub["TNS"] = sub["objectId"].map(labels)
    ex = get_extractor("sigmoid", mode="fink")
    feats = ex.transform(lightcurves_from_fink_frame(sub, source="replay"), per="alert")
    path = out / "model.eia"
    train_model(feats, ex.config(), Recipe(n_estimators=100), random_state=0).save(path)
    return path


def time_local(alerts: Path, model_path: Path, repeat: int) -> float:
    from earlyia.io.fink import read_fink_parquet
    from earlyia.model.artifact import Model
    from earlyia.score.pipeline import score_lightcurves

    model = Model.load(model_path)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        score_lightcurves(read_fink_parquet(alerts), model)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def time_spark(
    master: str, alerts: Path, model_path: Path, repeat: int, group_objects: bool = True
) -> tuple[float, float]:
    t0 = time.perf_counter()
    spark = sp.get_session(master, shuffle_partitions=4)
    spark.sparkContext.setLogLevel("ERROR")
    start = time.perf_counter() - t0
    parallel = spark.sparkContext.defaultParallelism
    ref = sp.ship_model(spark, model_path)

    def run() -> None:
        df = sp.with_provenance(spark.read.parquet(str(alerts)))
        scored = sp.score_dataframe(
            df, ref, source=alerts.name, partitions=2 * parallel, group_objects=group_objects
        )
        scored.write.format("noop").mode("overwrite").save()

    run()  # warm-up: Python workers, model broadcast
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    spark.stop()
    return statistics.median(times), start


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--alerts", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model")
    ap.add_argument("--masters", nargs="+", default=["local[1]", "local[2]"])
    args = ap.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    with tempfile.TemporaryDirectory(prefix="earlyia-bench-spark-") as tmp:
        tmp = Path(tmp)
        alerts = make_alerts(args.alerts, tmp)
        model = Path(args.model) if args.model else make_model(tmp)
        print(
            f"{args.alerts} alerts (replicated replay rows), model {model.name}; medians of "
            f"{args.repeat} runs"
        )
        base = time_local(alerts, model, args.repeat)
        print(
            f"{'plain local (no Spark, 1 core)':34s} {base:8.2f} s  "
            f"{args.alerts / base:8.0f} alerts/s  (anchor)"
        )
        results = {}
        for master in args.masters:
            t, start = time_spark(master, alerts, model, args.repeat)
            results[master] = t
            print(
                f"{'Spark ' + master:34s} {t:8.2f} s  {args.alerts / t:8.0f} alerts/s  "
                f"x{base / t:5.2f} vs anchor"
                f"  (session start {start:.1f} s)"
            )
        t, start = time_spark(args.masters[-1], alerts, model, args.repeat, group_objects=False)
        label = f"Spark {args.masters[-1]}, rows not grouped"
        print(
            f"{label:34s} {t:8.2f} s  {args.alerts / t:8.0f} alerts/s  x{base / t:5.2f} vs anchor"
        )
        if "local[1]" in results and "local[2]" in results:
            print(f"speed-up local[2] / local[1]: x{results['local[1]'] / results['local[2]']:.2f}")


if __name__ == "__main__":
    main()
