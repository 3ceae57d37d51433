"""End-to-end scoring and feature speed and memory: read -> select -> features -> model -> SCORES
Parquet.

Replicates shared ZTF alerts to N alerts in a temporary directory (new object ids and candids per
replica): ``--source pool`` (default) the real alert packets of ``ztf_fink_alerts_pool`` (1 577
alerts with their ``prv_candidates``) into files of 100 000 alerts, objects not sorted (the
regrouping path); ``--source replay`` the replay file (19 778 alerts in Fink's format) into files of
10 000. Then runs ``earlyia.score.score_files`` and ``earlyia.features.io.features_files``
(``--features``) in a child process pinned to one core for each N, and prints (medians of
``--size-repeats`` runs) alerts per second per core and the child's peak RSS (``ru_maxrss`` of the
child's rusage, as ``resource.getrusage`` reports it): memory must stay flat as N grows (chunks, not
the whole input, are in memory).

The anchor, measured in the same run on the same alerts: a Fink-style per-alert path written
from the reference description (pandas nightly averaging and EWM rising test, one scipy
``least_squares`` per band, then a scikit-learn 1000-tree forest on the batch). It is our own
re-implementation for timing only, not Fink's code.

    # 100 000 and 1 000 000 pool alerts, Fink's model
    python bench/bench_score.py
    python bench/bench_score.py --sizes 20000 200000 --model model.eia --chunk-size 50000
    python bench/bench_score.py --sizes 1000000 --tasks score --size-repeats 1 --anchor-alerts 0 \\
        --spark-alerts 0 --core 0
    python bench/bench_score.py --sizes 1000000 --tasks features --size-repeats 1 \\
        --anchor-alerts 0 --spark-alerts 0 --core 1
                                                       # the 1 M-alert memory figures of
                                                       # docs/scoring.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from earlyia.data import reference_dir, shared_path
from earlyia.io.chunks import CHUNK_SIZE
from earlyia.model.artifact import Model
from earlyia.score.pipeline import score_files

REPLAY = "ztf_replay_alerts_with_anchor.parquet"
POOL = "ztf_fink_alerts_pool/ztf_alerts_pool.parquet"


def make_pool_replicas(n_alerts: int, out_dir: Path, rows_per_file: int = 100_000) -> list[Path]:
    """The pool's alerts repeated to ``n_alerts``: replica ``k`` has object ids suffixed ``~k``
    and candids + k * 2**40 (still int64, still unique), in files of ``rows_per_file`` alerts;
    cutouts dropped."""
    table = pq.read_table(shared_path(POOL))
    table = table.select([c for c in table.column_names if not c.startswith("cutout")])
    files, buffer, have, total, k = [], [], 0, 0, 0
    while total < n_alerts:
        t = table.slice(0, min(table.num_rows, n_alerts - total))
        i = t.column_names.index("objectId")
        oid = pc.cast(t.column("objectId"), pa.string())
        t = t.set_column(i, "objectId", pc.binary_join_element_wise(oid, pa.scalar(f"~{k}"), ""))
        for col in ("candid", "cand_candid"):
            if col in t.column_names:
                j = t.column_names.index(col)
                t = t.set_column(
                    j, col, pc.add(t.column(col), pa.scalar(k * 2**40, t.schema.field(col).type))
                )
        buffer.append(t)
        have += t.num_rows
        total += t.num_rows
        k += 1
        if have >= rows_per_file or total >= n_alerts:
            path = out_dir / f"pool{len(files):04d}.parquet"
            pq.write_table(pa.concat_tables(buffer), path)
            files.append(path)
            buffer, have = [], 0
    ids = pa.concat_tables([pq.read_table(f, columns=["candid"]) for f in files]).column(0)
    if len(pc.unique(ids)) != len(ids):
        raise SystemExit("replicated candids collide: choose another offset")
    return files


def make_replicas(
    source: Path, n_alerts: int, out_dir: Path, rows_per_file: int = 10_000
) -> list[Path]:
    """Files of ``rows_per_file`` source rows (taken cyclically) with ids suffixed ``~k``,
    ``n_alerts`` rows in all."""
    table = pq.read_table(source)
    twice = pa.concat_tables([table, table])
    rows_per_file = min(rows_per_file, table.num_rows)
    files, total, k = [], 0, 0
    while total < n_alerts:
        t = twice.slice((k * rows_per_file) % table.num_rows, min(rows_per_file, n_alerts - total))
        for col in ("objectId", "candid"):
            i = t.column_names.index(col)
            t = t.set_column(
                i,
                col,
                pc.binary_join_element_wise(
                    pc.cast(t.column(col), pa.string()), pa.scalar(f"~{k}"), ""
                ),
            )
        path = out_dir / f"replica{k:04d}.parquet"
        pq.write_table(t, path)
        files.append(path)
        total += t.num_rows
        k += 1
    return files


def run_child(
    files: list[Path], model: Path, out: Path, chunk_size: int, core: int, task: str = "score"
) -> dict:
    """Score (or compute features, ``task="features"``) in a child process pinned to one core;
    returns its wall time, CPU time and peak RSS."""
    listing = out.with_suffix(".inputs.json")
    listing.write_text(json.dumps([str(f) for f in files]))
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        NUMBA_NUM_THREADS="1",
    )
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(listing),
        str(model),
        str(out),
        str(chunk_size),
        str(core),
        task,
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    report = json.loads(proc.stdout.read().decode() or "{}")
    proc.stdout.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child failed with status {status}")
    report.update(
        wall_process=wall, cpu=usage.ru_utime + usage.ru_stime, peak_rss_mb=usage.ru_maxrss / 1024
    )
    return report


def child(
    listing: str, model: str, out: str, chunk_size: str, core: str, task: str = "score"
) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(core)})
    files = json.loads(Path(listing).read_text())
    m = Model.load(model)
    if task == "features":
        from earlyia.features import get_extractor
        from earlyia.features.io import features_files

        f = features_files(
            files, get_extractor(m.card["extractor"]), out, chunk_size=int(chunk_size)
        )
        print(
            json.dumps({"rows": f.n_rows, "passed": f.n_valid, "seconds": f.seconds, "chunks": 0})
        )
        return
    s = score_files(files, m, out, chunk_size=int(chunk_size), progress=False)
    print(
        json.dumps(
            {"rows": s.n_rows, "passed": s.n_passed, "seconds": s.seconds, "chunks": s.n_chunks}
        )
    )


# ------------------------------------------------------------------------------------ the anchor
# (timing only)
def _anchor_band(t: np.ndarray, f: np.ndarray, e: np.ndarray) -> list[float]:
    from scipy.optimize import least_squares

    placeholder = [0.0, 0.0, 0.0, 0.1, 1e8, 0.0]
    if len(t) == 0:
        return placeholder
    d = pd.DataFrame({"night": np.round(t), "t": t, "f": f, "e": e}).groupby("night").mean()
    t, f, e = np.round(d["t"].to_numpy()), d["f"].to_numpy(), d["e"].to_numpy()
    keep = f > -10
    t, f, e = t[keep], f[keep], e[keep]
    if len(f) < 4:
        return placeholder
    diff = pd.Series(f).ewm(com=3).mean().diff().to_numpy()[1:]
    if (diff < 0).any():
        return placeholder
    dt = t - t[0]
    c0 = f.max()
    imax, imin = int(np.argmax(f)), int(np.argmin(f))
    a0 = (imax - imin) / (t[imax] - t[imin]) if imax != 0 and t[imax] != t[imin] else 1.0
    b0 = np.log(c0 / f[0] - 1) / a0 if f[0] > 0 and c0 != f[0] and c0 / f[0] > 1 else 1.0

    def sig(p):
        return p[2] / (1 + np.exp(np.clip(-p[0] * (dt - p[1]), -500, 500)))

    res = least_squares(lambda p: np.abs(f - sig(p)), [a0, b0, c0])
    pred = np.round(sig(res.x), 4)
    pred[pred == 0] = 1e-5
    mse = float(np.mean((f / f.sum() - pred / pred.sum()) ** 2))
    return [*res.x.tolist(), float(np.mean(f / e)), mse, float(len(f))]


def anchor_features(df: pd.DataFrame) -> np.ndarray:
    rows = []
    for jd, fid, mag, sig in zip(
        df["cjd"], df["cfid"], df["cmagpsf"], df["csigmapsf"], strict=True
    ):
        jd, fid, mag, sig = (np.asarray(v, np.float64) for v in (jd, fid, mag, sig))
        flux = 10 ** (-0.4 * mag + 11)
        err = 9.21034e10 * np.exp(-0.921034 * mag) * sig
        ok = np.isfinite(mag)
        feats = []
        for b in (1, 2):
            s = ok & (fid == b)
            feats += _anchor_band(jd[s], flux[s], err[s])
        rows.append(feats)
    return np.asarray(rows)


def bench_anchor(
    sample: pd.DataFrame, model: Model, tmp: Path, repeats: int
) -> tuple[float, tuple[float, float]]:
    """(anchor, (ours end to end, ours core)) alerts per CPU-second on the same alerts, medians
    of ``repeats``."""
    from sklearn.ensemble import RandomForestClassifier

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    X = anchor_features(sample.iloc[:200])
    y = np.random.default_rng(0).random(len(X)) < 0.4
    rf = RandomForestClassifier(n_estimators=1000, random_state=42).fit(
        X, y
    )  # the prediction cost of Fink's forest
    from earlyia.io.fink import lightcurves_from_fink_frame
    from earlyia.score.pipeline import score_lightcurves

    anchor, ours, core = [], [], []
    lc = lightcurves_from_fink_frame(sample, source="sample")
    path = tmp / "sample.parquet"
    sample.to_parquet(path)
    score_files(
        [path], model, tmp / "warm.parquet", progress=False
    )  # compile/cache outside the timing
    for _ in range(repeats):  # CPU time of this process: robust to other jobs on the core
        t0 = time.process_time()
        X = anchor_features(sample)
        p = rf.predict_proba(X)[:, 1]
        p[(X[:, 0] == 0) | (X[:, 6] == 0)] = 0.0
        anchor.append(len(sample) / (time.process_time() - t0))
        t0 = time.process_time()
        score_files([path], model, tmp / "sample_scores.parquet", progress=False)
        ours.append(len(sample) / (time.process_time() - t0))
        t0 = time.process_time()
        score_lightcurves(lc, model)
        core.append(len(sample) / (time.process_time() - t0))
    return statistics.median(anchor), (statistics.median(ours), statistics.median(core))


def spark_speedup(n_alerts: int, model_path: Path, tmp: Path, repeats: int) -> None:
    """The same scoring on Spark local[1] and local[2] (bench_spark's timing), printed with the
    speed-up."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        print("\nSpark: pyspark not installed (pip install -e '.[spark]'); speed-up skipped")
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_spark

    alerts = bench_spark.make_alerts(n_alerts, tmp)
    t1, _ = bench_spark.time_spark("local[1]", alerts, model_path, repeats)
    t2, _ = bench_spark.time_spark("local[2]", alerts, model_path, repeats)
    print(
        f"\nSpark, {n_alerts:,} alerts, median of {repeats}: local[1] {t1:.2f} s, local[2] "
        f"{t2:.2f} s, speed-up {t1 / t2:.2f}x"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:8])
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        default=[100_000, 1_000_000],
        help="input sizes (none: anchor only)",
    )
    ap.add_argument(
        "--model", help="model file (default: Fink's production forest via Model.from_fink)"
    )
    ap.add_argument(
        "--chunk-size",
        type=int,
        default=CHUNK_SIZE,
        help=f"rows per chunk (default {CHUNK_SIZE}, as earlyia score)",
    )
    ap.add_argument(
        "--anchor-alerts",
        type=int,
        default=1000,
        help="alerts timed with the anchor path (0: skip)",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--core", type=int, default=0, help="core the scoring child is pinned to")
    ap.add_argument(
        "--spark-alerts",
        type=int,
        default=20_000,
        help="alerts for the Spark local[2]/local[1] speed-up (0: skip)",
    )
    ap.add_argument(
        "--source",
        choices=("pool", "replay"),
        default="pool",
        help="alerts to replicate (default: the pool)",
    )
    ap.add_argument(
        "--features",
        action="store_true",
        help="also time `earlyia features` (the model's extractor) per size",
    )
    ap.add_argument(
        "--tasks",
        nargs="+",
        choices=("score", "features"),
        default=["score"],
        help="what to time per size",
    )
    ap.add_argument(
        "--size-repeats", type=int, default=3, help="runs per size and task (medians printed)"
    )
    args = ap.parse_args()

    source = reference_dir() / REPLAY
    if not source.exists():
        raise SystemExit(f"{source} not found: set EARLYIA_REFERENCE")
    tmp = Path(tempfile.mkdtemp(prefix="earlyia-bench-score-"))
    try:
        if args.model:
            model_path = Path(args.model)
        else:
            model_path = tmp / "fink.eia"
            Model.from_fink(shared_path("anchor_models_fink/default-model_sigmoid.obj.xz")).save(
                model_path
            )
        model = Model.load(model_path)
        ext = model.card["extractor"]
        mode = ext.get("params", {}).get("mode", "")
        print(
            f"model {model_path.name}: {ext.get('extractor')} {mode}, "
            f"{model.card['n_trees']} trees, hash {model.hash[:12]}"
        )
        t0 = time.perf_counter()
        n_max = max(args.sizes, default=0)
        files = (
            make_pool_replicas(n_max, tmp)
            if args.source == "pool"
            else make_replicas(source, n_max, tmp)
        )
        if args.sizes:
            name = POOL if args.source == "pool" else source.name
            print(
                f"replicated {name} to {n_max:,} alerts in {len(files)} files "
                f"({time.perf_counter() - t0:.1f} s)"
            )
            rows_per_file = pq.ParquetFile(files[0]).metadata.num_rows
            # warm the numba caches once so no size pays compilation
            run_child(files[:1], model_path, tmp / "warm.parquet", args.chunk_size, args.core)
            print(
                "\ntask      size        alerts   wall s   cpu s   alerts/s/core (wall)   "
                "alerts/s/cpu-s   peak RSS MB   passed"
            )
        results = []
        tasks = list(dict.fromkeys([*args.tasks, *(["features"] if args.features else [])]))
        for size in sorted(args.sizes):
            n_files = max(1, int(np.ceil(size / rows_per_file)))
            for task in tasks:
                out = tmp / f"{task}_{size}.parquet"
                runs = []
                for _ in range(args.size_repeats):
                    runs.append(
                        run_child(
                            files[:n_files], model_path, out, args.chunk_size, args.core, task
                        )
                    )
                    out.unlink()
                r = {
                    k: statistics.median(run[k] for run in runs)
                    for k in ("seconds", "cpu", "peak_rss_mb")
                }
                r.update(rows=runs[0]["rows"], passed=runs[0]["passed"])
                each = ", ".join(f"{x['peak_rss_mb']:.0f}" for x in runs)
                results.append((task, r))
                print(
                    f"{task:8s} {size:>9,} {r['rows']:>10,} {r['seconds']:8.1f} "
                    f"{r['cpu']:7.1f} {r['rows'] / r['seconds']:>22,.0f} "
                    f"{r['rows'] / r['cpu']:>16,.0f} {r['peak_rss_mb']:>13,.0f} "
                    f"{r['passed']:>8,}   "
                    f"(median of {len(runs)}; peak RSS each: {each} MB)"
                )
        if args.anchor_alerts:
            sample = (
                pd.read_parquet(source)
                .sample(args.anchor_alerts, random_state=0)
                .reset_index(drop=True)
            )
            a, o = bench_anchor(sample, model, tmp, args.repeats)
            for task, r in results:
                rate = r["rows"] / r["cpu"]
                print(
                    f"{task} at {r['rows']:,} alerts: {rate:,.0f} alerts/cpu-s, "
                    f"{rate / a:,.1f}x the anchor"
                )
            print(
                f"\nsame {len(sample)} alerts, one core, alerts per CPU-second (median of "
                f"{args.repeats}):\n"
                "  anchor (Fink-style per-alert pandas/scipy features + sklearn 1000-tree "
                f"forest): {a:,.0f}\n"
                "  ours end to end (read+select+features+score+write, incl. fixed per-call "
                f"costs): {o[0]:,.0f}  ratio {o[0] / a:,.0f}x\n"
                "  ours scoring core on the same features path (select+features+score, in "
                f"memory):  {o[1]:,.0f}  ratio {o[1] / a:,.0f}x"
            )
        if args.spark_alerts:
            spark_speedup(args.spark_alerts, model_path, tmp, args.repeats)
        print("\nmeasured under load (2 cores shared by several jobs): figures are noisy.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
