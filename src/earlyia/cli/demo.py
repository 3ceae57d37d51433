"""``earlyia demo``: why earlyia exists, on a simulated season, offline, in about a minute (see
:mod:`earlyia.demo`)."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  # writes ./earlyia-demo/index.html (open it in a browser)
  earlyia demo
  earlyia demo --out /tmp/demo --seed 7
  earlyia demo --n-objects 3000 --realisations 40 --trees 300     # bigger: a few minutes

Outputs (see docs/demo.md): index.html with its PNGs, summary.json, early_flagging.csv,
active_learning.csv, heldout_scores.parquet, the two models, and night/ with tonight's scores,
candidates, targets, spectra and the follow-up database.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from earlyia.demo import DemoConfig

    d = DemoConfig()
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on built-in simulated data (offline, ~1 minute)",
        description=(
            "Simulate a ZTF-like season; train the default early model and Fink's "
            "configuration on half of the objects "
            "and compare their early flagging on the other half; compare uncertainty with "
            "random sampling over many "
            "paired realisations; run one night of the follow-up loop (candidates, targets, "
            "spectra, retraining, "
            "promotion); write one HTML report."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out",
        default="earlyia-demo",
        help="output folder (default ./earlyia-demo; a previous demo there is replaced)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help=f"seed of the simulation and of every step (default {d.seed})",
    )
    p.add_argument(
        "--n-objects",
        type=int,
        default=d.n_objects,
        help=f"simulated objects (default {d.n_objects})",
    )
    p.add_argument(
        "--trees",
        type=int,
        default=d.trees,
        help=f"trees of the early model and its retrained candidate (default {d.trees})",
    )
    p.add_argument(
        "--fink-trees",
        type=int,
        default=d.fink_trees,
        help=f"trees of Fink's configuration (default {d.fink_trees})",
    )
    p.add_argument(
        "--augment-copies",
        type=int,
        default=d.augment_copies,
        help=f"augmented copies of each archive light curve (default {d.augment_copies})",
    )
    p.add_argument(
        "--impostors",
        type=int,
        default=d.impostors,
        help=f"generated impostors of each kind (default {d.impostors})",
    )
    p.add_argument(
        "--realisations",
        type=int,
        default=d.al_realisations,
        help=f"paired active-learning realisations per strategy (default {d.al_realisations})",
    )
    p.add_argument(
        "--loops",
        type=int,
        default=d.al_loops,
        help=f"queries per realisation (default {d.al_loops})",
    )
    p.add_argument(
        "--al-trees",
        type=int,
        default=d.al_trees,
        help=f"trees of the active-learning forest (default {d.al_trees})",
    )
    p.add_argument(
        "--targets",
        type=int,
        default=d.targets,
        help=f"follow-up targets tonight, per list (default {d.targets})",
    )
    p.add_argument(
        "--season-days",
        type=float,
        default=d.season_days,
        help=f"days over which the simulated explosions spread (default {d.season_days:g})",
    )
    p.add_argument(
        "--min-purity",
        type=float,
        default=d.min_purity,
        help="purity target of the candidate threshold and of the equal-purity comparison "
        f"(default {d.min_purity:g})",
    )
    p.add_argument(
        "--n-jobs", type=int, default=d.n_jobs, help=f"worker processes (default {d.n_jobs})"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from earlyia.demo import DemoConfig, run_demo

    config = DemoConfig(
        n_objects=args.n_objects,
        seed=args.seed,
        trees=args.trees,
        fink_trees=args.fink_trees,
        augment_copies=args.augment_copies,
        impostors=args.impostors,
        al_realisations=args.realisations,
        al_loops=args.loops,
        al_trees=args.al_trees,
        targets=args.targets,
        season_days=args.season_days,
        min_purity=args.min_purity,
        n_jobs=args.n_jobs,
    )
    defaults = DemoConfig()
    options = {
        "seed": "--seed",
        "n_objects": "--n-objects",
        "trees": "--trees",
        "fink_trees": "--fink-trees",
        "augment_copies": "--augment-copies",
        "impostors": "--impostors",
        "al_realisations": "--realisations",
        "al_loops": "--loops",
        "al_trees": "--al-trees",
        "targets": "--targets",
        "season_days": "--season-days",
        "min_purity": "--min-purity",
    }
    changed = [
        f"{opt} {getattr(config, k)}"
        for k, opt in options.items()
        if getattr(config, k) != getattr(defaults, k)
    ]
    command = " ".join(["earlyia demo", f"--out {args.out}", *changed])
    result = run_demo(args.out, config, say=lambda line: print(line, flush=True), command=command)
    s = result.summary
    print()
    print(f"earlyia vs Fink: {s['early_flagging']['headline']}")
    print(f"active learning: {s['active_learning']['verdict']}")
    rt = s["night"]["retrain"]
    print(
        f"tonight: {s['night']['n_candidates']} TNS candidate(s), "
        f"{s['night']['n_targets_al']} + {s['night']['n_targets_early']} "
        "follow-up targets; retrained model "
        f"{'PROMOTED' if rt['promoted'] else 'kept as candidate'}"
    )
    t = s["timings"]["total"]
    print(
        f"report: {result.report} ({t['wall_s']:.0f} s wall, {t['cpu_s']:.0f} s CPU). "
        f"Reproduce: {command}"
    )
    return 0
