"""Early SN Ia classifier on ELAsTiCC alerts: Rainbow features + active learning, held-out objects.

Data: the ELAsTiCC SN Ia (class 111) / SN II (113) alerts processed by Fink (``elasticc_fink_ia_ii``),
one light curve per alert (its history as of the alert, detections only). Features: earlyia Rainbow
with Fink's cuts (>= 7 points after intraday averaging, flux >= -10 nJy); an alert that fails the cuts,
the fit or the transient gate (no significant rise: flat, fading, noisy-constant) scores 0, like Fink.

Protocol: objects are split once (seeded, stratified): ``--test-fraction`` of the objects are held out
and only measure the model; the alerts of the other objects form the pool. Active learning as Fink's
ELAsTiCC setup: 50 initial labels (25 SN Ia), batches of 20 queried by uncertainty, ``--loops`` loops;
classifier earlyia ``FastForest`` (``--trees``). The table gives efficiency / purity per alert of the
held-out objects at thresholds 0.5, 0.6, 0.7 and the full curve, next to Fink's published ELAsTiCC
figures and Fink's own score (``rf_snia_vs_nonia``, stored in the alerts) on the same held-out alerts.
Caveat: Fink's published figures are on the full ELAsTiCC stream (all classes); this set has only
SN Ia and SN II.

Also: the fraction of PLAsTiCC non-transient objects (M-dwarf, EB, RRL, Mira, AGN; light curve up to
the 20th detection) scored > 0.5 by the final model.

Run:  python scripts/elasticc_experiment.py --loops 100 --seed 0
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from earlyia.features.rainbow import RainbowFeatures, transient_gate
from earlyia.io import datasets
from earlyia.learn import FastForest, Protocol, binary_metrics, run_active_learning

FINK_ELASTICC = {0.5: (0.70, 0.70), 0.6: (0.49, 0.77), 0.7: (0.26, 0.85)}
NON_TRANSIENT = ("M-dwarf", "EB", "RRL", "Mira", "AGN")


def features(lc, per: str, forced: bool = False):
    ext = RainbowFeatures.fink(survey="LSST", detections_only=not forced)
    df = ext.transform(lc, per=per)
    X = df[ext.names].to_numpy(np.float64)
    usable = df["valid"].to_numpy(bool) & transient_gate(X, ext.names) & np.isfinite(X).all(axis=1)
    return df, X, usable, ext.names


def split_objects(objects: np.ndarray, positive: np.ndarray, test_fraction: float, rng) -> np.ndarray:
    """Held-out object ids, stratified by class."""
    uniq = pd.DataFrame({"o": objects, "y": positive}).drop_duplicates("o")
    test = []
    for _, grp in uniq.groupby("y"):
        ids = grp["o"].to_numpy()
        test.append(rng.choice(ids, round(test_fraction * len(ids)), replace=False))
    return np.concatenate(test)


def table(y: np.ndarray, p: np.ndarray, thresholds) -> pd.DataFrame:
    rows = []
    for th in thresholds:
        m = binary_metrics(y, p, threshold=th)
        rows.append({"threshold": th, "efficiency": m["efficiency"], "purity": m["purity"], "n_flagged": int((p > th).sum())})
    return pd.DataFrame(rows)


def plot_curves(path: str, ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(ours["efficiency"], ours["purity"], "o-", label="earlyia Rainbow + AL (held-out alerts)")
    ax.plot(theirs["efficiency"], theirs["purity"], "s--", label="Fink's stored score, same alerts")
    for th, (e, pu) in FINK_ELASTICC.items():
        ax.plot(e, pu, "k*", ms=9)
        ax.annotate(f"Fink published {th}", (e, pu), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("efficiency")
    ax.set_ylabel("purity")
    ax.set_xlim(0, 1)
    ax.set_ylim(0.4, 1.01)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loops", type=int, default=100)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--initial", type=int, default=50)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--test-fraction", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-plasticc", action="store_true", help="skip the PLAsTiCC non-transient check")
    ap.add_argument("--forced", action="store_true", help="also fit the forced photometry carried by the alerts (not only detections)")
    ap.add_argument("--plot", default=None, help="save the efficiency/purity curves to this image file")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    lc = datasets.elasticc(forced=args.forced)
    df, X, usable, _names = features(lc, per="alert", forced=args.forced)
    y = (df["label"] == "SN Ia").to_numpy(bool)
    obj = df["object_id"].to_numpy(object)
    print(
        f"ELAsTiCC: {len(df)} alerts of {lc.n_objects} objects; usable (cuts, fit, rising): {usable.mean():.1%}; "
        f"features in {time.perf_counter() - t0:.0f} s"
    )

    test_ids = split_objects(obj, y, args.test_fraction, rng)
    is_test = np.isin(obj, test_ids)
    pool = np.flatnonzero(~is_test & usable)
    proto = Protocol(name="fink", n_initial=args.initial, n_initial_positive=args.initial // 2, n_loops=args.loops, batch_size=args.batch)
    t0 = time.perf_counter()
    res = run_active_learning(
        X[pool], y[pool], strategy="uncertainty", protocol=proto,
        classifier=FastForest(n_estimators=args.trees, random_state=args.seed), random_state=args.seed, ids=obj[pool],
    )  # fmt: skip
    n_lab = len(res.training_indices())
    print(f"active learning: {n_lab} labels ({args.initial} initial + {args.loops} x {args.batch}), {time.perf_counter() - t0:.0f} s")

    test = np.flatnonzero(is_test)
    p = np.zeros(len(test))
    ok = usable[test]
    p[ok] = res.classifier.predict_proba(X[test][ok])[:, 1]
    anchor = lc.alerts["rf_snia_vs_nonia"].to_numpy(float)[test] if "rf_snia_vs_nonia" in lc.alerts else np.zeros(len(test))
    yt = y[test]
    print(f"held-out: {len(test_ids)} objects, {len(test)} alerts ({yt.mean():.1%} SN Ia); usable {ok.mean():.1%}")
    print()
    print(
        "| threshold | earlyia efficiency | earlyia purity | Fink published (all ELAsTiCC) eff / pur | Fink's stored score here eff / pur |"
    )
    print("|---|---|---|---|---|")
    ours = table(yt, p, (0.5, 0.6, 0.7))
    theirs = table(yt, np.nan_to_num(anchor), (0.5, 0.6, 0.7))
    for (_, a), (_, b) in zip(ours.iterrows(), theirs.iterrows(), strict=True):
        fe, fp = FINK_ELASTICC[a["threshold"]]
        fink_here = f"{b['efficiency']:.3f} / {b['purity']:.3f}"
        print(f"| {a['threshold']:.1f} | {a['efficiency']:.3f} | {a['purity']:.3f} | {fe:.2f} / {fp:.2f} | {fink_here} |")
    print()
    print("full curve (held-out alerts):")
    curve = table(yt, p, np.round(np.arange(0.05, 1.0, 0.05), 2))
    print(curve.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.plot:
        plot_curves(args.plot, curve, table(yt, np.nan_to_num(anchor), curve["threshold"].to_numpy()))
    ndet = df["n_detections"].to_numpy()[test]
    print()
    print("by detections so far (threshold 0.5): n_det  alerts  efficiency  purity")
    for lo, hi in ((1, 7), (8, 10), (11, 15), (16, 1000)):
        sel = (ndet >= lo) & (ndet <= hi)
        if sel.sum():
            m = binary_metrics(yt[sel], p[sel], threshold=0.5)
            print(f"  {lo}-{hi}: {sel.sum():6d}  {m['efficiency']:.3f}  {m['purity']:.3f}")

    if not args.no_plasticc:
        pl = datasets.plasticc()
        keep = np.flatnonzero(pl.objects["label"].isin(NON_TRANSIENT).to_numpy())
        sub = pl.take(keep).truncate(20)
        dfp, Xp, usable_p, _ = features(sub, per="object", forced=args.forced)
        pp = np.zeros(len(dfp))
        pp[usable_p] = res.classifier.predict_proba(Xp[usable_p])[:, 1]
        print()
        fitted = dfp["valid"].to_numpy(bool) & np.isfinite(Xp).all(axis=1)
        pp_nogate = np.zeros(len(dfp))
        pp_nogate[fitted] = res.classifier.predict_proba(Xp[fitted])[:, 1]
        print(
            f"PLAsTiCC non-transients ({', '.join(NON_TRANSIENT)}; first 20 detections): {len(dfp)} objects, "
            f"usable {usable_p.mean():.1%}, scored > 0.5: {(pp > 0.5).mean():.2%} "
            f"(without the transient gate: {(pp_nogate > 0.5).mean():.2%})"
        )
        for lab, grp in pd.DataFrame({"label": sub.objects["label"].to_numpy(), "p": pp}).groupby("label"):
            print(f"  {lab}: {len(grp)} objects, > 0.5: {(grp['p'] > 0.5).mean():.2%}")


if __name__ == "__main__":
    main()
