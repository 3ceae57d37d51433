"""Derive the numbers of the built-in ZTF simulator from the shared real data.

Writes ``src/earlyia/sim/ztf_params.json`` (small: quantile tables and per-class summaries), which
:mod:`earlyia.sim.ztf` ships instead of the data. Run from the repository root::

    python scripts/derive_sim_params.py            # uses $EARLYIA_DATA or ../shared/data

Sources (read-only, never copied):

* ``ztf_fink_tns_labelled/``: real ZTF light curves with TNS types -> class fractions, peak
  magnitudes, rise/fall times (Bazin fits), g-r colour near peak, per-band revisit intervals;
* ``ztf_fink_alerts_pool/``: real ZTF alert packets -> limiting magnitudes (``diffmaglim``) and
  real-bogus scores (``drb``); the magnitude-error law is fitted on the labelled detections relative
  to the median limit (the alert pool's own fit, dominated by stars and variables, is kept as a
  cross-check under ``noise_alerts_pool``); rise times are calibrated so that simulated SNe take as
  long as real ones from first detection to peak (one simulation, see :func:`calibrate_rise`).

Numbers that the shared data cannot give (``classtar``, SIMBAD cross-match rates, AGN damping
time) are written under ``"assumed"`` with the reason, so nobody mistakes them for measurements.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from earlyia.data import data_dir  # noqa: E402

#: TNS type -> simulated class (TNS string used as the simulated label).
CLASS_OF_TYPE = {
    "SN Ia": "SN Ia",
    "SN II": "SN II",
    "SN IIP": "SN II",
    "SN IIL": "SN II",
    "SN IIb": "SN II",
    "SN II-pec": "SN II",
    "SN Ic": "SN Ic",
    "SN Ib": "SN Ic",
    "SN Ib/c": "SN Ic",
    "SN Ic-BL": "SN Ic",
    "SN Ibn": "SN Ic",
    "SN Ib-pec": "SN Ic",
    "SN Icn": "SN Ic",
    "SN IIn": "SN IIn",
    "SLSN-I": "SLSN-I",
    "SLSN-II": "SLSN-I",
    "AGN": "AGN",
    "QSO": "AGN",
    "CV": "CV",
    "Nova": "CV",
    "Varstar": "CV",
}
CLASSES = ("SN Ia", "SN II", "SN Ic", "SN IIn", "SLSN-I", "AGN", "CV")
BANDS = {1: "g", 2: "r"}
QUANTILES = np.linspace(0.0, 1.0, 41)
MIN_INTERVAL = 0.02  # days: two points closer than ~30 min are one epoch


def _clean_type(t: str) -> str:
    t = str(t).strip()
    return t[len("(TNS)") :].strip() if t.startswith("(TNS)") else t


def load_labelled(root: Path) -> pd.DataFrame:
    """Long photometry (objectId, jd, fid, mag, sigma) of the labelled set: monthly rows +
    all_nonIa, deduplicated."""
    d = root / "ztf_fink_tns_labelled"
    rows = []
    for f in sorted(d.glob("fink_cross_tns_*.parquet")):
        m = pd.read_parquet(f)
        for oid, jd, mag, sig, fid in zip(
            m["objectId"], m["cjd"], m["cmagpsf"], m["csigmapsf"], m["cfid"], strict=True
        ):
            rows.append(
                pd.DataFrame(
                    {
                        "objectId": oid,
                        "jd": np.asarray(jd, float),
                        "fid": np.asarray(fid, int),
                        "mag": np.asarray(mag, float),
                        "sigma": np.asarray(sig, float),
                    }
                )
            )
    a = pd.read_csv(d / "all_nonIa.csv.gz")
    a = a.rename(columns={"cjd": "jd", "cfid": "fid", "cmagpsf": "mag", "csigmapsf": "sigma"})
    rows.append(a[["objectId", "jd", "fid", "mag", "sigma"]])
    phot = pd.concat(rows, ignore_index=True)
    phot = phot[phot["fid"].isin(BANDS)]
    # prefer a detection when an epoch is repeated
    phot = phot.assign(_nd=phot["mag"].isna()).sort_values(["objectId", "jd", "fid", "_nd"])
    phot = phot.drop_duplicates(["objectId", "jd", "fid"], keep="first").drop(columns="_nd")
    objects = pd.read_csv(d / "objects.csv")
    objects["cls"] = objects["tns_type"].map(lambda t: CLASS_OF_TYPE.get(_clean_type(t)))
    return phot.merge(objects[["objectId", "cls"]], on="objectId", how="left")


def bazin(t, A, t0, trise, tfall):
    with np.errstate(over="ignore"):
        return A * np.exp(-(t - t0) / tfall) / (1.0 + np.exp(-(t - t0) / trise))


def fit_bazin(t: np.ndarray, f: np.ndarray, e: np.ndarray) -> tuple[float, float] | None:
    """(trise, tfall) of a Bazin fit when the peak is sampled on both sides, else None."""
    k = int(np.argmax(f))
    if k < 2 or len(f) - k < 3:
        return None
    p0 = (f[k] * 1.5, t[k] - 3.0, 3.0, 25.0)
    lo = (0.0, t[0] - 60.0, 0.2, 1.0)
    hi = (f[k] * 20.0, t[k] + 10.0, 60.0, 500.0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            p, _ = curve_fit(bazin, t, f, p0=p0, sigma=e, bounds=(lo, hi), maxfev=4000)
    except (RuntimeError, ValueError):
        return None
    trise, tfall = float(p[2]), float(p[3])
    if trise >= 59.0 or tfall >= 499.0 or tfall <= trise:
        return None
    return trise, tfall


def _summary(x) -> dict:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {"n": 0}
    q16, q50, q84 = np.percentile(x, [16, 50, 84])
    out = {
        "n": len(x),
        "median": round(float(q50), 4),
        "sigma": round(float((q84 - q16) / 2), 4),
        "mean": round(float(x.mean()), 4),
        "std": round(float(x.std()), 4),
    }
    if (
        x > 0
    ).all():  # positive scales (times, ratios): the spread of the logarithm, for log-normal draws
        out["log_sigma"] = round(float((np.log(q84) - np.log(q16)) / 2), 4)
    return out


def _quantiles(x) -> list[float]:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return [round(float(v), 4) for v in np.quantile(x, QUANTILES)]


def derive_labelled(phot: pd.DataFrame) -> dict:
    out: dict = {"classes": {}, "cadence": {}}
    labelled = phot.dropna(subset=["cls"])
    counts = labelled.drop_duplicates("objectId")["cls"].value_counts()
    total = int(counts.sum())
    out["class_fractions"] = {c: round(float(counts.get(c, 0)) / total, 4) for c in CLASSES}
    out["class_counts"] = {c: int(counts.get(c, 0)) for c in CLASSES}

    # per-band revisit intervals (all epochs, detections and limits), clipped at the 99th percentile
    for fid, name in BANDS.items():
        ivals = []
        for _, g in phot[phot["fid"] == fid].groupby("objectId"):
            t = np.unique(g["jd"].to_numpy())
            dt = np.diff(t)
            ivals.append(dt[dt > MIN_INTERVAL])
        iv = np.concatenate(ivals)
        cut = np.percentile(iv, 99)
        out["cadence"][name] = {
            "interval_quantiles": _quantiles(iv[iv <= cut]),
            **{k: v for k, v in _summary(iv).items()},
        }

    # detections-only statistics per class
    det = labelled[labelled["mag"].notna()]
    per_class = {
        c: {
            "peak_mag_r": [],
            "peak_mag_g": [],
            "gr_peak": [],
            "trise": [],
            "tfall_r": [],
            "tfall_ratio_g_r": [],
            "rise_days": [],
            "mag_std": [],
        }
        for c in CLASSES
    }
    for _oid, g in det.groupby("objectId"):
        cls = g["cls"].iloc[0]
        acc = per_class[cls]
        byband = {fid: g[g["fid"] == fid].sort_values("jd") for fid in BANDS}
        r, gg = byband[2], byband[1]
        allm = g["mag"].to_numpy()
        if len(allm) >= 3:
            acc["mag_std"].append(float(np.std(allm)))
        if len(r) >= 1:
            acc["peak_mag_r"].append(float(r["mag"].min()))
        if len(gg) >= 1:
            acc["peak_mag_g"].append(float(gg["mag"].min()))
        if len(r) >= 2:
            t_peak = float(r["jd"].to_numpy()[np.argmin(r["mag"].to_numpy())])
            acc["rise_days"].append(t_peak - float(g["jd"].min()))
            if len(gg):
                # g - r of pairs within 1 day, within 5 days of the r peak
                tg, mg = gg["jd"].to_numpy(), gg["mag"].to_numpy()
                near = r[np.abs(r["jd"] - t_peak) <= 5.0]
                diffs = []
                for tr, mr in zip(near["jd"], near["mag"], strict=True):
                    j = int(np.argmin(np.abs(tg - tr)))
                    if abs(tg[j] - tr) <= 1.0:
                        diffs.append(mg[j] - mr)
                if diffs:
                    acc["gr_peak"].append(float(np.median(diffs)))
        fits = {}
        for fid, b in byband.items():
            if len(b) >= 6:
                t = b["jd"].to_numpy() - b["jd"].to_numpy()[0]
                f = 10 ** (-0.4 * b["mag"].to_numpy() + 11)
                e = np.maximum(0.921034 * f * b["sigma"].to_numpy(), 1e-3 * f.max())
                fits[fid] = fit_bazin(t, f, e)
        if fits.get(2):
            acc["trise"].append(fits[2][0])
            acc["tfall_r"].append(fits[2][1])
            if fits.get(1):
                acc["tfall_ratio_g_r"].append(fits[1][1] / fits[2][1])
    for c, acc in per_class.items():
        out["classes"][c] = {k: _summary(v) for k, v in acc.items()}
    return out


RISE_CLASSES = ("SN Ia", "SN II", "SN Ic", "SN IIn", "SLSN-I")


def rise_days(phot: pd.DataFrame, cls: str, max_before: int = 20) -> np.ndarray:
    """Days from first detection to the brightest r detection, for objects seen to decline after
    it within their first ``max_before`` detections (so complete real and truncated simulated
    light curves compare)."""
    out = []
    det = phot[(phot["cls"] == cls) & phot["mag"].notna()]
    for _, g in det.groupby("objectId"):
        r = g[g["fid"] == 2].sort_values("jd")
        if len(r) < 2:
            continue
        k = int(np.argmin(r["mag"].to_numpy()))
        tp = float(r["jd"].to_numpy()[k])
        if k < len(r) - 1 and int((g["jd"] <= tp).sum()) <= max_before:
            out.append(tp - float(g["jd"].min()))
    return np.asarray(out)


def simulated_long(params: dict, n: int, seed: int) -> pd.DataFrame:
    """Photometry of a simulation in the layout of :func:`load_labelled` (magnitudes of
    detections)."""
    from earlyia.sim.ztf import simulate

    lc = simulate(n, class_mix={c: 1.0 for c in RISE_CLASSES}, random_state=seed, params=params)
    phot, obj, _ = lc.to_frames()
    det = phot["detected"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = np.where(det, -2.5 * np.log10(np.abs(phot["flux"].to_numpy())) + 27.5, np.nan)
    labels = obj.set_index("object_id")["label"]
    return pd.DataFrame(
        {
            "objectId": phot["object_id"],
            "jd": phot["mjd"],
            "fid": np.where(phot["band"] == "g", 1, 2),
            "mag": mag,
            "cls": labels.loc[phot["object_id"]].to_numpy(),
        }
    )


def calibrate_rise(params: dict, phot: pd.DataFrame, n: int = 5000, seed: int = 12345) -> dict:
    """Scale of the Bazin rise time per class so that simulated SNe take as long as real ones from
    first detection to peak.

    Bazin fits of sparse early data do not pin the rise down (fitted rise times made simulated SN Ia
    ~50 % slower than real ones to peak); the time from first detection to peak is measured the same
    way on both and is close to proportional to the rise time, so one simulation gives the scale.
    """
    out = {}
    trial = json.loads(json.dumps(params))
    for c in RISE_CLASSES:
        trial["classes"][c]["rise_scale"] = 1.0
    sim = simulated_long(trial, n, seed)
    for c in RISE_CLASSES:
        real, simulated = np.median(rise_days(phot, c)), np.median(rise_days(sim, c))
        out[c] = {
            "rise_scale": round(float(np.clip(real / simulated, 0.3, 3.0)), 4),
            "real_median_days": round(float(real), 3),
            "simulated_median_days_before": round(float(simulated), 3),
            "n_real": len(rise_days(phot, c)),
        }
    return out


def _fit_noise(d_mag, d_sigma, d_lim) -> dict:
    """Fit sigma_m = sqrt((s * 1.0857/5 * 10**(0.4 (m - lim)))**2 + floor**2) in log space (the
    typical error at each magnitude, robust to the tail of large errors); also the log scatter
    around it."""
    d = pd.DataFrame({"mag": d_mag, "sigma": d_sigma, "lim": d_lim}).astype(float).dropna()
    d = d[(d["sigma"] > 0) & (d["sigma"] < 1.0)]
    x = 1.0857 / 5.0 * 10 ** (0.4 * (d["mag"] - d["lim"]).to_numpy())
    y = d["sigma"].to_numpy()

    def log_law(xx, s, floor):
        return 0.5 * np.log((s * xx) ** 2 + floor**2)

    (s, floor), _ = curve_fit(
        log_law, x, np.log(y), p0=(1.0, 0.02), bounds=((0.1, 0.001), (10.0, 0.3))
    )
    resid = np.log(y) - log_law(x, s, floor)
    return {
        "scale": round(float(s), 4),
        "floor_mag": round(float(floor), 4),
        "log_scatter": round(float(np.std(resid)), 4),
        "n": len(y),
        "law": "sigma_m = sqrt((scale * 1.0857/5 * 10**(0.4 (m - diffmaglim)))**2 + floor_mag**2)",
    }


def derive_noise(phot: pd.DataFrame, depth: dict) -> dict:
    """The error law of the simulated population (the labelled SNe and contaminants), relative to
    the median depth.

    The labelled set has no per-epoch limit, so its detections are fitted with the median
    ``diffmaglim`` of their band (from the alert pool) as the limit: ``scale`` absorbs the offset.
    """
    det = phot[phot["mag"].notna() & phot["sigma"].notna()]
    lim = det["fid"].map({fid: depth[name]["median"] for fid, name in BANDS.items()})
    out = _fit_noise(det["mag"], det["sigma"], lim)
    out["fitted_on"] = (
        "ztf_fink_tns_labelled detections, limit = median diffmaglim of the band "
        "(ztf_fink_alerts_pool)"
    )
    return out


def derive_alerts(root: Path) -> dict:
    p = pd.read_parquet(root / "ztf_fink_alerts_pool" / "ztf_alerts_pool.parquet")
    rows = [
        pd.DataFrame(
            {
                "jd": p["cand_jd"],
                "fid": p["cand_fid"],
                "mag": p["cand_magpsf"],
                "sigma": p["cand_sigmapsf"],
                "lim": p["cand_diffmaglim"],
                "drb": p["cand_drb"],
                "objectId": p["objectId"],
            }
        )
    ]
    for oid, prv in zip(p["objectId"], p["prv_candidates"], strict=True):
        if prv is None or len(prv) == 0:
            continue
        q = pd.DataFrame(list(prv))
        rows.append(
            pd.DataFrame(
                {
                    "jd": q["jd"],
                    "fid": q["fid"],
                    "mag": q.get("magpsf"),
                    "sigma": q.get("sigmapsf"),
                    "lim": q.get("diffmaglim"),
                    "drb": q.get("drb"),
                    "objectId": oid,
                }
            )
        )
    a = pd.concat(rows, ignore_index=True).drop_duplicates(["objectId", "jd", "fid"])
    a = a[a["fid"].isin(BANDS)]
    out: dict = {"depth": {}, "noise": {}}
    for fid, name in BANDS.items():
        lim = a.loc[(a["fid"] == fid), "lim"].astype(float)
        lim = lim[(lim > 17.0) & (lim < 22.5)]
        out["depth"][name] = {"diffmaglim_quantiles": _quantiles(lim), **_summary(lim)}
    out["noise_alerts_pool"] = _fit_noise(d_mag=a["mag"], d_sigma=a["sigma"], d_lim=a["lim"])
    drb = a["drb"].astype(float)
    det_drb = drb[a["mag"].notna() & drb.notna()]
    out["drb_quantiles"] = _quantiles(det_drb)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", default=None, help="shared data directory (default: earlyia.data.data_dir())"
    )
    ap.add_argument("--out", default=str(REPO / "src" / "earlyia" / "sim" / "ztf_params.json"))
    args = ap.parse_args(argv)
    root = Path(args.data) if args.data else data_dir()
    phot = load_labelled(root)
    params = {
        "about": "Numbers of earlyia.sim.ztf derived by scripts/derive_sim_params.py from "
        "shared real "
        "ZTF data "
        "(ztf_fink_tns_labelled, ztf_fink_alerts_pool); the data are not shipped.",
        "class_of_type": CLASS_OF_TYPE,
        **derive_labelled(phot),
        **derive_alerts(root),
        "assumed": {
            "classtar": {
                "value": [0.6, 1.0],
                "why": "uniform; classtar is not in the shared data; transients on galaxies mostly "
                "> 0.6",
            },
            "cdsxmatch": {
                "SN": {"Unknown": 0.9, "Galaxy": 0.1},
                "AGN": {"Unknown": 0.6, "QSO": 0.25, "Seyfert_1": 0.15},
                "CV": {"Unknown": 0.6, "CataclyV*": 0.4},
                "why": "the labelled set has no SIMBAD cross-match; rates chosen so that most "
                "objects pass Fink's cut",
            },
            "agn_tau_days": {
                "value": [50.0, 300.0],
                "why": "damped-random-walk time scale, log-uniform; early windows cannot "
                "measure it",
            },
            "window": {
                "pre_days": [5.0, 40.0],
                "why": "the survey watches the field for 5-40 days before the explosion (limits "
                "first)",
            },
            "mjd_range": [58760.0, 59120.0],
        },
    }
    params["noise"] = derive_noise(phot, params["depth"])
    cal = calibrate_rise(params, phot)
    for c, v in cal.items():
        params["classes"][c]["rise_scale"] = v["rise_scale"]
    params["rise_calibration"] = cal
    Path(args.out).write_text(json.dumps(params, indent=1) + "\n")
    print(f"wrote {args.out}")
    for c in CLASSES:
        k = params["classes"][c]
        print(
            f"{c:7s} frac={params['class_fractions'][c]:.3f} "
            f"peak_r={k['peak_mag_r'].get('median')} "
            f"g-r={k['gr_peak'].get('median')} trise={k['trise'].get('median')} "
            f"(n={k['trise'].get('n')}) "
            f"tfall={k['tfall_r'].get('median')} rise_days={k['rise_days'].get('median')}"
        )
    print(
        "noise",
        params["noise"],
        "depth r",
        params["depth"]["r"]["median"],
        "g",
        params["depth"]["g"]["median"],
    )
    print(
        "cadence r median", params["cadence"]["r"]["median"], "g", params["cadence"]["g"]["median"]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
