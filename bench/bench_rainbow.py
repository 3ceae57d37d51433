"""Rainbow speed and agreement: earlyia's batched fit vs light-curve's RainbowFit, same run, same
light curves.

Data: ELAsTiCC alerts processed by Fink (``elasticc_fink_ia_ii``), one light curve per alert (its
history as of the alert), detections only, Fink's ELAsTiCC cuts (>= 7 points after intraday
averaging, flux >= -10 nJy). Both codes fit exactly the same points (ours after its preprocessing)
with the same model, bounds and prior (``RainbowFit(bolometric="sigmoid", temperature="sigmoid",
with_baseline=False)``, light-curve 0.13.3, iminuit).

Speed: light curves per second on one core (the process pins itself to CPU 0, numba/BLAS threads 1),
median over ``--repeats`` interleaved rounds (light-curve, then each earlyia configuration, so all
see the same load; the speed-up is the median of per-round ratios), numba compilation excluded
(warm-up call). earlyia's time includes its preprocessing; light-curve's does not (it gets the
preprocessed arrays), which favours it.

Agreement (on the light-curve sample): among fits where both converge, the fraction whose six
parameters all agree within the two fits' combined 1-sigma errors, and the χ² difference.

Against an earlier version of the fit (per light curve, all of them): ``--save FILE.npz`` stores the
cost (χ² + prior) and status of the first configuration; ``--against FILE.npz`` compares with a
stored run, e.g.
of the code at an older commit (this script only needs ``fit_segments``)::

    git worktree add /tmp/rainbow_old c3ddf5a PYTHONPATH=/tmp/rainbow_old/src python
    bench/bench_rainbow.py --n-starts 6 --repeats 1 --n-lc 20 --save old.npz
    python bench/bench_rainbow.py --n-lc 500 --repeats 3 --against old.npz

Run:  python bench/bench_rainbow.py --n-lc 500 --repeats 3
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from earlyia.features import _rainbow_kernel as kern  # noqa: E402
from earlyia.features.passbands import effective_wavelengths  # noqa: E402
from earlyia.features.rainbow import NJY_TO_FLUXCAL, PARAM_NAMES, RainbowFeatures, fit_segments  # noqa: E402
from earlyia.io import datasets  # noqa: E402


def segments(max_alerts: int | None, seed: int):
    """ELAsTiCC alert light curves (detections only) that pass Fink's cuts; a seeded sample."""
    lc = datasets.elasticc(forced=False)
    starts, ends = lc.alert_segments()
    ext = RainbowFeatures.fink()
    table = ext.wavelength_table(lc.survey)
    code_wl = np.array([table.get(b, 0.0) for b in lc.bands])
    nu_band = kern.C_LIGHT / (code_wl * 1e-8)
    pre = kern.preprocess(
        lc.mjd,
        lc.band.astype(np.int64),
        lc.flux,
        lc.flux_err,
        lc.detected,
        starts,
        ends,
        nu_band,
        True,
        -10 * NJY_TO_FLUXCAL,
        0.5,
    )
    keep = np.where(pre[6] - pre[5] >= 7)[0]
    rng = np.random.default_rng(seed)
    if max_alerts is not None and len(keep) > max_alerts:
        keep = np.sort(rng.choice(keep, max_alerts, replace=False))
    return lc, starts[keep], ends[keep], pre, keep, code_wl


def time_ours(lc, starts, ends, code_wl, repeats, n_starts):
    kw = {
        "n_starts": n_starts,
        "band_wavelength_aa": code_wl,
        "reference_wavelength_aa": float(np.mean(code_wl[code_wl > 0])),
        "detected": lc.detected,
        "min_flux": -10 * NJY_TO_FLUXCAL,
    }
    res = fit_segments(
        lc.mjd, lc.band, lc.flux, lc.flux_err, starts[:5], ends[:5], **kw
    )  # numba warm-up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = fit_segments(lc.mjd, lc.band, lc.flux, lc.flux_err, starts, ends, **kw)
        rates.append(len(starts) / (time.perf_counter() - t0))
    return float(np.median(rates)), res


def light_curve_fitter(wl):
    import light_curve

    fit = light_curve.RainbowFit.from_angstrom(
        dict(zip("ugrizY", wl, strict=True)),
        bolometric="sigmoid",
        temperature="sigmoid",
        with_baseline=False,
    )
    return fit, light_curve.__version__


