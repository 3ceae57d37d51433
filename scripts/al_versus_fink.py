"""Active learning: Fink's configuration against earlyia's, on the same data, splits and seeds.

One command builds both feature tables of one data set, runs both experiments with the same seed (so
realisation ``r`` has the same test objects and the same 10 initial labels in both: checked), and
prints the final-loop table, the paired differences and the verdict against the target (with
the same 310 labels: >= +0.10 FoM and >= +0.15 efficiency over Fink's configuration at equal or
better purity).

* Fink's configuration: fink-mode sigmoid features with Fink's placeholders (Fink trains and scores
  them), 1000-tree forest, uncertainty sampling.
* earlyia: the ``early`` extractor (early-epoch features + robust sigmoid), 1000-tree forest,
  uncertainty and random sampling.

Data sets:
  ``ztf``    the 19 778 replayed alerts (detections 3-20) of the 1 444 labelled real ZTF objects,
  one row per
             alert (``../shared/reference/ztf_replay_alerts_with_anchor.parquet``, labels from
             ``objects.csv``);
  ``snpcc``  the SNPCC objects, g and r only, detections = points with S/N > 5, each light curve cut
  at its 20th
             detection (alerts with < 20 detections), one row per object; objects never detected are
             left out (19 950 of 21 319).
``--subset fink-valid`` keeps only the rows where Fink's features exist in both bands (Fink's
production score is non-zero only there; Leoni et al. 2022 learned from such alerts): the comparison
on Fink's home ground.

Results are resumable (``earlyia learn`` folders under ``--work``/runs); feature tables are cached
in ``--work``.

Usage:
    python scripts/al_versus_fink.py --data ztf --protocol honest --realisations 20
    python scripts/al_versus_fink.py --data ztf --protocol fink --realisations 20
    python scripts/al_versus_fink.py --data ztf --protocol honest --subset fink-valid \\
        --realisations 20
    python scripts/al_versus_fink.py --data snpcc --protocol fink --realisations 10
    python scripts/al_versus_fink.py --data ztf \\
        --strategies uncertainty random entropy margin least_confident vote_entropy bald
    python scripts/al_versus_fink.py --data ztf --batch-size 10 --loops 30 \\
        --strategies uncertainty diverse_uncertainty random
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from earlyia.features import get_extractor
from earlyia.features.io import read_features, write_features
from earlyia.learn.experiment import run_experiment

METRICS = ("accuracy", "efficiency", "purity", "fom", "roc_auc")
CONFIGS = {  # name -> (label, default strategies)
    "early": ("earlyia (early + robust sigmoid features)", ("uncertainty", "random")),
    "fink": ("Fink's configuration (fink-mode features)", ("uncertainty",)),
}


def _light_curves(data: str):
    from earlyia.io import datasets

    if data == "ztf":
        return datasets.replay(), "alert"
    lc = datasets.snpcc()
    lc = lc._filter_points(np.isin(lc.band, [lc.band_code("g"), lc.band_code("r")]))
    lc.detected = lc.detected & (lc.flux / lc.flux_err > 5)
    seen = np.bincount(lc.object_of_point()[lc.detected], minlength=lc.n_objects) > 0
    return lc.take(np.flatnonzero(seen)).truncate(
        20
    ), "object"  # an object never detected sends no alert


def feature_tables(data: str, work: Path) -> dict[str, Path]:
    """The two feature tables of ``data`` (built once, then read from ``work``)."""
    paths = {c: work / f"{data}_{c}.parquet" for c in CONFIGS}
    if all(p.exists() for p in paths.values()):
        return paths
    t0 = time.perf_counter()
    lc, per = _light_curves(data)
    for c, path in paths.items():
        ext = get_extractor("sigmoid", mode="fink") if c == "fink" else get_extractor("early")
        df = ext.transform(lc, per=per)
        if "label" not in df.columns:
            df["label"] = df["object_id"].map(lc.objects.set_index("object_id")["label"])
        if c == "fink":
            df["valid"] = True  # Fink trains and scores with its placeholders
        write_features(df, path, ext, survey=lc.survey, bands=lc.bands)
    print(f"feature tables of {data} built in {time.perf_counter() - t0:.0f} s")
    return paths


def fink_valid_subset(paths: dict[str, Path], work: Path, data: str) -> dict[str, Path]:
    """Both tables restricted to the rows where Fink's features exist in g and r."""
    fink, _ = read_features(paths["fink"])
    key = "alert_id" if fink["alert_id"].notna().all() else "object_id"
    keep = set(fink.loc[(fink["a_g"] != 0) & (fink["a_r"] != 0), key].astype(str))
    out = {}
    for c, path in paths.items():
        sub = work / f"{data}_{c}_finkvalid.parquet"
        if not sub.exists():
            df, meta = read_features(path)
            write_features(
                df[df[key].astype(str).isin(keep)].reset_index(drop=True),
                sub,
                meta["extractor"],
                survey=meta.get("survey", ""),
                bands=meta.get("bands", ()),
            )
        out[c] = sub
    return out


def _final(out: Path) -> pd.DataFrame:
    m = pd.read_parquet(out / "metrics.parquet")
    return m[m["loop"] == m["loop"].max()]


