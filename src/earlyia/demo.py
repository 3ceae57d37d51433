"""The demo: why earlyia exists, shown on one simulated season in about a minute, offline.

:func:`run_demo` simulates a seeded ZTF-like season (:func:`earlyia.sim.ztf.simulate`) and splits
its objects in two halves: an archive with spectroscopic labels, and objects held out. Then, each
step printing its progress:

1. **Early flagging, earlyia against Fink's configuration.** The default early model (the ``early``
   recipe of :func:`earlyia.model.training.train_recipe`: stream-robust early features, augmented
   replays, generated impostors, calibration by evidence) and Fink's configuration (Fink's sigmoid
   features on the alerts that pass Fink's cuts, a forest with Fink's settings: the ``fink`` recipe)
   learn from the archive; every held-out object is replayed alert by alert and scored as ``earlyia
   score`` would, and the replay protocol (:mod:`earlyia.evaluate`) gives efficiency and purity
   within N detections at 0.5 (Fink's rule) for both, at earlyia's card threshold (purity
   ``min_purity`` within 20 detections, chosen on the archive only), and at equal purity on both
   curves.
2. **Active learning against random sampling**, on the early features of every replayed alert,
   honest protocol (objects split into a query pool and a test half), many paired realisations
   (:func:`earlyia.learn.experiment.run_experiment`, in parallel): the final-loop FoM difference per
   realisation, its mean with a 95 % confidence interval and a sign test, and a verdict that says
   whether the difference is real.
3. **One night of the live loop**: the busiest night of the season among the held-out objects is
   scored, tonight's TNS candidates are chosen
   (:func:`earlyia.report.candidates.select_candidates`), the follow-up targets are chosen
   (:func:`earlyia.followup.targets.select`) in a follow-up database inside the output folder, the
   "spectra" (the simulated true types of the targets) are ingested as labels, a candidate model is
   retrained and the promotion rule decides (:func:`earlyia.followup.retrain.retrain`) on the
   held-out objects nobody labelled.
4. **One HTML report**, ``index.html`` with its PNGs in the output folder (every string escaped),
   and ``summary.json`` with every number the report shows.

Sizes (:class:`DemoConfig`) are smaller than production's (fewer trees, one augmented copy, fewer
impostors) so that the whole demo runs in about a minute on two cores; the report says which.
Same seed, same numbers.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from earlyia import __version__
from earlyia.errors import ConfigError, ModelError
from earlyia.evaluate import evaluate_early
from earlyia.features import get_extractor
from earlyia.followup.config import Constraints, EarlyList
from earlyia.followup.db import FollowupDB
from earlyia.followup.ingest import ingest_labels, read_label_csv
from earlyia.followup.model_registry import register
from earlyia.followup.promotion import PromotionRule
from earlyia.followup.retrain import retrain
from earlyia.followup.targets import select
from earlyia.io.spreadsheet import write_csv_for_people
from earlyia.io.table import atomic_write
from earlyia.learn.experiment import run_experiment
from earlyia.model.artifact import fink_extractor_config
from earlyia.model.recipe import RECIPES
from earlyia.model.training import train_recipe
from earlyia.report.candidates import CandidateRule, select_candidates
from earlyia.score.pipeline import score_lightcurves, scores_metadata
from earlyia.score.scores_file import ScoresWriter
from earlyia.select import select_early
from earlyia.sim import simulate
from earlyia.sim.ztf import load_params

#: Thresholds reported per number of detections in the tables (the figure shows every N).
TABLE_DETECTIONS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20)
#: Detections of the early model's operating point (the card threshold the candidates use) and of
#: the comparisons.
TARGET_DETECTIONS = 20
#: Files :func:`run_demo` writes at the top of the output folder (a re-run replaces them).
REPORT_FILES = (
    "index.html",
    "summary.json",
    "early_flagging.png",
    "early_flagging.csv",
    "active_learning.png",
    "active_learning.csv",
    "night.png",
    "heldout_scores.parquet",
    "lightcurves.parquet",
    "split.csv",
    "earlyia_model.eia",
    "earlyia_training_rows.parquet",
    "fink_model.eia",
)
#: Sub-folders :func:`run_demo` owns in the output folder.
REPORT_DIRS = ("active_learning", "night")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and seed of the demo. The defaults run in about a minute on two cores (see
    ``docs/demo.md``)."""

    n_objects: int = 1200
    seed: int = 42
    #: trees of the early model and of its retrained candidate (production: 300)
    trees: int = 100
    #: trees of Fink's configuration (Fink: 1000)
    fink_trees: int = 100
    #: augmented copies of every archive light curve (production: 2)
    augment_copies: int = 1
    #: generated impostors of each kind (production: 100)
    impostors: int = 40
    #: folds of the held-out calibration (production: 5)
    cv_folds: int = 3
    al_realisations: int = 20
    al_loops: int = 100
    al_trees: int = 50
    al_initial: int = 10
    #: follow-up targets chosen tonight (active-learning list; the early list is as long)
    targets: int = 15
    #: days over which the objects' explosions spread (the simulator's default is a 360-day year; a
    #: shorter season makes a night as busy as ZTF's young-transient nights)
    season_days: float = 90.0
    #: purity target of the card threshold (candidates) and of the equal-purity comparison
    #: (production: 0.8)
    min_purity: float = 0.7
    n_jobs: int = 2

    def check(self) -> None:
        if self.n_objects < 200:
            raise ConfigError(
                f"n_objects must be >= 200 for a meaningful demo, got {self.n_objects}"
            )
        for name in ("trees", "fink_trees", "al_realisations", "al_trees", "targets", "n_jobs"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.al_loops < 1 or self.augment_copies < 0 or self.impostors < 0:
            raise ConfigError("al-loops must be >= 1, augment-copies and impostors >= 0")
        if self.cv_folds < 2:
            raise ConfigError(
                f"cv-folds must be >= 2 (the calibration needs held-out folds), got {self.cv_folds}"
            )
        if not 1.0 <= self.season_days <= 3650.0:
            raise ConfigError(f"season-days must be between 1 and 3650, got {self.season_days}")
        if not 0.0 < self.min_purity < 1.0:
            raise ConfigError(f"min-purity must be strictly between 0 and 1, got {self.min_purity}")
        if self.al_initial < 2:
            raise ConfigError(f"al-initial must be >= 2, got {self.al_initial}")


@dataclass
class DemoResult:
    """What :func:`run_demo` wrote (``out``) and the numbers of its report (``summary``, also in
    ``summary.json``)."""

    out: Path
    summary: dict
    early_flagging: pd.DataFrame
    active_learning: pd.DataFrame
    timings: dict = field(default_factory=dict)

    @property
    def report(self) -> Path:
        return self.out / "index.html"


Say = Callable[[str], None]


# ============================================================================ small helpers
def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(_jsonable(obj), indent=1, sort_keys=True, allow_nan=False)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def _save_png(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


class _Clock:
    """Wall and CPU seconds per step (CPU of this process and of its finished children)."""

    def __init__(self) -> None:
        self.steps: dict[str, dict[str, float]] = {}
        self._t = time.perf_counter()
        self._c = self._cpu()

    @staticmethod
    def _cpu() -> float:
        import resource

        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def lap(self, name: str) -> str:
        t, c = time.perf_counter(), self._cpu()
        self.steps[name] = {"wall_s": round(t - self._t, 2), "cpu_s": round(c - self._c, 2)}
        self._t, self._c = t, c
        return f"[{self.steps[name]['wall_s']:.1f} s]"


# ============================================================================ 1. season and models
def simulate_season(config: DemoConfig):
    """The season's light curves and the seeded split of its objects: ``(lc, archive_index,
    held_out_index)``."""
    params = load_params()
    start = float(params["assumed"]["mjd_range"][0])
    params["assumed"]["mjd_range"] = [start, start + float(config.season_days)]
    lc = simulate(config.n_objects, random_state=config.seed, params=params)
    perm = np.random.default_rng([config.seed, 1]).permutation(lc.n_objects)
    half = lc.n_objects // 2
    return lc, np.sort(perm[:half]), np.sort(perm[half:])


def train_early(archive, config: DemoConfig, say: Say):
    """The default early model (``early`` recipe), sized by ``config``."""
    overrides = {
        "n_estimators": config.trees,
        "augment_copies": config.augment_copies,
        "impostors": config.impostors,
        "cv_folds": config.cv_folds,
    }
    return train_recipe(
        archive,
        "early",
        overrides=overrides,
        random_state=config.seed,
        n_jobs=config.n_jobs,
        lineage={"features": "earlyia demo: simulated archive"},
        progress=lambda line: say(f"    {line}"),
    )


def fink_features(lc, say: Say | None = None) -> tuple[pd.DataFrame, dict]:
    """Fink's sigmoid features of the replayed alerts (1-20 detections) of ``lc`` that pass
    Fink's cuts (:func:`earlyia.select.select_early` with its defaults): the alerts Fink's forest
    learns from and scores."""
    ext = get_extractor(fink_extractor_config())
    rp = lc.replay(min_detections=1, max_detections=TARGET_DETECTIONS)
    passed = select_early(rp, per="alert")["passed"].to_numpy(bool)
    sub = dataclasses.replace(rp, alerts=rp.alerts[passed].reset_index(drop=True))
    if say:
        say(
            f"    {int(passed.sum())} of {len(passed)} replayed alerts pass Fink's cuts; "
            "Fink's sigmoid features on those"
        )
    return ext.transform(sub, per="alert"), ext.config()


def train_fink(archive, config: DemoConfig, say: Say):
    """Fink's configuration (``fink`` recipe: Fink's features and cuts, full-depth trees, no
    weights)."""
    feats, ext_config = fink_features(archive, say)
    return train_recipe(
        feats,
        "fink",
        meta={"extractor": ext_config, "survey": archive.survey},
        overrides={"n_estimators": config.fink_trees, "cv_folds": 0},
        random_state=config.seed,
        n_jobs=config.n_jobs,
        lineage={"features": "earlyia demo: simulated archive, Fink's features"},
        progress=lambda line: say(f"    {line}"),
    )


def card_threshold(
    model, min_purity: float, max_detections: int = TARGET_DETECTIONS
) -> float | None:
    """The model card's threshold for ``min_purity`` within ``max_detections`` (None when the
    card has none)."""
    try:
        t = model.threshold(max_detections, min_purity)["threshold"]
    except ModelError:
        return None
    return float(t) if t is not None and np.isfinite(t) else None


def score_held_out(held, early_model, fink_model) -> pd.DataFrame:
    """Every replayed alert (1-20 detections) of the held-out objects scored by both models, as
    ``earlyia score`` would (each model's selection, features and gate): ``object_id, alert_id,
    mjd, ndethist, label, score_earlyia, score_fink``."""
    rp = held.replay(min_detections=1, max_detections=TARGET_DETECTIONS)
    e = score_lightcurves(rp, early_model, per="alert")
    f = score_lightcurves(rp, fink_model, per="alert")
    f = f.set_index(f["alert_id"].astype(str))["score"]
    out = pd.DataFrame(
        {
            "object_id": e["object_id"].astype(str).to_numpy(),
            "alert_id": e["alert_id"].astype(str).to_numpy(),
            "mjd": e["mjd"].to_numpy(np.float64),
            "ndethist": pd.to_numeric(e["ndethist"], errors="coerce").to_numpy(np.float64),
            "label": e["label"].astype(object).to_numpy(),
            "score_earlyia": e["score"].to_numpy(np.float64),
        }
    )
    out["score_fink"] = f.reindex(out["alert_id"]).to_numpy(np.float64)
    return out


def flagging_table(scores: pd.DataFrame, scorers: dict[str, tuple[str, float]]) -> pd.DataFrame:
    """Efficiency and purity of flagging within N detections (N = 1-20), one column pair per
    scorer (``name -> (score column, threshold)``), with the counts: the replay protocol of
    :mod:`earlyia.evaluate`."""
    top = TARGET_DETECTIONS
    out = pd.DataFrame({"max_detections": np.arange(1, top + 1)})
    for name, (col, thr) in scorers.items():
        rep = evaluate_early(
            scores, max_detections=list(range(1, top + 1)), threshold=thr, score_column=col
        )
        s = rep.summary.set_index("max_detections").reindex(out["max_detections"])
        out[f"{name}_efficiency"] = s["efficiency"].to_numpy()
        out[f"{name}_purity"] = s["purity"].to_numpy()
        out[f"{name}_flagged_ia"] = s["tp"].to_numpy().astype(int)
        out[f"{name}_flagged_other"] = s["fp"].to_numpy().astype(int)
        out["n_ia"] = int(s["n_pos"].iloc[0])
        out["n_other"] = int(s["n_neg"].iloc[0])
    return out


def matched_purity(
    scores: pd.DataFrame,
    columns: dict[str, str],
    min_purity: float,
    max_detections: int = TARGET_DETECTIONS,
) -> tuple[dict[str, dict], dict[str, pd.DataFrame]]:
    """Per scorer (``name -> score column``): the highest efficiency within ``max_detections`` at
    purity >= ``min_purity`` read off its efficiency-purity curve (threshold chosen on these
    objects: the same optimism for every scorer), and the curves."""
    best, curves = {}, {}
    for name, col in columns.items():
        rep = evaluate_early(scores, max_detections=[max_detections], score_column=col)
        curves[name] = rep.curves[max_detections]
        best[name] = rep.best_at_purity(max_detections, min_purity)
    return best, curves


def plot_flagging(
    table: pd.DataFrame,
    labels: dict[str, str],
    curves: dict[str, pd.DataFrame],
    curve_labels: dict[str, str],
    path: Path,
    min_purity: float,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    styles = ["o-", "s--", "^:"]
    for (name, label), st in zip(labels.items(), styles, strict=False):
        n = table["max_detections"]
        axes[0].plot(n, table[f"{name}_efficiency"], st, label=label, ms=4)
        flagged = table[f"{name}_flagged_ia"] + table[f"{name}_flagged_other"]
        axes[1].plot(
            n, table[f"{name}_purity"].where(flagged > 0), st, label=label, ms=4
        )  # no purity before a flag
    for ax, what in zip(
        axes[:2], ("efficiency (SN Ia flagged / SN Ia)", "purity (SN Ia / flagged)"), strict=True
    ):
        ax.set_xlabel("flagged within N detections")
        ax.set_ylabel(what)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[1].axhline(min_purity, color="grey", lw=0.8, ls=":")
    axes[0].legend(fontsize=8, loc="upper left")
    ax = axes[2]
    for (name, label), st, colour in zip(
        curve_labels.items(), ("-", ":"), ("C0", "C2"), strict=False
    ):
        c = curves[name]
        c = c[c["threshold"] >= 0]  # below 0 every object is flagged, scored or not
        ax.plot(c["efficiency"], c["purity"], st, color=colour, label=label)
    ax.axhline(min_purity, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(f"efficiency within {TARGET_DETECTIONS} detections")
    ax.set_ylabel("purity")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("every threshold", fontsize=9)
    fig.suptitle("Held-out simulated objects, replayed alert by alert", fontsize=10)
    fig.tight_layout()
    _save_png(fig, path)


# ============================================================================ 2. active learning
def al_features(lc) -> pd.DataFrame:
    """The early model's features (:data:`earlyia.features.early.STREAM_PARAMS`) of every
    replayed alert (1-20 detections) of ``lc``, labelled: the active-learning pool and test set."""
    ext = get_extractor(RECIPES["early"].extractor)
    return ext.transform(lc.replay(min_detections=1, max_detections=TARGET_DETECTIONS), per="alert")


def paired_test(diff: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Mean of paired differences with a Student-t confidence interval and a two-sided sign test."""
    from scipy import stats

    d = np.asarray(diff, np.float64)
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    sd = float(d.std(ddof=1)) if n > 1 else float("nan")
    half = (
        float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n))
        if n > 1
        else float("nan")
    )
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    p_sign = float(stats.binomtest(wins, wins + losses).pvalue) if wins + losses else 1.0
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "ci_low": mean - half,
        "ci_high": mean + half,
        "confidence": confidence,
        "wins": wins,
        "losses": losses,
        "ties": n - wins - losses,
        "sign_p": p_sign,
    }


def al_verdict(test: dict[str, float], metric: str = "FoM") -> str:
    """One sentence: is the paired difference real (its confidence interval excludes 0 and the
    sign test agrees)?"""
    ci = f"{test['confidence']:.0%} CI {test['ci_low']:+.3f} to {test['ci_high']:+.3f}"
    wins = (
        f"uncertainty better in {test['wins']} of {test['n']} realisations, sign test p = "
        f"{test['sign_p']:.2g}"
    )
    if test["ci_low"] > 0 and test["sign_p"] < 0.05:
        return (
            f"uncertainty sampling beats random sampling: {metric} {test['mean']:+.3f} ({ci}; "
            f"{wins}): a real difference"
        )
    if test["ci_high"] < 0 and test["sign_p"] < 0.05:
        return (
            f"random sampling beats uncertainty sampling: {metric} {test['mean']:+.3f} ({ci}; "
            f"{wins}): a real difference"
        )
    need = ""
    if test["mean"] and np.isfinite(test["sd"]):
        n = math.ceil((1.96 * test["sd"] / abs(test["mean"])) ** 2)
        need = (
            f"; at this spread a difference this small would need about {n} realisations to be "
            "resolved"
        )
    return (
        f"no real difference between uncertainty and random sampling: {metric} "
        f"{test['mean']:+.3f} ({ci}; {wins}){need}"
    )


def run_active_learning(features: pd.DataFrame, config: DemoConfig, out: Path, say: Say):
    """Uncertainty against random sampling, ``config.al_realisations`` paired realisations, run
    in parallel in batches (the experiment resumes) so that progress prints as it goes; returns
    ``(result, per-realisation table)``."""
    total = config.al_realisations
    step = 5  # realisations per batch: progress every quarter of the default run, workers kept busy
    done = 0
    res = None
    while done < total:
        done = min(total, done + step)
        res = run_experiment(
            features,
            ["uncertainty", "random"],
            n_loops=config.al_loops,
            n_realisations=done,
            n_initial=config.al_initial,
            classifier={"n_estimators": config.al_trees},
            seed=config.seed,
            out_dir=out,
            n_jobs=config.n_jobs,
            save_models=False,
            progress=False,
            plots=done == total,
            overwrite=True,
        )
        say(f"    {done} of {total} realisations of each strategy done")
    m = res.metrics
    last = m[m["loop"] == m["loop"].max()]
    wide = last.pivot(
        index="realisation", columns="strategy", values=["fom", "efficiency", "purity", "roc_auc"]
    )
    table = pd.DataFrame({"realisation": wide.index.to_numpy()})
    for met in ("fom", "efficiency", "purity", "roc_auc"):
        for s in ("uncertainty", "random"):
            table[f"{met}_{s}"] = wide[(met, s)].to_numpy()
        table[f"{met}_difference"] = table[f"{met}_uncertainty"] - table[f"{met}_random"]
    table["n_labels"] = int(last["n_labels"].iloc[0])
    return res, table


def plot_active_learning(
    metrics: pd.DataFrame, table: pd.DataFrame, test: dict, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    for s, st in (("uncertainty", "-"), ("random", "--")):
        g = metrics[metrics["strategy"] == s].groupby("n_labels")["fom"]
        mean, sem = g.mean(), g.std(ddof=1) / np.sqrt(g.count())
        ax.plot(mean.index, mean.to_numpy(), st, label=f"{s} sampling")
        ax.fill_between(
            mean.index, (mean - 1.96 * sem).to_numpy(), (mean + 1.96 * sem).to_numpy(), alpha=0.2
        )
    ax.set_xlabel("labels")
    ax.set_ylabel("FoM on the test half (mean, 95 % band)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    d = table["fom_difference"].to_numpy()
    ax.axhline(0, color="grey", lw=0.8)
    ax.plot(np.arange(len(d)), np.sort(d), "o", ms=4, label="one realisation")
    ax.axhspan(
        test["ci_low"],
        test["ci_high"],
        color="C2",
        alpha=0.25,
        label=f"mean, {test['confidence']:.0%} CI",
    )
    ax.axhline(test["mean"], color="C2")
    ax.set_xlabel("realisations, sorted")
    ax.set_ylabel("final FoM, uncertainty - random")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_png(fig, path)


# ============================================================================ 3. one night
def busiest_night(alerts_mjd: np.ndarray) -> int:
    """The integer MJD with the most alerts (the earliest of ties)."""
    nights, counts = np.unique(np.floor(alerts_mjd).astype(np.int64), return_counts=True)
    return int(nights[np.argmax(counts)])


def run_night(
    lc, held_idx: np.ndarray, model, model_path: Path, config: DemoConfig, out: Path, say: Say
) -> dict:
    """Tonight's candidates, follow-up targets, their spectra as labels, a retrained candidate
    and the promotion decision, in a follow-up database inside ``out``; returns the night's
    numbers."""
    out.mkdir(parents=True, exist_ok=True)
    held = lc.take(held_idx)
    rp = held.replay(min_detections=1, max_detections=TARGET_DETECTIONS)
    mjd = rp.alerts["mjd"].to_numpy(np.float64)
    night = busiest_night(mjd)
    tonight = dataclasses.replace(
        rp, alerts=rp.alerts[np.floor(mjd) == night].reset_index(drop=True)
    )
    scores = score_lightcurves(tonight, model, per="alert")
    writer = ScoresWriter(out / "scores.parquet", scores_metadata(model, night_mjd=night))
    writer.write(scores)
    scores_path = writer.close()
    n_obj = int(scores["object_id"].nunique())
    say(
        f"    night MJD {night}: {len(scores)} alerts of {n_obj} held-out objects scored by "
        "the production model"
    )

    thr = card_threshold(model, config.min_purity)
    rule = CandidateRule(min_score=0.5 if thr is None else thr)
    cands = select_candidates(
        scores, rule, prohibited=model.prohibited_object_ids(), source=str(scores_path)
    )
    cand = cands.candidates
    truth = held.objects.set_index(held.objects["object_id"].astype(str))["label"].astype(str)
    cand_true = truth.reindex(cand["object_id"].astype(str)).to_numpy(object)
    cand = cand.assign(true_type=cand_true)
    write_csv_for_people(cand, out / "candidates.csv")
    n_cand_ia = int((cand_true == "SN Ia").sum())
    say(
        f"    {len(cand)} TNS candidate(s) (score > {rule.min_score:.3f}, Fink's other "
        f"cuts), {n_cand_ia} of them SN Ia"
    )

    db_path = out / "followup.db"
    for stale in (db_path, out / "followup.db-wal", out / "followup.db-shm"):
        stale.unlink(missing_ok=True)
    for sub in ("models", "rows"):
        shutil.rmtree(out / sub, ignore_errors=True)
    with FollowupDB(db_path) as db:
        register(
            db,
            model_path,
            production=True,
            training_rows=model.training_rows,
            note="earlyia demo: the early model",
        )
        sel = select(
            db,
            scores_path,
            n=config.targets,
            strategy="uncertainty",
            constraints=Constraints(),
            early=EarlyList(n=config.targets),
            random_state=config.seed,
        )
        targets = pd.concat(
            [sel.al.assign(list="al"), sel.early.assign(list="early")], ignore_index=True
        )
        keep = [
            c
            for c in (
                "list",
                "rank",
                "object_id",
                "score",
                "query_score",
                "ra",
                "dec",
                "days_since_first",
                "last_mag",
            )
            if c in targets.columns
        ]
        targets = targets[keep].assign(
            true_type=truth.reindex(targets["object_id"].astype(str)).to_numpy(object)
        )
        write_csv_for_people(targets, out / "targets.csv")
        say(
            f"    follow-up: {len(sel.al)} active-learning target(s) (uncertainty) and "
            f"{len(sel.early)} likely early SN Ia; "
            "removed by the observing constraints: "
            f"{', '.join(f'{k} {v}' for k, v in sel.removed.items() if v) or 'none'}"
        )
        spectra = pd.DataFrame(
            {
                "object_id": targets["object_id"].astype(str),
                "type": targets["true_type"],
                "date": f"MJD {night + 1}",
                "source": "simulated spectrum (the true type)",
            }
        )
        spectra = spectra.drop_duplicates("object_id")
        spectra_path = out / "spectra.csv"
        _write_csv(spectra, spectra_path)
        lab = ingest_labels(db, read_label_csv(spectra_path), file=str(spectra_path))
        say(f"    spectra: {lab.summary()}")

        # features of the newly labelled objects (alerts up to tonight) and of the validation
        # objects
        ext = get_extractor(model.card["extractor"])
        labelled = set(spectra["object_id"])
        sub_idx = np.flatnonzero(held.objects["object_id"].astype(str).isin(labelled).to_numpy())
        new = held.take(sub_idx).replay(min_detections=1, max_detections=TARGET_DETECTIONS)
        new = dataclasses.replace(
            new,
            alerts=new.alerts[np.floor(new.alerts["mjd"].to_numpy()) <= night].reset_index(
                drop=True
            ),
        )
        new_feats = ext.transform(new, per="alert")
        val_idx = np.flatnonzero(~held.objects["object_id"].astype(str).isin(labelled).to_numpy())
        val_feats = ext.transform(
            held.take(val_idx).replay(min_detections=1, max_detections=TARGET_DETECTIONS),
            per="alert",
        )
        rule_p = PromotionRule(random_state=config.seed)
        say(
            f"    retraining on production's {model.card['training']['n_objects']} objects + "
            f"{len(labelled)} new labels; "
            f"validating on {len(val_idx)} held-out objects nobody labelled"
        )
        rep = retrain(
            db,
            new_feats,
            model.card["extractor"],
            validation=val_feats,
            rule=rule_p,
            random_state=config.seed,
            cv_folds=config.cv_folds,
            n_jobs=config.n_jobs,
        )
        for line in rep.summary().splitlines():
            say(f"    {line}")
        counts = db.counts()
    return {
        "night_mjd": night,
        "n_alerts": len(scores),
        "n_objects": n_obj,
        "candidate_threshold": rule.min_score,
        "candidate_threshold_source": (
            f"model card: purity >= {config.min_purity:g} within {TARGET_DETECTIONS} detections"
            if thr is not None
            else "0.5 (no card threshold)"
        ),
        "n_candidates": len(cand),
        "n_candidates_ia": n_cand_ia,
        "candidate_notes": cands.notes,
        "candidates": cand,
        "targets": targets,
        "n_targets_al": len(sel.al),
        "n_targets_early": len(sel.early),
        "removed_by_constraints": {k: int(v) for k, v in sel.removed.items()},
        "labels": {"stored": len(lab.inserted), "problems": [str(p) for p in lab.problems]},
        "retrain": {
            "candidate_version": rep.version,
            "parent": rep.parent,
            "promoted": rep.promoted,
            "reason": rep.reason,
            "candidate": {
                k: rep.candidate_metrics.get(k)
                for k in ("efficiency", "purity", "fom", "roc_auc", "threshold")
            },
            "production": {
                k: (rep.production_metrics or {}).get(k)
                for k in ("efficiency", "purity", "fom", "roc_auc", "threshold")
            },
            "n_train_objects": rep.n_train,
            "n_new_labels": rep.n_new_labels,
            "n_validation_objects": rep.n_validation,
            "evidence": {k: v for k, v in rep.evidence.items() if k != "rule"},
        },
        "database": {"path": str(db_path), "counts": counts},
    }


def plot_night(
    scores_path: Path,
    candidates: pd.DataFrame,
    targets: pd.DataFrame,
    truth: pd.Series,
    threshold: float,
    path: Path,
) -> None:
    """Tonight's scores per object (latest alert), SN Ia and others, with the candidates and the
    targets marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = pd.read_parquet(scores_path, columns=["object_id", "mjd", "score"])
    s["object_id"] = s["object_id"].astype(str)
    latest = (
        s.sort_values(["object_id", "mjd"])
        .groupby("object_id")
        .tail(1)
        .sort_values("score")
        .reset_index(drop=True)
    )
    ia = truth.reindex(latest["object_id"]).to_numpy(object) == "SN Ia"
    x = np.arange(len(latest))
    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.scatter(x[ia], latest["score"][ia], s=22, marker="o", label="SN Ia (true type)", zorder=3)
    ax.scatter(x[~ia], latest["score"][~ia], s=22, marker="x", label="other (true type)", zorder=3)
    al = (
        latest["object_id"]
        .isin(set(targets.loc[targets["list"] == "al", "object_id"].astype(str)))
        .to_numpy()
    )
    early = (
        latest["object_id"]
        .isin(set(targets.loc[targets["list"] == "early", "object_id"].astype(str)))
        .to_numpy()
    )
    cand = latest["object_id"].isin(set(candidates["object_id"].astype(str))).to_numpy()
    ax.scatter(
        x[al],
        latest["score"][al],
        s=110,
        facecolors="none",
        edgecolors="C2",
        label="follow-up: active learning",
    )
    ax.scatter(
        x[early],
        latest["score"][early],
        s=160,
        facecolors="none",
        edgecolors="C3",
        label="follow-up: likely early Ia",
    )
    ax.scatter(
        x[cand],
        latest["score"][cand],
        s=40,
        marker="*",
        color="gold",
        edgecolors="k",
        lw=0.4,
        label="TNS candidate",
        zorder=4,
    )
    ax.axhline(threshold, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("tonight's objects, by score of their latest alert")
    ax.set_ylabel("score")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="upper left")
    fig.tight_layout()
    _save_png(fig, path)


# ============================================================================ 4. the HTML report
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


#: Columns shown as whole numbers in the report's tables (they may arrive as floats).
INTEGER_COLUMNS = frozenset({"ndethist", "n_detections", "rank"})


def _cell(v: Any, integer: bool = False) -> str:
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return ""
        return f"{v:.0f}" if integer else f"{v:.3f}"
    return _e(v)


def html_table(df: pd.DataFrame, columns: dict[str, str] | None = None) -> str:
    """A DataFrame as an HTML table, every header and cell escaped (``columns``: column ->
    header)."""
    columns = columns or {c: c for c in df.columns}
    head = "".join(f"<th>{_e(h)}</th>" for h in columns.values())
    whole = [c in INTEGER_COLUMNS for c in columns]
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{_cell(v, w)}</td>" for v, w in zip(r, whole, strict=True))
        + "</tr>\n"
        for r in df[list(columns)].itertuples(index=False)
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}</tbody>\n</table>"


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.6em 0;font-size:0.88em}
th,td{border:1px solid #ccc;padding:2px 7px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee}
.verdict{padding:0.5em 0.8em;background:#f5f8ff;border-left:4px solid #3572b0}
code{background:#f4f4f4;padding:0 3px}
.small{font-size:0.85em;color:#555}"""


def write_report(
    out: Path, summary: dict, flagging: pd.DataFrame, al_table: pd.DataFrame, night: dict
) -> Path:
    """``index.html``: the three parts with their figures and tables (every string HTML-escaped)."""
    cfg = summary["config"]
    ef = summary["early_flagging"]
    al = summary["active_learning"]
    nt = summary["night"]
    rt = nt["retrain"]
    show = flagging[flagging["max_detections"].isin(TABLE_DETECTIONS)]
    flag_cols = {"max_detections": "N detections"}
    for key, label in ef["scorers"].items():
        flag_cols[f"{key}_efficiency"] = f"{label}: efficiency"
        flag_cols[f"{key}_purity"] = f"{label}: purity"
    at = ef["at_20"]
    at_rows = pd.DataFrame(
        [
            {
                "scorer": ef["scorers"][k],
                "threshold": v["threshold"],
                "SN Ia flagged": v["flagged_ia"],
                "others flagged": v["flagged_other"],
                "efficiency": v["efficiency"],
                "purity": v["purity"],
            }
            for k, v in at.items()
        ]
    )
    names = {"earlyia": "earlyia", "fink": "Fink's configuration"}
    at_rows = pd.concat(
        [
            at_rows,
            pd.DataFrame(
                [
                    {
                        "scorer": f"{names[k]} at purity >= {v['min_purity']:g} (threshold read "
                        "off "
                        "the curve)",
                        "threshold": v["threshold"],
                        "SN Ia flagged": "",
                        "others flagged": "",
                        "efficiency": v["efficiency"],
                        "purity": v["purity"],
                    }
                    for k, v in ef["at_purity"].items()
                ]
            ),
        ],
        ignore_index=True,
    )
    al_rows = pd.DataFrame(
        [
            {
                "strategy": s,
                "realisations": al["realisations"],
                "labels": al["n_labels"],
                **{
                    m: f"{al['means'][s][m]:.3f}"
                    for m in ("fom", "efficiency", "purity", "roc_auc")
                },
            }
            for s in ("uncertainty", "random")
        ]
    )
    cand = night["candidates"]
    cand_cols = {
        c: c
        for c in ("object_id", "score", "ndethist", "last_mag", "ra_mean", "dec_mean", "true_type")
        if c in cand.columns
    }
    targ = night["targets"]
    targ_cols = {
        c: c
        for c in ("list", "rank", "object_id", "score", "days_since_first", "last_mag", "true_type")
        if c in targ.columns
    }
    sizes = (
        f"{cfg['n_objects']} simulated objects (seed {cfg['seed']}); early model "
        f"{cfg['trees']} trees, "
        f"{cfg['augment_copies']} augmented "
        f"cop{'y' if cfg['augment_copies'] == 1 else 'ies'}, {cfg['impostors']} impostors "
        f"of each kind, {cfg['cv_folds']} calibration folds (production: 300 trees, 2 "
        "copies, 100, 5); Fink's configuration "
        f"{cfg['fink_trees']} trees (Fink: 1000); active learning {cfg['al_trees']} trees."
    )
    decision = (
        "promoted to production" if rt["promoted"] else "kept as a candidate (production stays)"
    )
    thr_text = f"{ef['threshold']:.3f}"
    pur_text = f"{cfg['min_purity']:g}"
    cand_thr_text = f"{nt['candidate_threshold']:.3f}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>earlyia demo</title>',
        f"<style>{CSS}</style></head><body>",
        "<h1>earlyia demo: early SN Ia in a simulated season</h1>",
        f'<p class="small">{_e(sizes)} Same seed, same numbers. Written by earlyia '
        f"{_e(summary['earlyia_version'])}; "
        f"reproduce with <code>{_e(summary['command'])}</code>.</p>",
        "<h2>1. Early flagging: earlyia against Fink's configuration</h2>",
        f"<p>{_e(ef['n_archive'])} archive objects with spectroscopic types train both; "
        f"{_e(ef['n_ia'])} SN Ia and "
        f"{_e(ef['n_other'])} other held-out objects are replayed alert by alert (detections "
        "1 to 20). An object is flagged "
        "within N detections when one of its alerts with at most N detections scores above "
        "the threshold: 0.5 for both "
        "(Fink's production rule; Fink's configuration scores only the alerts that pass "
        "Fink's cuts, at least 3 nights in "
        f"g and in r and rising), and for earlyia also its card threshold ({_e(thr_text)}: "
        f"purity {_e(pur_text)} within 20 "
        "detections at the archive's prevalence, chosen on the archive alone, what "
        "<code>earlyia candidates</code> "
        "uses). The right panel compares every threshold at once.</p>",
        f'<p class="verdict">{_e(ef["headline"])}</p>',
        '<img src="early_flagging.png" alt="efficiency and purity against the number of '
        'detections">',
        "<h3>Within 20 detections</h3>",
        html_table(at_rows),
        html_table(show, flag_cols),
        '<p class="small">Every N: <code>early_flagging.csv</code>; every scored alert: '
        "<code>heldout_scores.parquet</code>.</p>",
        "<h2>2. Active learning against random sampling</h2>",
        "<p>The early features of every replayed alert of the season; honest protocol "
        "(objects split in two halves: "
        f"a query pool and a test set never queried); {_e(al['realisations'])} paired "
        "realisations (same initial labels "
        f"and test set for both strategies), {_e(al['n_initial'])} initial labels + "
        f"{_e(al['loops'])} queries. Final-loop "
        "metrics per alert on the test half, mean over realisations:</p>",
        html_table(al_rows),
        f'<p class="verdict">{_e(al["verdict"])}</p>',
        '<img src="active_learning.png" alt="FoM against labels, and the paired final FoM '
        'differences">',
        '<p class="small">Per realisation: <code>active_learning.csv</code>; the whole experiment: '
        "<code>active_learning/</code>.</p>",
        "<h2>3. One night of the live loop</h2>",
        f"<p>Night MJD {_e(nt['night_mjd'])}, the busiest of the season: "
        f"{_e(nt['n_alerts'])} alerts of "
        f"{_e(nt['n_objects'])} held-out objects, scored by the production model.</p>",
        f"<h3>TNS candidates: {_e(nt['n_candidates'])}, of which {_e(nt['n_candidates_ia'])} "
        "SN Ia</h3>",
        f'<p class="small">Rule: score &gt; {_e(cand_thr_text)} '
        f"({_e(nt['candidate_threshold_source'])}) and Fink's other cuts. "
        + " ".join(_e(n) for n in nt["candidate_notes"])
        + "</p>",
        html_table(cand, cand_cols) if len(cand) else "<p>No candidate tonight.</p>",
        f"<h3>Follow-up targets: {_e(nt['n_targets_al'])} to teach the model, "
        f"{_e(nt['n_targets_early'])} likely early SN Ia</h3>",
        '<img src="night.png" alt="tonight\'s scores with the candidates and the follow-up '
        'targets">',
        html_table(targ, targ_cols) if len(targ) else "<p>No target tonight.</p>",
        f"<h3>Spectra, retraining, promotion: {_e(decision)}</h3>",
        "<p>The targets' spectra (their simulated true types) are stored as labels "
        f"({_e(nt['labels']['stored'])}); a "
        f"candidate model learns from production's rows plus the {_e(rt['n_new_labels'])} "
        "new labels and both are compared "
        f"as deployed on {_e(rt['n_validation_objects'])} held-out objects nobody labelled.</p>",
        html_table(
            pd.DataFrame(
                [
                    {
                        "model": name,
                        **{
                            k: rt[key].get(k)
                            for k in ("threshold", "efficiency", "purity", "fom", "roc_auc")
                        },
                    }
                    for name, key in (
                        ("production", "production"),
                        ("retrained candidate", "candidate"),
                    )
                ]
            )
        ),
        f'<p class="verdict">{_e(rt["reason"])}</p>',
        '<p class="small">Follow-up database: '
        f"<code>{_e(Path(nt['database']['path']).name)}</code> in "
        "<code>night/</code> (open it with <code>earlyia followup status --db "
        "night/followup.db</code>).</p>",
        "<h2>Time</h2>",
        html_table(
            pd.DataFrame(
                [
                    {"step": k, "wall s": v["wall_s"], "CPU s": v["cpu_s"]}
                    for k, v in summary["timings"].items()
                ]
            )
        ),
        "</body></html>",
    ]
    path = out / "index.html"
    text = "\n".join(parts) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


# ============================================================================ the demo
def run_demo(
    out: str | Path,
    config: DemoConfig | None = None,
    *,
    say: Say = print,
    command: str = "earlyia demo",
) -> DemoResult:
    """Run the whole demo into folder ``out`` (its previous demo files are replaced) and return what
    it found.

    ``say`` receives one line per step and per progress update (e.g. ``print``); ``command`` is how
    the report says to reproduce it.
    """
    config = config or DemoConfig()
    config.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in REPORT_FILES:
        (out / name).unlink(missing_ok=True)
    clock = _Clock()

    say(f"1/4 a simulated season: {config.n_objects} ZTF-like objects (seed {config.seed})")
    lc, arch_idx, held_idx = simulate_season(config)
    lc.to_parquet(out / "lightcurves.parquet")
    oid = lc.objects["object_id"].astype(str).to_numpy(object)
    role = np.full(lc.n_objects, "held out", dtype=object)
    role[arch_idx] = "archive"
    _write_csv(
        pd.DataFrame({"object_id": oid, "role": role, "label": lc.objects["label"].astype(str)}),
        out / "split.csv",
    )
    archive, held = lc.take(arch_idx), lc.take(held_idx)
    counts = lc.objects["label"].astype(str).value_counts()
    say(
        f"    {lc.n_objects} objects ({', '.join(f'{k} {v}' for k, v in counts.items())}), "
        f"{lc.n_points} points; "
        f"{len(arch_idx)} archive objects with spectroscopic types, {len(held_idx)} held out "
        f"{clock.lap('simulate')}"
    )

    say(
        f"    training the default early model (early recipe, {config.trees} trees, "
        f"{config.augment_copies} augmented "
        f"cop{'y' if config.augment_copies == 1 else 'ies'}, {config.impostors} impostors of "
        "each kind)"
    )
    early = train_early(archive, config, say)
    early_path = out / "earlyia_model.eia"
    early.save(early_path)
    early.training_rows.to_parquet(out / "earlyia_training_rows.parquet")
    say(f"    early model {early.hash[:12]} {clock.lap('train earlyia')}")
    say(
        "    training Fink's configuration (Fink's features and cuts, fink recipe, "
        f"{config.fink_trees} trees)"
    )
    fink = train_fink(archive, config, say)
    fink.save(out / "fink_model.eia")
    say(f"    Fink's configuration {fink.hash[:12]} {clock.lap('train Fink')}")
    say("    scoring every held-out alert with both (replayed from the 1st detection)")
    scores = score_held_out(held, early, fink)
    atomic_write(out / "heldout_scores.parquet", lambda tmp: scores.to_parquet(tmp, index=False))
    thr = card_threshold(early, config.min_purity)
    thr_e = 0.5 if thr is None else thr
    scorers = {
        "earlyia": ("score_earlyia", thr_e),
        "earlyia_05": ("score_earlyia", 0.5),
        "fink": ("score_fink", 0.5),
    }
    labels = {
        "earlyia": f"earlyia (card threshold {thr_e:.3f})",
        "earlyia_05": "earlyia (0.5)",
        "fink": "Fink's configuration (0.5)",
    }
    flagging = flagging_table(scores, scorers)
    _write_csv(flagging, out / "early_flagging.csv")
    matched, curves = matched_purity(
        scores, {"earlyia": "score_earlyia", "fink": "score_fink"}, config.min_purity
    )
    plot_flagging(
        flagging,
        labels,
        curves,
        {"earlyia": "earlyia", "fink": "Fink's configuration"},
        out / "early_flagging.png",
        config.min_purity,
    )
    at = {}
    for key, (_, t) in scorers.items():
        r = flagging.iloc[-1]
        at[key] = {
            "threshold": t,
            "efficiency": float(r[f"{key}_efficiency"]),
            "purity": float(r[f"{key}_purity"]),
            "flagged_ia": int(r[f"{key}_flagged_ia"]),
            "flagged_other": int(r[f"{key}_flagged_other"]),
        }
    by_n = flagging.set_index("max_detections")
    first_fink = by_n.index[by_n["fink_flagged_ia"] > 0]
    headline = (
        "Within 5 detections earlyia (score > 0.5) flags "
        f"{by_n.loc[5, 'earlyia_05_efficiency']:.0%} of the held-out SN Ia at "
        f"purity {by_n.loc[5, 'earlyia_05_purity']:.0%}; Fink's configuration "
        f"{by_n.loc[5, 'fink_efficiency']:.0%}"
        + (f" (its first SN Ia at {int(first_fink[0])} detections)" if len(first_fink) else "")
        + f". Within 20 detections: {at['earlyia_05']['efficiency']:.0%} at purity "
        f"{at['earlyia_05']['purity']:.0%} against "
        f"{at['fink']['efficiency']:.0%} at {at['fink']['purity']:.0%}. At equal purity "
        f"{config.min_purity:.0%} (read off both "
        f"curves) earlyia flags {matched['earlyia']['efficiency']:.0%} within 20 detections, "
        "Fink's configuration "
        f"{matched['fink']['efficiency']:.0%}; at its card threshold, chosen on the archive "
        "alone, earlyia flags "
        f"{at['earlyia']['efficiency']:.0%} at purity {at['earlyia']['purity']:.0%}."
    )
    say(f"    {headline} {clock.lap('score held out')}")

    say(
        f"2/4 active learning: uncertainty vs random sampling, {config.al_realisations} "
        "paired realisations x "
        f"{config.al_loops} queries, honest protocol, early features, {config.n_jobs} worker(s)"
    )
    feats = al_features(lc)
    say(
        f"    {len(feats)} replayed alerts of {lc.n_objects} objects with early features "
        f"{clock.lap('AL features')}"
    )
    res, al_table = run_active_learning(feats, config, out / "active_learning", say)
    _write_csv(al_table, out / "active_learning.csv")
    test = paired_test(al_table["fom_difference"].to_numpy())
    verdict = al_verdict(test)
    plot_active_learning(res.metrics, al_table, test, out / "active_learning.png")
    means = {
        s: {
            m: float(al_table[f"{m}_{s}"].mean())
            for m in ("fom", "efficiency", "purity", "roc_auc")
        }
        for s in ("uncertainty", "random")
    }
    say(
        f"    final FoM: uncertainty {means['uncertainty']['fom']:.3f}, random "
        f"{means['random']['fom']:.3f} "
        f"(mean of {config.al_realisations}, {int(al_table['n_labels'].iloc[0])} labels "
        f"each) {clock.lap('active learning')}"
    )
    say(f"    {verdict}")

    say(
        "3/4 one night: candidates, follow-up targets, spectra, retraining and the promotion "
        "decision"
    )
    night = run_night(lc, held_idx, early, early_path, config, out / "night", say)
    truth = lc.objects.set_index(lc.objects["object_id"].astype(str))["label"].astype(str)
    plot_night(
        out / "night" / "scores.parquet",
        night["candidates"],
        night["targets"],
        truth,
        night["candidate_threshold"],
        out / "night.png",
    )
    say(
        f"    {'PROMOTED' if night['retrain']['promoted'] else 'kept as candidate'} "
        f"{clock.lap('night')}"
    )

    say("4/4 the report")
    summary = {
        "earlyia_version": __version__,
        "command": command,
        "config": dataclasses.asdict(config),
        "season": {
            "n_objects": lc.n_objects,
            "n_points": lc.n_points,
            "classes": counts.to_dict(),
            "n_archive": len(arch_idx),
            "n_held_out": len(held_idx),
        },
        "early_flagging": {
            "scorers": labels,
            "threshold": thr_e,
            "n_archive": len(arch_idx),
            "n_ia": int(flagging["n_ia"].iloc[0]),
            "n_other": int(flagging["n_other"].iloc[0]),
            "at_20": at,
            "headline": headline,
            "at_purity": {
                k: {"min_purity": config.min_purity, "max_detections": TARGET_DETECTIONS, **v}
                for k, v in matched.items()
            },
            "models": {"earlyia": early.hash, "fink": fink.hash},
        },
        "active_learning": {
            "realisations": config.al_realisations,
            "loops": config.al_loops,
            "n_initial": config.al_initial,
            "n_labels": int(al_table["n_labels"].iloc[0]),
            "trees": config.al_trees,
            "n_rows": len(feats),
            "means": means,
            "fom_difference": test,
            "verdict": verdict,
        },
        "night": {k: v for k, v in night.items() if k not in ("candidates", "targets")},
        "timings": clock.steps,
    }
    summary["timings"]["total"] = {
        "wall_s": round(sum(v["wall_s"] for v in clock.steps.values()), 2),
        "cpu_s": round(sum(v["cpu_s"] for v in clock.steps.values()), 2),
    }
    write_report(out, summary, flagging, al_table, night)
    _write_json(out / "summary.json", summary)
    say(f"    {out / 'index.html'} (open it in a browser) and summary.json {clock.lap('report')}")
    return DemoResult(out, summary, flagging, al_table, clock.steps)
