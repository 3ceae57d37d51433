"""Experiment runner: wall time of realisations in 1 vs 2 worker processes (prints figures and the
ratio).

Run: python bench/bench_experiment.py [--objects 2000 --realisations 4 --loops 100 --trees 100] Uses
the built-in simulation -> early selection -> robust sigmoid features (computed once, not timed).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

from earlyia.features import get_extractor
from earlyia.learn.experiment import run_experiment
from earlyia.select import select_early
from earlyia.sim import simulate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--realisations", type=int, default=4)
    ap.add_argument("--loops", type=int, default=100)
    ap.add_argument("--trees", type=int, default=100)
    args = ap.parse_args()
    lc = simulate(args.objects, random_state=0)
    sel = select_early(lc, per="alert")["passed"].to_numpy(bool)
    lc = dataclasses.replace(lc, alerts=lc.alerts[sel].reset_index(drop=True))
    feats = get_extractor("sigmoid", mode="robust").transform(lc, per="alert")
    print(
        f"{len(feats)} alert rows, {args.realisations} realisations x 2 strategies x "
        f"{args.loops} loops, {args.trees} trees"
    )
    kw = dict(
        n_loops=args.loops,
        n_realisations=args.realisations,
        classifier={"n_estimators": args.trees},
        progress=False,
    )
    with tempfile.TemporaryDirectory() as warm:  # compile the kernels once, outside the timing
        run_experiment(
            feats,
            ["uncertainty"],
            out_dir=warm,
            n_jobs=1,
            **{**kw, "n_realisations": 1, "n_loops": 2},
        )
    walls = {}
    for n_jobs in (1, 2):
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            run_experiment(feats, ["uncertainty", "random"], out_dir=out, n_jobs=n_jobs, **kw)
            walls[n_jobs] = time.perf_counter() - t
        n = 2 * args.realisations
        print(
            f"n_jobs={n_jobs}: {walls[n_jobs]:6.1f} s wall, {walls[n_jobs] / n:5.2f} s per "
            "realisation (incl. writing and plots)"
        )
    print(f"speed-up of 2 workers over 1: {walls[1] / walls[2]:.2f}x")


if __name__ == "__main__":
    main()