def _initial(out: Path, strategy: str) -> pd.DataFrame:
    i = pd.read_csv(out / "initial.csv")
    return i[i["strategy"] == strategy].drop(columns="strategy").reset_index(drop=True)


def report(runs: dict[str, Path], protocol: str, strategies: dict[str, tuple[str, ...]]) -> str:
    """Final-loop table, paired differences and the verdict, in Markdown."""
    # every strategy of one experiment starts realisation r from the same labels: compare the first
    # ones
    if not _initial(runs["early"], strategies["early"][0]).equals(
        _initial(runs["fink"], "uncertainty")
    ):
        raise SystemExit(
            "the two experiments do not share their initial labels: not a paired comparison"
        )
    finals = {c: _final(p) for c, p in runs.items()}
    lines = [
        f"protocol: {protocol}; final loop; mean ± std over realisations",
        "",
        "| configuration | strategy | realisations | labels | " + " | ".join(METRICS) + " |",
        "|---|---|---|---|" + "---|" * len(METRICS),
    ]
    for c, fin in finals.items():
        for s in strategies[c]:
            g = fin[fin["strategy"] == s]
            lines.append(
                f"| {CONFIGS[c][0]} | {s} | {len(g)} | {int(g['n_labels'].iloc[0])} | "
                + " | ".join(f"{g[k].mean():.3f} ± {g[k].std():.3f}" for k in METRICS)
                + " |"
            )
    lines.append("")
    base = finals["fink"][finals["fink"]["strategy"] == "uncertainty"].set_index("realisation")
    verdict = None
    for s in strategies["early"]:
        ours = finals["early"][finals["early"]["strategy"] == s].set_index("realisation")
        idx = ours.index.intersection(base.index)
        d = {k: ours.loc[idx, k] - base.loc[idx, k] for k in ("efficiency", "purity", "fom")}
        lines.append(
            f"* paired, earlyia {s} − Fink's configuration, {len(idx)} realisations: "
            + ", ".join(
                f"{k} {v.mean():+.3f} ± {v.std(ddof=1) / np.sqrt(len(v)):.3f} (s.e.)"
                for k, v in d.items()
            )
        )
        if s == "uncertainty":
            verdict = (
                d["fom"].mean() >= 0.10,
                d["efficiency"].mean() >= 0.15,
                d["purity"].mean() >= 0.0,
            )
    if verdict is not None:
        lines.append(
            "* target (+0.10 FoM, +0.15 efficiency, purity not lower): FoM "
            f"{'met' if verdict[0] else 'NOT met'}, "
            f"efficiency {'met' if verdict[1] else 'NOT met'}, purity "
            f"{'met' if verdict[2] else 'NOT met'}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", choices=("ztf", "snpcc"), default="ztf")
    ap.add_argument("--protocol", choices=("honest", "fink"), default="honest")
    ap.add_argument("--subset", choices=("all", "fink-valid"), default="all")
    ap.add_argument("--realisations", type=int, default=20)
    ap.add_argument("--loops", type=int, default=300)
    ap.add_argument(
        "--batch-size", type=int, default=1, help="queries per loop (both configurations)"
    )
    ap.add_argument(
        "--strategies",
        nargs="+",
        default=list(CONFIGS["early"][1]),
        help="earlyia's strategies (Fink's: uncertainty)",
    )
    ap.add_argument("--trees", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument(
        "--work",
        type=Path,
        default=Path("al-versus-fink"),
        help="feature tables and runs (default ./al-versus-fink)",
    )
    ap.add_argument("--out", type=Path, default=None, help="also write the Markdown report here")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    paths = feature_tables(args.data, args.work)
    tag = args.data
    strategies = {"early": tuple(args.strategies), "fink": CONFIGS["fink"][1]}
    if args.subset == "fink-valid":
        paths = fink_valid_subset(paths, args.work, args.data)
        tag += "_finkvalid"
    n_rows = min(len(read_features(p)[0]) for p in paths.values())
    if n_rows < 2 * (10 + args.loops * args.batch_size):
        raise SystemExit(
            f"{tag}: only {n_rows} rows, too few for {args.loops} loops of {args.batch_size} "
            "and a test set"
        )
    runs = {}
    for c, path in paths.items():
        out = (
            args.work
            / "runs"
            / (
                f"{tag}_{c}_{args.protocol}"
                + (f"_batch{args.batch_size}" if args.batch_size > 1 else "")
            )
        )
        t0 = time.perf_counter()
        run_experiment(
            path,
            strategies[c],
            n_loops=args.loops,
            batch_size=args.batch_size,
            n_realisations=args.realisations,
            protocol=args.protocol,
            classifier={"n_estimators": args.trees},
            seed=args.seed,
            out_dir=out,
            n_jobs=args.n_jobs,
            save_models=args.data == "ztf",
            progress=None,
        )
        print(f"{c}: {out} ({time.perf_counter() - t0:.0f} s)")
        runs[c] = out
    text = f"data: {tag}, {args.loops} loops of {args.batch_size}\n" + report(
        runs, args.protocol, strategies
    )
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
