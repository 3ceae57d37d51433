"""Figure: simulated vs real ZTF statistics (docs/figures/sim_vs_real.png).

Measures the same quantities, the same way, on the real labelled ZTF set (shared data) and on a
simulated sample: SN Ia and SN II r-band peak magnitudes, SN Ia g-r near peak, days from first
detection to the r peak (SN Ia), per-band revisit intervals and the magnitude error vs magnitude.
Real light curves are complete, simulated ones stop at 20 detections, so the rise-time panel only
uses objects peaking before their 20th detection in both.

Run from the repository root: ``python scripts/compare_sim_real.py [--n 4000] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from earlyia.data import data_dir
from earlyia.sim import simulate

HERE = Path(__file__).resolve().parent


def _derive_module():
    spec = importlib.util.spec_from_file_location(
        "derive_sim_params", HERE / "derive_sim_params.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def sim_long(n: int, seed: int) -> pd.DataFrame:
    lc = simulate(n, random_state=seed)
    phot, obj, _ = lc.to_frames()
    phot = phot.merge(obj[["object_id", "label"]], on="object_id")
    det = phot["detected"].to_numpy()
    flux = np.abs(phot["flux"].to_numpy())
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = np.where(det, -2.5 * np.log10(flux) + 27.5, np.nan)
        sig = np.where(det, 1.0857 * phot["flux_err"].to_numpy() / flux, np.nan)
    return pd.DataFrame(
        {
            "objectId": phot["object_id"],
            "jd": phot["mjd"],
            "fid": np.where(phot["band"] == "g", 1, 2),
            "mag": mag,
            "sigma": sig,
            "cls": phot["label"],
        }
    )


def per_object(phot: pd.DataFrame, cls: str) -> pd.DataFrame:
    """peak_r, g-r near the r peak (pairs within 1 day, within 5 days of the peak), days to peak,
    n detections before peak."""
    rows = []
    det = phot[(phot["cls"] == cls) & phot["mag"].notna()]
    for oid, g in det.groupby("objectId"):
        r = g[g["fid"] == 2].sort_values("jd")
        gg = g[g["fid"] == 1]
        if len(r) < 1:
            continue
        k = int(np.argmin(r["mag"].to_numpy()))
        tp = float(r["jd"].to_numpy()[k])
        first = float(g["jd"].min())
        n_before = int((g["jd"] <= tp).sum())
        col = np.nan
        if len(gg):
            tg, mg = gg["jd"].to_numpy(), gg["mag"].to_numpy()
            near = r[np.abs(r["jd"] - tp) <= 5.0]
            d = [
                mg[np.argmin(np.abs(tg - t))] - m
                for t, m in zip(near["jd"], near["mag"], strict=True)
                if np.min(np.abs(tg - t)) <= 1.0
            ]
            col = float(np.median(d)) if d else np.nan
        declined = k < len(r) - 1
        rows.append(
            {
                "objectId": oid,
                "peak_r": float(r["mag"].min()),
                "gr": col,
                "rise": tp - first,
                "n_before": n_before,
                "declined": declined,
            }
        )
    return pd.DataFrame(rows)


def intervals(phot: pd.DataFrame, fid: int) -> np.ndarray:
    out = []
    for _, g in phot[phot["fid"] == fid].groupby("objectId"):
        dt = np.diff(np.unique(g["jd"].to_numpy()))
        out.append(dt[dt > 0.02])
    return np.concatenate(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE.parent / "docs" / "figures" / "sim_vs_real.png"))
    args = ap.parse_args(argv)
    real = _derive_module().load_labelled(data_dir())
    sim = sim_long(args.n, args.seed)
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    kw_real = dict(
        histtype="step", density=True, lw=1.8, color="k", label="real ZTF (TNS-labelled)"
    )
    kw_sim = dict(
        histtype="stepfilled",
        density=True,
        alpha=0.45,
        color="tab:blue",
        label=f"simulated (n={args.n})",
    )

    ia_r, ia_s = per_object(real, "SN Ia"), per_object(sim, "SN Ia")
    ii_r, ii_s = per_object(real, "SN II"), per_object(sim, "SN II")
    bins = np.linspace(15.5, 21, 34)
    ax = axes[0][0]
    ax.hist(ia_s["peak_r"], bins, **kw_sim)
    ax.hist(ia_r["peak_r"], bins, **kw_real)
    ax.set_xlabel("SN Ia brightest r magnitude")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    ax.hist(ii_s["peak_r"], bins, **kw_sim)
    ax.hist(ii_r["peak_r"], bins, **kw_real)
    ax.set_xlabel("SN II brightest r magnitude")
    ax = axes[0][2]
    b = np.linspace(-1, 1.5, 31)
    ax.hist(ia_s["gr"].dropna(), b, **kw_sim)
    ax.hist(ia_r["gr"].dropna(), b, **kw_real)
    ax.hist(
        ii_s["gr"].dropna(),
        b,
        histtype="stepfilled",
        density=True,
        alpha=0.3,
        color="tab:orange",
        label="simulated SN II",
    )
    ax.hist(
        ii_r["gr"].dropna(),
        b,
        histtype="step",
        density=True,
        lw=1.5,
        color="tab:red",
        ls="--",
        label="real SN II",
    )
    ax.set_xlabel("g - r near the r peak")
    ax.legend(fontsize=7)
    ax = axes[1][0]
    sel_r = ia_r[ia_r["declined"] & (ia_r["n_before"] <= 20)]
    sel_s = ia_s[ia_s["declined"] & (ia_s["n_before"] <= 20)]
    b = np.linspace(0, 40, 31)
    ax.hist(sel_s["rise"], b, **kw_sim)
    ax.hist(sel_r["rise"], b, **kw_real)
    ax.set_xlabel("SN Ia: days from first detection to r peak")
    ax = axes[1][1]
    b = np.linspace(0, 12, 49)
    for fid, name, ls in ((1, "g", "-"), (2, "r", "--")):
        ax.hist(
            intervals(sim, fid),
            b,
            histtype="step",
            density=True,
            lw=1.2,
            ls=ls,
            color="tab:blue",
            label=f"simulated {name}",
        )
        ax.hist(
            intervals(real, fid),
            b,
            histtype="step",
            density=True,
            lw=1.8,
            ls=ls,
            color="k",
            label=f"real {name}",
        )
    ax.set_xlabel("revisit interval per band (days)")
    ax.legend(fontsize=7)
    ax = axes[1][2]
    for d, name, c in ((real, "real", "k"), (sim, "simulated", "tab:blue")):
        x = d.dropna(subset=["mag", "sigma"])
        x = x[x["sigma"] < 1]
        bins_m = np.arange(14.5, 21.5, 0.5)
        med = x.groupby(pd.cut(x["mag"], bins_m), observed=True)["sigma"].median()
        ax.plot([iv.mid for iv in med.index], med.to_numpy(), "o-", color=c, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("magnitude (detections)")
    ax.set_ylabel("median magnitude error")
    ax.legend(fontsize=8)
    fig.suptitle("built-in simulator vs the real labelled ZTF light curves (same measurements)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    for name, a, b_ in (
        ("SN Ia peak r", ia_r["peak_r"], ia_s["peak_r"]),
        ("SN Ia g-r", ia_r["gr"], ia_s["gr"]),
        ("SN II g-r", ii_r["gr"], ii_s["gr"]),
        ("SN Ia rise days", sel_r["rise"], sel_s["rise"]),
    ):
        print(f"{name:16s} real median {np.nanmedian(a):6.2f}  sim median {np.nanmedian(b_):6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