def time_theirs(fit, pre, idx, bands, repeats):
    t, _nu, f, e, b, s, en = pre
    names = np.array(bands)
    data = []
    for i in idx:
        sl = slice(s[i], en[i])
        o = np.argsort(t[sl], kind="stable")
        data.append((t[sl][o], f[sl][o], e[sl][o], names[b[sl][o]]))
    out = [None] * len(data)
    rates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for k, (ti, fi, ei, bi) in enumerate(data):
                try:
                    out[k] = fit.fit_and_get_errors(ti, fi, ei, bi)
                except (
                    RuntimeError,
                    ValueError,
                ):  # no convergence; ValueError: two points at the same time
                    out[k] = None
            rates.append(len(data) / (time.perf_counter() - t0))
    return float(np.median(rates)), out, data


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--n-lc",
        type=int,
        default=200,
        help="light curves given to light-curve's RainbowFit (slow)",
    )
    ap.add_argument(
        "--max-alerts", type=int, default=None, help="cap on the light curves we fit (default: all)"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--n-starts",
        type=int,
        nargs="+",
        default=[8, 6, 4],
        help="earlyia start counts to measure (8 = default)",
    )
    ap.add_argument(
        "--save", help="store per-light-curve cost and status of the first configuration (.npz)"
    )
    ap.add_argument("--against", help="compare the first configuration with a run stored by --save")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the process to CPU 0")
    args = ap.parse_args()
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    lc, starts, ends, pre, keep, code_wl = segments(args.max_alerts, args.seed)
    print(
        f"ELAsTiCC alert light curves passing Fink's Rainbow cuts: {len(starts)} (of "
        f"{len(lc.alert_segments()[0])} alerts)"
    )
    wl = effective_wavelengths("LSST")
    fit, version = light_curve_fitter(wl)
    rng = np.random.default_rng(args.seed + 1)
    sample = np.sort(rng.choice(len(starts), min(args.n_lc, len(starts)), replace=False))
    # interleaved rounds: one light-curve pass, then every earlyia configuration, so that both see
    # the same load; speed-ups are medians of per-round ratios
    theirs_rates, ours_rates, results = [], {n: [] for n in args.n_starts}, {}
    for n in args.n_starts:
        time_ours(lc, starts[:5], ends[:5], code_wl, 1, n)  # numba warm-up
    for _ in range(args.repeats):
        rate, out, data = time_theirs(fit, pre, keep[sample], lc.bands, 1)
        theirs_rates.append(rate)
        for n in args.n_starts:
            rate_n, results[n] = time_ours(lc, starts, ends, code_wl, 1, n)
            ours_rates[n].append(rate_n)
    theirs_rate = float(np.median(theirs_rates))
    lc_conv = sum(o is not None for o in out) / len(out)
    print(
        f"light-curve {version} RainbowFit (iminuit): {theirs_rate:,.1f} LC/s/core (median "
        f"of {args.repeats}) on {len(sample)} "
        f"of the same light curves; converged {lc_conv:.1%}"
    )
    print()
    print(
        "| n_starts | earlyia LC/s/core | speed-up (range over rounds) | evaluations per fit "
        "| converged | both converged | "
        "all 6 params within 1 sigma | "
        "median chi2 ours - theirs | ours lower (>0.01) | ours higher (>1) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n_starts in args.n_starts:
        res = results[n_starts]
        ours_rate = float(np.median(ours_rates[n_starts]))
        ratios = np.array(ours_rates[n_starts]) / np.array(theirs_rates)
        speedup = float(np.median(ratios))
        conv = (res["status"] == 0).mean()
        evals = f"{res['n_passes'].mean():.0f}" if "n_passes" in res else "-"
        agree, dchi2 = [], []
        for k, i in enumerate(sample):
            if out[k] is None or res["status"][i] != 0:
                continue
            ti, fi, ei, bi = data[k]
            values, errors = out[k]
            theirs = values[:-1]
            their_cost = (
                np.sum(((fit.model(ti, bi, *theirs) - fi) / ei) ** 2) + (theirs[4] / 0.25) ** 2
            )
            ours = res["params"][i]
            dchi2.append(res["chi2"][i] + (ours[4] / 0.25) ** 2 - their_cost)
            sig = np.hypot(np.sqrt(np.diag(res["cov"][i])), errors)
            agree.append(np.abs(ours - theirs) <= sig)
        agree, dchi2 = np.array(agree), np.array(dchi2)
        print(
            f"| {n_starts} | {ours_rate:,.0f} | {speedup:,.0f}x "
            f"({ratios.min():,.0f}-{ratios.max():,.0f}) | {evals} | {conv:.1%} | "
            f"{len(agree)}/{len(sample)} | "
            f"{agree.all(axis=1).mean():.1%} | {np.median(dchi2):+.3f} | "
            f"{(dchi2 < -0.01).mean():.1%} | {(dchi2 > 1).mean():.1%} |"
        )
        if n_starts == args.n_starts[0]:
            per = ", ".join(
                f"{n} {a:.0%}" for n, a in zip(PARAM_NAMES, agree.mean(axis=0), strict=True)
            )
            detail = f"(n_starts={n_starts}) per parameter within 1 sigma: {per}"
    print()
    print(detail)
    first = results[args.n_starts[0]]
    cost = first["chi2"] + (first["params"][:, 4] / 0.25) ** 2
    if args.save:
        np.savez(args.save, cost=cost, status=first["status"], starts=starts, ends=ends)
        print(f"saved n_starts={args.n_starts[0]} per-light-curve costs to {args.save}")
    if args.against:
        compare_runs(
            cost, first["status"], starts, np.load(args.against), args.n_starts[0], args.against
        )


def compare_runs(cost, status, starts, old, n_starts, name):
    """Same light curves, two versions of the fit: who reaches the lower cost (χ² + prior)."""
    if not np.array_equal(old["starts"], starts):
        raise SystemExit(f"{name} was run on other light curves (different --max-alerts/--seed?)")
    ok, old_ok = status == 0, old["status"] == 0
    both = ok & old_ok
    d = (cost - old["cost"])[both]
    tol = 0.01 + 1e-4 * old["cost"][both]
    print()
    print(
        f"n_starts={n_starts} against {name}, all {len(starts)} light curves: converged "
        f"{ok.mean():.1%} "
        f"(stored run {old_ok.mean():.1%}); among the {both.sum()} both converged,"
    )
    print(
        f"cost (chi2 + prior) lower by > 0.01: {np.mean(d < -tol):.1%}, within 0.01: "
        f"{np.mean(np.abs(d) <= tol):.1%}, higher by > 0.01: "
        f"{np.mean(d > tol):.1%}, higher by > 1: {np.mean(d > 1):.1%}; median difference "
        f"{np.median(d):+.3f}"
    )


if __name__ == "__main__":
    main()
