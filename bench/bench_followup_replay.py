"""Replay the live follow-up loop on real ZTF alerts: does earlyia's loop learn faster than the
alternatives?

Data: the shared replay of the real, TNS-labelled ZTF set
(``ztf_replay_alerts_with_anchor.parquet``: one alert per detection 3..20 of 1 444 objects; labels
from ``ztf_fink_tns_labelled/objects.csv``). Protocol (paired: every policy sees the same split,
initial labels and seed):

- objects are split once (object level, stratified, seeded): 30 % test objects are never requestable
  and only measure the model; the other 70 % form the stream;
- alerts arrive in time order, night by night (night = floor(MJD) of the alert); the label of an
  object is revealed only when the policy requests it, and each night has a budget of N spectra;
- a spectrum of an object fainter than the spectrograph limit (last mag > 19.5) or of a vague TNS
  type ('SN', ...) gives no usable label but still costs the night's budget;
- everyone starts from the same 10 labelled objects (5 SN Ia, 5 others, as Leoni et al. 2022) and
  retrains the same model (earlyia ``train_model``, ``early`` features) every ``--retrain-every``
  nights.

Policies:
- ``earlyia``: ``earlyia followup select``'s code (``earlyia.followup.targets.choose``) with the
  observability constraints (<= 20 days since first detection, last mag <= 19.5) and uncertainty
  sampling; ``earlyia_diverse``: the same with the batch-diverse strategy;
- ``fink_top30``: Fink's live rule: score > 0, <= 20 days, top 30 by |p - 0.5|, no magnitude limit;
  the observers take N of the 30 at random among those bright enough for the spectrograph;
- ``random``: N random objects among those ``earlyia`` could choose from (same constraints).

Metric on the test objects (``earlyia.evaluate`` protocol): an object is flagged when any of its
alerts with <= 20 detections scores > 0.5; efficiency, purity, FoM = eff * TP / (TP + 3 FP);
plus the alert-level ROC AUC. Printed as a table per number of labels, and plotted.

Run:  python bench/bench_followup_replay.py --seeds 3 --budget 1 --retrain-every 14 --n-trees 50
--out bench/out/followup_replay
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from earlyia.data import shared_path
from earlyia.features import get_extractor
from earlyia.followup.config import Constraints
from earlyia.followup.targets import choose
from earlyia.io.fink import lightcurves_from_fink_frame
from earlyia.labels import NEGATIVE, POSITIVE, TypeMap
from earlyia.metrics import roc_auc
from earlyia.model.recipe import Recipe
from earlyia.model.training import train_model

POLICIES = ("earlyia", "earlyia_diverse", "fink_top30", "random")
MAG_LIMIT = 19.5
MAX_DAYS = 20.0


def load(extractor: str = "early") -> tuple[pd.DataFrame, np.ndarray, list[str], dict]:
    """Alerts with features, night, days since first detection, last magnitude; labels per
    object."""
    raw = pd.read_parquet(shared_path("ztf_replay_alerts_with_anchor.parquet", reference=True))
    lc = lightcurves_from_fink_frame(raw, source="ztf_replay_alerts_with_anchor.parquet")
    ex = get_extractor(extractor)
    feats = ex.transform(lc, per="alert")
    starts, ends = lc.alert_segments()
    first = np.full(len(starts), np.nan)
    last_mag = np.full(len(starts), np.nan)
    for i, (s, e) in enumerate(zip(starts, ends, strict=True)):
        det = np.flatnonzero(lc.detected[s:e])
        if len(det):
            first[i] = lc.mjd[s + det[0]]
            f = lc.flux[s + det[-1]]
            last_mag[i] = 27.5 - 2.5 * np.log10(f) if f > 0 else np.nan
    alerts = pd.DataFrame(
        {
            "object_id": feats["object_id"].astype(str),
            "alert_id": feats["alert_id"].astype(str),
            "mjd": feats["mjd"],
            "n_detections": feats["n_detections"],
            "first_det_mjd": first,
            "last_mag": last_mag,
            "cdsxmatch": "Unknown",
            "anchor_score": feats.get("anchor_score", np.nan),
        }
    )
    alerts["night"] = np.floor(alerts["mjd"]).astype(int)
    names = list(ex.names)
    X = feats[names].to_numpy(np.float64, copy=True)
    X[~np.isfinite(X)] = np.nan
    X = np.clip(
        np.where(np.isnan(X), -999.0, X), -1e30, 1e30
    )  # trees split on a sentinel; float32-safe
    objs = pd.read_csv(shared_path("ztf_fink_tns_labelled/objects.csv"))
    code = dict(zip(objs["objectId"].astype(str), TypeMap().encode(objs["tns_type"]), strict=True))
    return alerts, X, names, code


def split(
    objects: np.ndarray, y: np.ndarray, rng: np.random.Generator, test_fraction: float = 0.3
) -> np.ndarray:
    """Boolean test mask over ``objects`` (stratified by class)."""
    test = np.zeros(len(objects), bool)
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        test[rng.choice(idx, size=round(test_fraction * len(idx)), replace=False)] = True
    return test


def evaluate(
    model, X_test: np.ndarray, test_alerts: pd.DataFrame, y_obj: dict, p: np.ndarray | None = None
) -> dict:
    """Object-level early flagging metrics and alert-level AUC of ``model`` (or of given scores
    ``p``)."""
    if p is None:
        p = model.predict_proba(X_test)[:, 1]
    y_alert = test_alerts["object_id"].map(y_obj).to_numpy() == POSITIVE
    per_obj = (
        pd.DataFrame({"o": test_alerts["object_id"].to_numpy(), "p": p}).groupby("o")["p"].max()
    )
    yo = per_obj.index.map(y_obj).to_numpy() == POSITIVE
    flagged = per_obj.to_numpy() > 0.5
    tp = int((flagged & yo).sum())
    fp = int((flagged & ~yo).sum())
    eff = tp / max(1, yo.sum())
    pur = tp / (tp + fp) if tp + fp else 0.0
    fom = eff * (tp / (tp + 3 * fp) if tp + fp else 0.0)
    return {"efficiency": eff, "purity": pur, "fom": fom, "auc": roc_auc(y_alert, p)}


def run(
    policy: str,
    alerts: pd.DataFrame,
    X: np.ndarray,
    names: list[str],
    code: dict,
    *,
    seed: int,
    budget: int,
    retrain_every: int,
    n_trees: int,
    n_initial: int = 10,
) -> pd.DataFrame:
    rng_split = np.random.default_rng(seed)  # shared by every policy: same split and initial labels
    objects = np.array(sorted(set(alerts["object_id"]) & set(code)))
    y = np.array([code[o] for o in objects])
    usable = y >= 0
    test = split(objects[usable], y[usable], rng_split)
    test_ids = set(objects[usable][test])
    stream_ids = set(objects) - test_ids
    pos = sorted(o for o in stream_ids if code[o] == POSITIVE)
    neg = sorted(o for o in stream_ids if code[o] == NEGATIVE)
    initial = set(rng_split.choice(pos, n_initial // 2, replace=False))
    initial |= set(rng_split.choice(neg, n_initial - n_initial // 2, replace=False))
    rng = np.random.default_rng([seed, POLICIES.index(policy)])

    oid = alerts["object_id"].to_numpy()
    uniq, oidx = np.unique(oid, return_inverse=True)  # integer object index per alert (fast masks)
    index_of = {o: i for i, o in enumerate(uniq)}
    is_test = np.isin(oidx, [index_of[o] for o in test_ids if o in index_of])
    req_mask = np.zeros(len(uniq), bool)
    lab_mask = np.zeros(len(uniq), bool)
    for o in initial:
        req_mask[index_of[o]] = lab_mask[index_of[o]] = True
    init_mask = lab_mask.copy()
    mjd_all = alerts["mjd"].to_numpy()
    X_test, test_alerts = X[is_test], alerts[is_test].reset_index(drop=True)
    labelled: dict[str, int] = {o: int(code[o]) for o in initial}
    requested: set[str] = set(initial)
    extractor = {"extractor": "replay", "names": names}

    def fit(now: float):
        keep = lab_mask[oidx] & ((mjd_all <= now) | init_mask[oidx])
        df = pd.DataFrame(X[keep], columns=names)
        df["object_id"] = oid[keep]
        df["label"] = [labelled[o] for o in oid[keep]]
        return train_model(df, extractor, Recipe(n_estimators=n_trees), random_state=seed)

    nights = np.sort(alerts.loc[~is_test, "night"].unique())
    model = fit(nights[0])
    rows = [
        {
            "night": 0,
            "n_requested": len(requested),
            "n_labels": len(labelled),
            **evaluate(model, X_test, test_alerts, code),
        }
    ]
    ours = Constraints(
        dec_min=None,
        dec_max=None,
        max_days_since_first=MAX_DAYS,
        mag_limit=MAG_LIMIT,
        drb_min=None,
        classtar_min=None,
        min_score=0.0,
    )
    fink = Constraints(
        dec_min=None,
        dec_max=None,
        max_days_since_first=MAX_DAYS,
        mag_limit=None,
        drb_min=None,
        classtar_min=None,
        min_score=0.0,
    )
    night_of = alerts["night"].to_numpy()
    for k, night in enumerate(nights, start=1):
        tonight = np.flatnonzero((night_of == night) & ~is_test & ~req_mask[oidx])
        if len(tonight):
            df = pd.concat(
                [
                    alerts.iloc[tonight].reset_index(drop=True),
                    pd.DataFrame(X[tonight], columns=names),
                ],
                axis=1,
            )
            df["score"] = model.predict_proba(X[tonight])[:, 1]
            latest = df.sort_values("mjd").groupby("object_id").tail(1).reset_index(drop=True)
            if policy in ("earlyia", "earlyia_diverse"):
                strat = "uncertainty" if policy == "earlyia" else "batch_diverse"
                chosen = list(
                    choose(
                        latest,
                        n=budget,
                        strategy=strat,
                        constraints=ours,
                        feature_names=names,
                        random_state=rng,
                    ).al["object_id"]
                )
            elif policy == "random":
                pool = (
                    choose(
                        latest, n=10**6, strategy="uncertainty", constraints=ours, random_state=rng
                    )
                    .al["object_id"]
                    .to_numpy()
                )
                chosen = (
                    list(rng.choice(pool, size=min(budget, len(pool)), replace=False))
                    if len(pool)
                    else []
                )
            else:  # fink_top30
                top = choose(
                    latest, n=30, strategy="uncertainty", constraints=fink, random_state=rng
                ).al
                bright = top[top["last_mag"] <= MAG_LIMIT]["object_id"].to_numpy()
                chosen = (
                    list(rng.choice(bright, size=min(budget, len(bright)), replace=False))
                    if len(bright)
                    else []
                )
            for o in chosen:
                requested.add(o)
                req_mask[index_of[o]] = True
                last = latest.loc[latest["object_id"] == o, "last_mag"].iloc[0]
                if (
                    code[o] >= 0 and np.isfinite(last) and last <= MAG_LIMIT
                ):  # spectrum classifiable
                    labelled[o] = int(code[o])
                    lab_mask[index_of[o]] = True
        if k % retrain_every == 0 or k == len(nights):
            model = fit(night + 1)
            rows.append(
                {
                    "night": k,
                    "n_requested": len(requested),
                    "n_labels": len(labelled),
                    **evaluate(model, X_test, test_alerts, code),
                }
            )
    out = pd.DataFrame(rows)
    out["policy"], out["seed"] = policy, seed
    out.attrs["anchor"] = evaluate(
        None, X_test, test_alerts, code, p=test_alerts["anchor_score"].to_numpy(np.float64)
    )
    return out


def summarise(curves: pd.DataFrame, marks: list[int]) -> pd.DataFrame:
    """Metrics at the first checkpoint reaching each number of requested spectra, mean +- std
    over seeds."""
    out = []
    for (policy, seed), g in curves.groupby(["policy", "seed"]):
        for m in marks:
            hit = g[g["n_requested"] >= m]
            if len(hit):
                first = hit.iloc[0]
                out.append(
                    {
                        "policy": policy,
                        "seed": seed,
                        "spectra": m,
                        **first[["n_labels", "efficiency", "purity", "fom", "auc"]],
                    }
                )
    df = pd.DataFrame(out)
    agg = df.groupby(["spectra", "policy"]).agg(["mean", "std"])
    return agg


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=1, help="spectra per night")
    ap.add_argument("--retrain-every", type=int, default=14, help="nights between retrainings")
    ap.add_argument("--n-trees", type=int, default=50)
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    ap.add_argument(
        "--out", default="bench/out/followup_replay", help="directory for the CSV and the PNG"
    )
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    alerts, X, names, code = load()
    t_load = time.perf_counter() - t0
    print(
        f"loaded {len(alerts)} alerts of {alerts['object_id'].nunique()} objects, "
        f"{len(names)} features, "
        f"{alerts['night'].nunique()} nights in {t_load:.1f} s (measured under load)"
    )
    curves = []
    anchors = {}
    for seed in range(args.seeds):
        for policy in args.policies:
            t = time.perf_counter()
            c = run(
                policy,
                alerts,
                X,
                names,
                code,
                seed=seed,
                budget=args.budget,
                retrain_every=args.retrain_every,
                n_trees=args.n_trees,
            )
            curves.append(c)
            anchors[seed] = c.attrs["anchor"]
            last = c.iloc[-1]
            print(
                f"seed {seed} {policy:16s} {int(last['n_requested'])} spectra, "
                f"{int(last['n_labels'])} labels: "
                f"FoM {last['fom']:.3f} eff {last['efficiency']:.3f} pur "
                f"{last['purity']:.3f} AUC {last['auc']:.3f} "
                f"({time.perf_counter() - t:.0f} s)"
            )
    curves = pd.concat(curves, ignore_index=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves.to_csv(out / "curves.csv", index=False)
    marks = [10, 25, 50, 100, 150, 200, 300]
    table = summarise(curves, marks)
    pd.set_option("display.width", 200)
    print(
        "\nTest-set metrics (object flagged if any alert <= 20 detections scores > 0.5), "
        "mean (std) over seeds, "
        "at the first retraining after the given number of requested spectra:"
    )
    print(_markdown(table))
    anchor = pd.DataFrame(anchors).T
    print(
        "\nFink's production model (anchor_score) on the same test objects, mean (std) over seeds "
        "(optimistic: it was probably trained on some of them): "
        + ", ".join(
            f"{m} {anchor[m].mean():.3f} ({anchor[m].std():.3f})"
            for m in ("efficiency", "purity", "fom", "auc")
        )
    )
    _plot(curves, out / "learning_curve.png", anchor.mean().to_dict())
    print(
        f"\nwrote {out / 'curves.csv'} and {out / 'learning_curve.png'}; total "
        f"{time.perf_counter() - t0:.0f} s"
    )


def _markdown(agg: pd.DataFrame) -> str:
    lines = [
        "| spectra | policy | labels | efficiency | purity | FoM | AUC |",
        "|---|---|---|---|---|---|---|",
    ]
    for (spectra, policy), r in agg.iterrows():
        cells = []
        for m in ("efficiency", "purity", "fom", "auc"):
            sd = r[(m, "std")]
            cells.append(f"{r[(m, 'mean')]:.3f} ({0.0 if pd.isna(sd) else sd:.3f})")
        lines.append(
            f"| {spectra} | {policy} | {r[('n_labels', 'mean')]:.0f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def _plot(curves: pd.DataFrame, path: Path, anchor: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for policy, g in curves.groupby("policy"):
        grid = np.unique(g["n_requested"])
        for ax, metric in zip(axes, ("fom", "auc"), strict=True):
            per_seed = [np.interp(grid, s["n_requested"], s[metric]) for _, s in g.groupby("seed")]
            m = np.mean(per_seed, axis=0)
            sd = np.std(per_seed, axis=0)
            ax.plot(grid, m, label=policy)
            ax.fill_between(grid, m - sd, m + sd, alpha=0.2)
    if anchor:
        for ax, metric in zip(axes, ("fom", "auc"), strict=True):
            ax.axhline(anchor[metric], color="k", ls="--", lw=1, label="Fink production model")
    for ax, metric in zip(
        axes, ("FoM (objects, <= 20 detections)", "alert-level ROC AUC"), strict=True
    ):
        ax.set_xlabel("spectra requested")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Follow-up replay on real ZTF alerts (test objects never requested)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
