"""``earlyia learn``: active-learning experiment (several strategies, many realisations) on a
feature table."""

from __future__ import annotations

import argparse
from pathlib import Path

from earlyia.errors import ConfigError

EPILOG = """examples:
  earlyia features lightcurves.parquet --out features.parquet
  earlyia learn features.parquet --strategy uncertainty --strategy random --loops 300 \\
      --realisations 20 --out runs/exp1
  earlyia learn features.parquet --strategy uncertainty --protocol fink --positive "SN Ia" \\
      --include-subtypes --out runs/fink
  earlyia learn features.parquet --strategy diverse_uncertainty --batch-size 10 --loops 30 \\
      --trees 300 --out runs/batch
  earlyia train features.parquet --from-run runs/exp1/realisations/uncertainty/r000 --out model.eia

Re-running the same command resumes: completed realisations are skipped. Outputs:
metrics.parquet/.csv (per loop and realisation), queried.csv, initial.csv, early_metrics.*,
learning_curves.png, early_metrics.png, summary.md, manifest.json, best_model.eia (see
docs/experiments.md).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "learn",
        help="run an active-learning experiment (strategies x realisations) on a feature table",
        description=(
            "Run active learning on a labelled feature table written by `earlyia features`: "
            "for each strategy, "
            "REALISATIONS independent realisations of LOOPS queries, in parallel processes, "
            "resumable, with the same "
            "seed per realisation for every strategy (paired comparison). Writes per-loop "
            "metrics, queried ids, "
            "models, learning curves and a Markdown summary to --out."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "features", help="feature table (Parquet written by `earlyia features`) with a label column"
    )
    p.add_argument(
        "--strategy",
        dest="strategies",
        action="extend",
        nargs="+",
        metavar="NAME",
        help="query strategy, repeatable (default: uncertainty and random)",
    )
    p.add_argument(
        "--loops", type=int, default=300, help="queries rounds per realisation (default 300)"
    )
    p.add_argument(
        "--realisations", type=int, default=20, help="realisations per strategy (default 20)"
    )
    p.add_argument(
        "--protocol",
        choices=("honest", "fink"),
        default="honest",
        help="honest: split by object, fixed held-out test set (default); fink: Leoni et al. 2022 "
        "(leaky)",
    )
    p.add_argument(
        "--initial", type=int, default=10, help="initial labelled rows, half positive (default 10)"
    )
    p.add_argument("--batch-size", type=int, default=1, help="rows queried per loop (default 1)")
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.5,
        help="share of objects held out (honest protocol; default 0.5)",
    )
    p.add_argument(
        "--trees", type=int, default=1000, help="trees of the forest (default 1000, as Fink)"
    )
    p.add_argument(
        "--positive",
        action="extend",
        nargs="+",
        metavar="TYPE",
        help="type(s) of the positive class (default: 'SN Ia')",
    )
    p.add_argument(
        "--include-subtypes",
        action="store_true",
        help="count SN Ia sub-types (91T, 91bg, pec, CSM, Iax...) as positive",
    )
    p.add_argument("--seed", type=int, default=42, help="experiment seed (default 42)")
    p.add_argument(
        "--gate",
        choices=("none", "rise"),
        default="none",
        help="rise: learn and evaluate only on the alerts the rise gate accepts, the ones a gated "
        "model (recipe lsst) scores",
    )
    p.add_argument("--n-jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument(
        "--out", required=True, help="output folder (created; an interrupted run in it is resumed)"
    )
    p.add_argument(
        "--no-models", action="store_true", help="do not write a model file per realisation"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="if --out holds an experiment with another configuration, delete its results "
        "(default: refuse)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar and no printed table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from earlyia.learn.experiment import run_experiment
    from earlyia.learn.report import format_paired, format_table

    if args.trees < 1:
        raise ConfigError(f"--trees must be >= 1, got {args.trees}")
    res = run_experiment(
        Path(args.features),
        args.strategies or ["uncertainty", "random"],
        n_loops=args.loops,
        n_realisations=args.realisations,
        protocol=args.protocol,
        n_initial=args.initial,
        batch_size=args.batch_size,
        test_fraction=args.test_fraction,
        classifier={"n_estimators": args.trees},
        positive=tuple(args.positive or ["SN Ia"]),
        include_subtypes=args.include_subtypes,
        seed=args.seed,
        out_dir=args.out,
        n_jobs=args.n_jobs,
        save_models=not args.no_models,
        progress=False if args.quiet else None,
        overwrite=args.overwrite,
        gate=args.gate,
    )
    if not args.quiet:
        print(f"{res.manifest['protocol_description']}")
        print(format_table(res.summary))
        if res.paired is not None and len(res.paired):
            print(
                "\nPaired differences at the final loop (same start and test set per "
                "realisation; share of realisations won):"
            )
            print(format_paired(res.paired))
        if res.n_skipped:
            print(f"({res.n_skipped} realisation(s) were already complete and reused)")
        print(
            f"results in {res.out_dir}/ (summary.md, learning_curves.png, metrics.parquet, "
            "manifest.json)"
        )
    return 0
