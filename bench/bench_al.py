"""Active-learning loop speed: FastForest (exact incremental) vs the plain scikit-learn loop.

Default run (Fink's configuration): 1000 trees, random_state 42, a 20 000-row pool, uncertainty
sampling, 300 loops of 1 query for the fast loop; the plain loop is RandomForestClassifier refit +
predict every loop. Both in the same process, pinned to one core, BLAS/numba threads 1. Wall and CPU
(process) seconds are both printed: on a shared machine CPU seconds are the fairer figure.

``--compare N``: N >= 10 realisations of both loops (same seeds, hence the same initial rows) in a
smaller setting (``--compare-trees`` 100, ``--compare-pool`` 5 000, ``--compare-loops`` 100) and
the final-loop metric distributions (mean +- std), Mann-Whitney U and KS p-values.

    # speed, synthetic features (medians of --repeats 3)
    python bench/bench_al.py
    python bench/bench_al.py --pool 5000 --trees 200 --loops 100 --repeats 1   # quick check
    python bench/bench_al.py --features f.parquet --label label
    python bench/bench_al.py --compare 10
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def pin_one_core() -> str:
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError) as exc:  # not Linux
        return f"not pinned ({exc})"


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fink-like features: 12 columns, ~25 % positives, graded separability, failed fits as ties.

    Each feature shifts with the class by a different amount (0 to 1.2 sigma), noise is
    correlated, and 30 % of rows carry a fixed "failed fit" value in half the columns (Fink's
    [0, 0, 0, 0.1, 1e8, 0] defaults), which makes many exact ties, as in the real features.
    """
    rng = np.random.default_rng(seed)
    k = 12
    y = rng.random(n) < 0.25
    shift = np.linspace(0.0, 1.2, k)[rng.permutation(k)]
    A = rng.normal(size=(k, k)) * 0.3 + np.eye(k)
    X = rng.normal(size=(n, k)) @ A.T + np.outer(y, shift)
    failed = rng.random(n) < 0.3
    X[failed, :6] = np.array([0.0, 0.0, 0.0, 0.1, 1e8, 0.0])
    return X, y


def load_features(path: str, label: str) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    df = pd.read_parquet(path)
    y = df[label].to_numpy()
    X = df.drop(columns=[label]).select_dtypes("number").to_numpy(np.float64)
    ok = np.isfinite(X).all(axis=1)
    return X[ok], y[ok].astype(bool)


def run(X, y, classifier, n_loops, seed, strategy="uncertainty"):
    from earlyia.learn import run_active_learning

    w0, c0 = time.perf_counter(), time.process_time()
    res = run_active_learning(
        X,
        y,
        strategy=strategy,
        protocol="fink",
        classifier=classifier,
        n_loops=n_loops,
        random_state=seed,
    )
    return res, time.perf_counter() - w0, time.process_time() - c0


