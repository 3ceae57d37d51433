"""Figures of docs/features.md (sigmoid features): run ``python bench/fig_features.py [--out
docs/figures]``.

1. ``features_fink_vs_reference.png``: our "fink" mode vs Fink's own output on the shared labelled
   ZTF set (fitted a_r, b_r, and the anchor score with Fink's model).
2. ``features_availability.png``: on the alert-by-alert replay of the real labelled ZTF set, the
   fraction of alerts with usable features vs the number of detections, fink mode vs robust mode.
3. ``features_example_fits.png``: real SN Ia at their 8th detection with the fink and robust
   sigmoids (top: both modes fit; bottom: Fink's rising test or point count fails, the robust mode
   fits).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from earlyia.data import reference_dir, shared_path
from earlyia.features.sigmoid import SigmoidFeatures
from earlyia.io import datasets, read
from earlyia.model.fink_pickle import fink_scores, load_fink_model
from earlyia.select import fink_cuts


def _sig(t, a, b, c):
    return c / (1 + np.exp(-a * (t - b)))


def fig_reference(out: Path) -> None:
    ref = pd.read_parquet(reference_dir() / "fink_sigmoid_reference_ztf.parquet")
    months = sorted(set(ref["source"]) - {"all_nonIa.csv.gz"})
    ext = SigmoidFeatures(mode="fink")
    frames = []
    for m in months:
        lc = read(shared_path(f"ztf_fink_tns_labelled/{m}"))
        df = ext.transform(lc, per="alert").assign(source=m, row=lc.alerts["row"].to_numpy())
        frames.append(df)
    ours = pd.concat(frames).set_index(["source", "row"])
    r = ref[ref["row"] >= 0].set_index(["source", "row"])
    ours = ours.loc[r.index]
    model = load_fink_model(shared_path("anchor_models_fink/default-model_sigmoid.obj.xz"))
    score = fink_scores(ours[ext.names].to_numpy(), model)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, name in zip(axes[:2], ("a_r", "b_r"), strict=True):
        m = r[name].to_numpy() != 0
        ax.scatter(r[name][m], ours[name][m], s=8)
        lim = [
            min(r[name][m].min(), ours[name][m].min()),
            max(r[name][m].max(), ours[name][m].max()),
        ]
        ax.plot(lim, lim, "k:", lw=1)
        ax.set_xlabel(f"Fink (actsnfink + scipy) {name}")
        ax.set_ylabel(f"earlyia fink mode {name}")
        ax.set_title(f"{name}: {m.sum()} fitted bands")
    axes[2].scatter(r["anchor_score"], score, s=8)
    axes[2].plot([0, 1], [0, 1], "k:", lw=1)
    d = np.abs(score - r["anchor_score"].to_numpy())
    axes[2].set_title(f"score: {np.mean(d <= 1e-6):.2%} within 1e-6, max {d.max():.3f}")
    axes[2].set_xlabel("Fink anchor score")
    axes[2].set_ylabel("earlyia fink features + Fink's forest")
    fig.tight_layout()
    fig.savefig(out / "features_fink_vs_reference.png", dpi=110)


def fig_availability(out: Path) -> None:
    lc = datasets.replay()
    k = lc.alerts["ndethist"].to_numpy()
    fink = SigmoidFeatures(mode="fink").transform(lc, per="alert")
    fink_ok = fink["valid"].to_numpy() & fink_cuts(lc)
    rob = SigmoidFeatures().transform(lc, per="alert")
    both = (rob["ok_g"] == 1).to_numpy() & (rob["ok_r"] == 1).to_numpy()
    anyb = rob["valid"].to_numpy()
    ks = np.arange(3, 21)
    fig, ax = plt.subplots(figsize=(6, 4))
    for y, lab in (
        (fink_ok, "fink: both bands (score possible)"),
        (both, "robust: both bands fitted"),
        (anyb, "robust: >= 1 band fitted"),
    ):
        ax.plot(ks, [y[k == kk].mean() for kk in ks], marker="o", label=lab)
    ax.set_xlabel("detections so far (alert k of the replay)")
    ax.set_ylabel("fraction of alerts with features")
    ax.set_title("Real ZTF replay (1 444 objects, 19 778 alerts)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "features_availability.png", dpi=110)


def fig_examples(out: Path, n: int = 6) -> None:
    lc = datasets.replay()
    k = lc.alerts["ndethist"].to_numpy()
    labels = lc.objects["label"].to_numpy(object)[lc.alerts["object_index"].to_numpy()]
    sel = np.flatnonzero((k == 8) & (labels == "SN Ia"))
    fink = SigmoidFeatures(mode="fink")
    rob = SigmoidFeatures()
    starts, ends = lc.alert_segments()
    Xf, okf, _ = fink.extract_lc(lc, starts[sel], ends[sel])
    Xr, okr, _ = rob.extract_lc(lc, starts[sel], ends[sel])
    pick = list(np.flatnonzero(okf)[: n // 2]) + list(np.flatnonzero(~okf & okr)[: n - n // 2])
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, j in zip(axes.ravel(), pick, strict=False):
        s, e = starts[sel[j]], ends[sel[j]]
        det = lc.detected[s:e]
        tref = lc.mjd[s:e][det].min()
        for code, col, bn in ((0, "tab:green", "g"), (1, "tab:red", "r")):
            m = det & (lc.band[s:e] == code)
            t = lc.mjd[s:e][m]
            ax.errorbar(t - tref, lc.flux[s:e][m], lc.flux_err[s:e][m], fmt="o", color=col, ms=4)
            tt = np.linspace(-5, t.max() - tref + 5 if m.any() else 10, 200)
            o = rob.names.index(f"a_{bn}")
            if Xr[j, rob.names.index(f"ok_{bn}")] == 1:
                ax.plot(tt, _sig(tt, *Xr[j, o : o + 3]), color=col, lw=1.5, label=f"robust {bn}")
            of = fink.names.index(f"a_{bn}")
            if Xf[j, of] != 0 and m.any():
                t0 = (
                    np.rint(t.min() + 2400000.5) - 2400000.5 - tref
                )  # Fink's dt origin: its first night
                ax.plot(
                    tt,
                    _sig(tt - t0, *Xf[j, of : of + 3]),
                    color=col,
                    lw=1,
                    ls="--",
                    label=f"fink {bn}",
                )
        label = lc.objects["label"].iloc[lc.alerts["object_index"].iloc[sel[j]]]
        ax.set_title(
            f"{lc.object_ids[lc.alerts['object_index'].iloc[sel[j]]]} ({label}), 8 detections",
            fontsize=9,
        )
        ax.set_xlabel("days since first detection")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "features_example_fits.png", dpi=110)


def compare_modes(seed: int = 0) -> None:
    """Object-grouped 5-fold CV on the replay: per-alert AUC of a 300-tree forest on fink vs
    robust features."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    lc = datasets.replay()
    y = (lc.objects["label"] == "SN Ia").to_numpy()[lc.alerts["object_index"].to_numpy()]
    groups = lc.alerts["object_index"].to_numpy()
    k = lc.alerts["ndethist"].to_numpy()
    for mode in ("fink", "robust"):
        ext = SigmoidFeatures(mode=mode)
        X = ext.transform(lc, per="alert")[ext.names].to_numpy()
        p = np.zeros(len(y))
        for tr, te in GroupKFold(5).split(X, y, groups):
            rf = RandomForestClassifier(300, min_samples_leaf=2, random_state=seed).fit(
                X[tr], y[tr]
            )
            p[te] = rf.predict_proba(X[te])[:, 1]
        aucs = ", ".join(
            f"k <= {n}: {roc_auc_score(y[k <= n], p[k <= n]):.3f}" for n in (5, 10, 20)
        )
        print(f"{mode:7s} per-alert AUC (SN Ia vs rest, objects never split): {aucs}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="docs/figures")
    ap.add_argument(
        "--classify", action="store_true", help="also print the fink-vs-robust AUC comparison"
    )
    args = ap.parse_args()
    if args.classify:
        compare_modes()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig_reference(out)
    fig_availability(out)
    fig_examples(out)
    print(f"figures written to {out}")


if __name__ == "__main__":
    main()