def speed(args) -> None:
    from sklearn.ensemble import RandomForestClassifier

    from earlyia.learn import FastForest

    X, y = (
        load_features(args.features, args.label)
        if args.features
        else synthetic(args.pool, args.seed)
    )
    print(
        f"pool {len(X)} rows x {X.shape[1]} features, {y.mean():.1%} positive; {args.trees} trees; "
        f"strategy {args.strategy}; {args.loops} loops; medians over {args.repeats} repeats; "
        "load average "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    t = time.perf_counter()
    run(X[:300], y[:300], FastForest(n_estimators=5), 2, 0)  # numba compile / cache load, not timed
    print(f"warm-up (numba compile or cache load): {time.perf_counter() - t:.1f} s")

    fw_all, fc_all = [], []
    for _ in range(args.repeats):
        fast, fw, fc = run(
            X,
            y,
            FastForest(n_estimators=args.trees, random_state=42),
            args.loops,
            args.seed,
            args.strategy,
        )
        fw_all.append(fw)
        fc_all.append(fc)
    fw, fc = float(np.median(fw_all)), float(np.median(fc_all))
    per = fast.metrics["seconds"].to_numpy()
    print(
        f"fast loop: {args.loops} loops in {fw:.1f} s wall, {fc:.1f} s CPU (median; CPU per repeat "
        f"{', '.join(f'{c:.1f}' for c in fc_all)}); per loop median "
        f"{np.median(per[1:]) * 1e3:.0f} ms "
        f"(first {per[1] * 1e3:.0f} ms, last {per[-1] * 1e3:.0f} ms); final FoM "
        f"{fast.final()['fom']:.3f}"
    )
    st = fast.classifier.stats_ / max(args.loops, 1)
    print(
        f"  per query: {st[0]:.0f} trees touched, {st[3]:.0f} subtrees rebuilt ({st[8]:.0f} "
        f"at leaves, {st[6]:.0f} keeping "
        f"their feature), {st[4]:.0f} training rows regrown, {st[5]:.0f} scored rows under "
        "rebuilt subtrees"
    )

    if args.breakdown:
        breakdown(X, y, fast, args.trees, fc)

    plain, pw, pc = run(
        X,
        y,
        RandomForestClassifier(n_estimators=args.trees, random_state=42, n_jobs=1),
        args.plain_loops,
        args.seed,
        args.strategy,
    )
    pper = plain.metrics["seconds"].to_numpy()
    print(
        f"plain loop (real run, first {args.plain_loops} loops, 10-{10 + args.plain_loops} "
        f"labels): {pw:.1f} s wall, "
        f"{pc:.1f} s CPU; per loop median {np.median(pper):.2f} s wall, mean "
        f"{pc / (args.plain_loops + 1):.2f} s CPU"
    )
    # A loop costs more as the training set grows (deeper trees): time one plain loop step (fit on n
    # labelled rows + predict every other row) at several n (median over repeats) and integrate over
    # the loops. The plain loop's metrics and strategy are not counted: the ratio is conservative.
    sizes = np.linspace(10, 10 + args.loops, 4).astype(int)
    wall, cpu = [], []
    rng = np.random.default_rng(args.seed)
    for n_lab in sizes:
        idx = rng.choice(len(X), n_lab, replace=False)
        rest = np.setdiff1d(np.arange(len(X)), idx)
        ws, cs = [], []
        for _ in range(args.repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            rf = RandomForestClassifier(n_estimators=args.trees, random_state=42, n_jobs=1).fit(
                X[idx], y[idx]
            )
            rf.predict_proba(X[rest])
            ws.append(time.perf_counter() - w0)
            cs.append(time.process_time() - c0)
        wall.append(float(np.median(ws)))
        cpu.append(float(np.median(cs)))
    loops = np.arange(10, 10 + args.loops + 1)
    total_wall = float(np.interp(loops, sizes, wall).sum())
    total_cpu = float(np.interp(loops, sizes, cpu).sum())
    steps = ", ".join(f"{n}: {w:.2f}/{c:.2f}" for n, w, c in zip(sizes, wall, cpu, strict=True))
    print(f"plain loop step (fit + predict) at n labels (s wall/CPU, medians): {steps}")
    print(
        f"plain loop, {args.loops} loops integrated: ~{total_wall:.0f} s wall, "
        f"~{total_cpu:.0f} s CPU"
    )
    print(
        f"ratio (plain / fast, same run, medians): wall {total_wall / fw:.1f}x, CPU "
        f"{total_cpu / fc:.1f}x"
    )
    n = min(len(fast.queried), len(plain.queried))
    same = sum(
        np.array_equal(a, b) for a, b in zip(fast.queried[:n], plain.queried[:n], strict=True)
    )
    print(
        "(the two loops use different forests, so their queries differ after a while: "
        f"{same}/{n} identical)"
    )


def breakdown(X, y, fast, n_trees: int, loop_cpu: float) -> None:
    """Replay the fast loop's queries through FastForest.add_sample, without then with registered
    rows: CPU of the tree updates, of the prediction updates, and of the loop around them."""
    from earlyia.learn import FastForest

    keys = np.concatenate(fast.queried)
    cpu = {}
    for scored in (False, True):
        ff = FastForest(n_estimators=n_trees, random_state=42).fit(
            X[fast.initial], y[fast.initial], sample_keys=fast.initial
        )
        if scored:
            ff.register_scored(X)
        c0 = time.process_time()
        for k in keys:
            ff.add_sample(k, X[k], y[k])
        cpu[scored] = time.process_time() - c0
    print(
        f"  breakdown (replay of the same queries, CPU): tree updates {cpu[False]:.1f} s, "
        "prediction updates "
        f"{cpu[True] - cpu[False]:.1f} s, loop around them (metrics, strategy, copies) "
        f"{loop_cpu - cpu[True]:.1f} s"
    )


def compare(args) -> None:
    from scipy.stats import ks_2samp, mannwhitneyu
    from sklearn.ensemble import RandomForestClassifier

    from earlyia.learn import FastForest

    X, y = (
        load_features(args.features, args.label)
        if args.features
        else synthetic(args.compare_pool, args.seed)
    )
    print(
        f"{args.compare} realisations x 2 loops: {len(X)} rows, {args.compare_trees} trees, "
        f"{args.compare_loops} loops, "
        f"strategy {args.strategy}"
    )
    cols = ["accuracy", "efficiency", "purity", "fom", "roc_auc"]
    out = {"fast": [], "plain": []}
    secs = {"fast": 0.0, "plain": 0.0}
    for r in range(args.compare):
        for name, clf in (
            ("fast", FastForest(n_estimators=args.compare_trees, random_state=42)),
            (
                "plain",
                RandomForestClassifier(n_estimators=args.compare_trees, random_state=42, n_jobs=1),
            ),
        ):
            res, _, c = run(X, y, clf, args.compare_loops, 1000 + r, args.strategy)
            out[name].append([res.final()[k] for k in cols])
            secs[name] += c
        print(f"  realisation {r + 1}/{args.compare} done", flush=True)
    a, b = np.array(out["fast"]), np.array(out["plain"])
    print(
        f"{'metric':<11} {'fast mean +- std':>20} {'plain mean +- std':>20} "
        f"{'Mann-Whitney p':>15} {'KS p':>8}"
    )
    for j, k in enumerate(cols):
        mw = mannwhitneyu(a[:, j], b[:, j]).pvalue
        ks = ks_2samp(a[:, j], b[:, j]).pvalue
        print(
            f"{k:<11} {a[:, j].mean():>11.4f} +- {a[:, j].std(ddof=1):.4f} "
            f"{b[:, j].mean():>11.4f} +- {b[:, j].std(ddof=1):.4f} "
            f"{mw:>15.3f} {ks:>8.3f}"
        )
    print(
        f"CPU seconds per realisation: fast {secs['fast'] / args.compare:.1f}, plain "
        f"{secs['plain'] / args.compare:.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--features", help="parquet of numeric features plus a label column (default: synthetic)"
    )
    ap.add_argument("--label", default="label", help="label column of --features (bool or 0/1)")
    ap.add_argument("--pool", type=int, default=20_000)
    ap.add_argument("--trees", type=int, default=1000)
    ap.add_argument("--loops", type=int, default=300)
    ap.add_argument("--plain-loops", type=int, default=5)
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="speed: also replay the queries to split the fast loop's CPU",
    )
    ap.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="speed: repeats of the fast loop and of each timed plain step (medians)",
    )
    ap.add_argument("--strategy", default="uncertainty")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--compare",
        type=int,
        default=0,
        help="number of realisations for the statistical comparison",
    )
    ap.add_argument("--compare-trees", type=int, default=100)
    ap.add_argument("--compare-pool", type=int, default=5000)
    ap.add_argument("--compare-loops", type=int, default=100)
    args = ap.parse_args()
    print(pin_one_core())
    if args.compare:
        compare(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
