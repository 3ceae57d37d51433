"""Built-in ZTF-like early light curves: SN Ia and its main contaminants, with no data to download.

Why: the demo, the tests and anyone without data need realistic *early* alert streams. Every
number here comes from ``ztf_params.json``, derived from real shared ZTF data by
``scripts/derive_sim_params.py`` (the data are not shipped; the numbers the data could not give are
under ``"assumed"`` in the JSON, with the reason).

Model, per object (all vectorised over objects with one numpy Generator):

* class drawn with the real class fractions (or ``class_mix``); label = TNS string
  (``'SN Ia', 'SN II', 'SN Ic', 'SN IIn', 'SLSN-I', 'AGN', 'CV'``);
* supernovae and CV outbursts: a Bazin curve per band, ``A exp(-(t-t0)/tfall) / (1 +
  exp(-(t-t0)/trise))``, class-specific log-normal rise and fall times (rise times scaled so that
  the time from first detection to peak matches the real one), the r-band peak magnitude and the g-r
  colour at peak drawn from the real per-class distributions, and g fading faster than r by the
  measured ratio of fall times (the colour reddens after peak);
* AGN: a damped random walk (Ornstein-Uhlenbeck) of the difference flux, which can be negative;
* cadence: per-band revisit intervals drawn from the real interval distribution (nightly-ish,
  ~2-3 days per band, with gaps), 5-sigma depth per epoch from the real ``diffmaglim``
  distribution, magnitude errors from the law fitted on real alerts (errors grow towards the limit);
* a point is a detection when its flux is 5 sigma from zero (sign allowed for AGN), otherwise an
  upper limit (NaN flux, 1-sigma flux error from the limit); each light curve stops at its
  ``max_detections``-th detection (Fink's ``ndethist <= 20`` regime).

Alerts (one per detection, ZTF-style ``candid``), ``ndethist``, ``jdstarthist`` (JD),
``drb``, ``classtar``, ``cdsxmatch``, ``ra``/``dec`` are filled like real ZTF alerts.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from earlyia.errors import ConfigError
from earlyia.io.table import JD_MJD_OFFSET, LightCurves

#: Simulated classes (TNS type strings), in a fixed order.
CLASSES = ("SN Ia", "SN II", "SN Ic", "SN IIn", "SLSN-I", "AGN", "CV")
BANDS = ("g", "r")
_BAZIN_CLASSES = ("SN Ia", "SN II", "SN Ic", "SN IIn", "SLSN-I", "CV")
_N_EPOCHS = 90  # per band and object: more than a 150-day window ever needs
_WINDOW_DAYS = (20.0, 150.0)  # length of the observed window after the pre-explosion part
_SNR_DETECT = 5.0


@lru_cache(maxsize=1)
def _params_text() -> str:
    return resources.files("earlyia.sim").joinpath("ztf_params.json").read_text()


def load_params() -> dict[str, Any]:
    """The derived simulator numbers (see ``scripts/derive_sim_params.py``); a fresh copy, safe
    to edit and pass to :func:`simulate` as ``params``."""
    return json.loads(_params_text())


def _class_counts(n: int, fractions: np.ndarray) -> np.ndarray:
    """Largest-remainder rounding: counts add up to ``n`` and follow the fractions as closely as
    integers can."""
    raw = fractions * n
    counts = np.floor(raw).astype(np.int64)
    rest = n - counts.sum()
    if rest > 0:
        counts[np.argsort(-(raw - counts), kind="stable")[:rest]] += 1
    return counts


def _mix(class_mix: dict[str, float] | None, params: dict) -> np.ndarray:
    if class_mix is None:
        frac = np.array([params["class_fractions"][c] for c in CLASSES], float)
    else:
        unknown = sorted(set(class_mix) - set(CLASSES))
        if unknown:
            raise ConfigError(
                f"class_mix has unknown class(es) {unknown}; simulated classes are {list(CLASSES)}"
            )
        frac = np.array([float(class_mix.get(c, 0.0)) for c in CLASSES])
        if (frac < 0).any() or not np.isfinite(frac).all() or frac.sum() <= 0:
            raise ConfigError(
                f"class_mix fractions must be finite, >= 0 and not all 0, got {class_mix}"
            )
    return frac / frac.sum()


def _lognormal(
    rng: np.random.Generator, summary: dict, n: int, max_sigma: float = 0.8
) -> np.ndarray:
    sigma = min(float(summary.get("log_sigma", 0.3)), max_sigma)
    return float(summary["median"]) * np.exp(sigma * rng.standard_normal(n))


def _from_quantiles(rng: np.random.Generator, quantiles: list[float], size) -> np.ndarray:
    """Inverse-CDF draws from a shipped quantile table (piecewise-linear CDF)."""
    q = np.asarray(quantiles, float)
    u = rng.random(size) * (len(q) - 1)
    k = np.minimum(u.astype(np.int64), len(q) - 2)
    return q[k] + (u - k) * (q[k + 1] - q[k])


def _bazin_peak(trise: np.ndarray, tfall: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(time of peak after t0, peak value for A = 1) of the Bazin curve."""
    dt = trise * np.log(np.maximum(tfall / trise - 1.0, 1e-3))
    return dt, np.exp(-dt / tfall) / (1.0 + np.exp(-dt / trise))


def _mag_to_flux(m):
    return 10.0 ** (-0.4 * np.asarray(m, float) + 11.0)


def simulate(
    n_objects: int,
    *,
    class_mix: dict[str, float] | None = None,
    random_state: int | np.random.Generator | None = None,
    max_detections: int = 20,
    id_prefix: str = "sim",
    params: dict | None = None,
) -> LightCurves:
    """Simulate ``n_objects`` ZTF-like early light curves (g, r), labelled with TNS type strings.

    Args:
        n_objects: number of objects (each has at least one detection). class_mix: ``{class:
        fraction}`` over :data:`CLASSES`; default the real fractions. random_state: seed or numpy
        Generator (same seed, same light curves). max_detections: each light curve stops at this
        detection (default 20, Fink's ``ndethist`` cut). id_prefix: object ids are
        ``f"{id_prefix}{i:07d}"``. params: numbers to use instead of the shipped ones (same layout
        as :func:`load_params`).
    """
    if int(n_objects) < 0:
        raise ConfigError(f"n_objects must be >= 0, got {n_objects}")
    if int(max_detections) < 1:
        raise ConfigError(f"max_detections must be >= 1, got {max_detections}")
    n = int(n_objects)
    rng = np.random.default_rng(random_state)
    params = load_params() if params is None else params
    counts = _class_counts(n, _mix(class_mix, params))
    cls = rng.permutation(np.repeat(np.arange(len(CLASSES)), counts))

    blocks = []
    todo = np.arange(n)
    for _attempt in range(20):  # objects with no detection are simulated again (rare: faint or AGN)
        if len(todo) == 0:
            break
        blk = _simulate_block(cls[todo], rng, params, int(max_detections))
        has_det = np.bincount(blk["obj"][blk["detected"]], minlength=len(todo)) > 0
        keep_pts = has_det[blk["obj"]]
        blk = {
            k: (v[keep_pts] if np.ndim(v) and len(v) == len(keep_pts) else v)
            for k, v in blk.items()
        }
        glob = todo[blk["obj"]]
        blocks.append(
            (glob, blk, todo[has_det], {k: v[has_det] for k, v in blk["objects"].items()})
        )
        todo = todo[~has_det]
    return _assemble(blocks, cls, n, rng, params, id_prefix)


def _simulate_block(cls: np.ndarray, rng: np.random.Generator, params: dict, max_det: int) -> dict:
    """Photometry of objects of classes ``cls`` (indices into CLASSES), flattened and
    time-sorted."""
    m = len(cls)
    P = params["classes"]
    noise = params["noise"]
    assumed = params["assumed"]
    peak_r = np.empty(m)
    colour = np.empty(m)
    trise = np.ones(m)
    tfall_r = np.ones(m)
    ratio = np.ones(m)
    for k, name in enumerate(CLASSES):
        sel = cls == k
        c = int(sel.sum())
        if not c:
            continue
        p = P[name]
        peak_r[sel] = p["peak_mag_r"]["median"] + p["peak_mag_r"]["sigma"] * rng.standard_normal(c)
        colour[sel] = p["gr_peak"]["median"] + min(
            p["gr_peak"]["sigma"], 0.4
        ) * rng.standard_normal(c)
        if name in _BAZIN_CLASSES:
            trise[sel] = np.clip(
                _lognormal(rng, p["trise"], c) * p.get("rise_scale", 1.0), 0.3, 40.0
            )
            tfall_r[sel] = np.clip(_lognormal(rng, p["tfall_r"], c), 3.0, 300.0)
            ratio[sel] = np.clip(_lognormal(rng, p["tfall_ratio_g_r"], c, 0.3), 0.3, 1.2)
    tfall_r = np.maximum(tfall_r, 2.5 * trise)
    tfall = np.stack(
        [np.maximum(tfall_r * ratio, 2.0 * trise), tfall_r], axis=1
    )  # (m, band) g then r
    peak = np.stack([peak_r + colour, peak_r], axis=1)
    peak = np.clip(peak, 13.5, 21.5)

    # time axis: t0 = Bazin reference time; the field is watched from before the rise
    t0 = rng.uniform(*assumed["mjd_range"], size=m)
    pre = rng.uniform(*assumed["window"]["pre_days"], size=m) + 3.0 * trise
    is_cv = cls == CLASSES.index("CV")
    pre[is_cv] = rng.uniform(0.0, 60.0, size=int(is_cv.sum()))  # outburst anywhere in the window
    start = t0 - pre
    end = start + rng.uniform(*_WINDOW_DAYS, size=m) + pre

    times = np.empty((m, 2, _N_EPOCHS))
    for b, name in enumerate(BANDS):
        ivals = _from_quantiles(rng, params["cadence"][name]["interval_quantiles"], (m, _N_EPOCHS))
        ivals[:, 0] *= rng.random(m)  # random phase of the first visit
        times[:, b, :] = start[:, None] + np.cumsum(ivals, axis=1)
    valid = times <= end[:, None, None]
    # from here on only the observed epochs, flattened and sorted by (object, time, band)
    oi, bi, ei = np.nonzero(valid)
    t = times[oi, bi, ei]
    # one float key (object, then time since the window start: windows are < 1000 days); the stable
    # sort keeps g before r at equal times and is fast on the two sorted runs of each object
    order = np.argsort(oi * 1000.0 + (t - start[oi]), kind="stable")
    oi, bi, ei, t = oi[order], bi[order], ei[order], t[order]

    # true difference flux
    agn = cls == CLASSES.index("AGN")
    flux = np.zeros(len(t))
    bz = ~agn[oi]
    if bz.any():
        o, b = oi[bz], bi[bz]
        _dt_peak, norm = _bazin_peak(trise[:, None], tfall)
        A = _mag_to_flux(peak) / norm  # (m, band)
        x = t[bz] - t0[o]
        with np.errstate(over="ignore"):
            flux[bz] = A[o, b] * np.exp(-x / tfall[o, b]) / (1.0 + np.exp(-x / trise[o]))
    if agn.any():
        idx = np.flatnonzero(agn)
        tau = np.exp(rng.uniform(*np.log(assumed["agn_tau_days"]["value"]), size=len(idx)))
        row = np.full(m, -1, np.int64)
        row[idx] = np.arange(len(idx))
        a = ~bz
        flux[a] = _ou_flux(rng, t[a] - start[oi[a]], row[oi[a]], bi[a], peak[idx], tau)

    # depth and noise (flux_err^2 = (scale F_lim / 5)^2 + (0.921 floor F)^2, log-normal scatter)
    lim = np.empty(len(t))
    for b, name in enumerate(BANDS):
        sel = bi == b
        lim[sel] = _from_quantiles(
            rng, params["depth"][name]["diffmaglim_quantiles"], int(sel.sum())
        )
    f_lim = _mag_to_flux(lim)
    sky = noise["scale"] * f_lim / _SNR_DETECT  # 1-sigma background noise of the epoch
    scatter = np.exp(
        noise["log_scatter"] * rng.standard_normal(len(t))
    )  # real errors scatter around the law
    err = np.hypot(sky, 0.921034 * noise["floor_mag"] * np.abs(flux)) * scatter
    obs = flux + err * rng.standard_normal(len(t))
    det = (
        np.abs(obs) >= _SNR_DETECT * sky * scatter
    )  # 5 sigma of this epoch's actual background noise
    det &= (obs > 0) | ~bz  # only AGN vary below their reference image
    fl = np.where(det, obs, np.nan)
    fe = np.where(det, err, f_lim / _SNR_DETECT)

    # stop each light curve at its max_det-th detection
    cum = np.cumsum(det, dtype=np.int64)
    first = np.searchsorted(oi, np.arange(m))
    base = np.concatenate([[0], cum])[first]
    rank = cum - base[oi]  # detections up to and including this point
    keep = (rank - det) < max_det
    return {
        "obj": oi[keep],
        "mjd": t[keep],
        "band": bi[keep].astype(np.int8),
        "flux": fl[keep],
        "flux_err": fe[keep],
        "detected": det[keep],
        "objects": {"cls": cls},
    }


def _ou_flux(
    rng: np.random.Generator,
    dt: np.ndarray,
    obj: np.ndarray,
    band: np.ndarray,
    peak: np.ndarray,
    tau: np.ndarray,
) -> np.ndarray:
    """Difference flux of AGN: one damped random walk per object, seen in g and r with per-band
    amplitudes.

    The latent walk x(t) (unit variance, time scale ``tau``) is drawn on a daily grid from the
    window start and interpolated at the epochs ``dt`` (days since the start), so g and r vary
    together as real AGN do. The spread per band is set so that the brightest |difference| of an
    early window is near the real AGN peak magnitude (about 1.2 sigma from zero): sigma_b =
    flux(peak_b) / 1.2.
    """
    n_days = int(np.ceil(dt.max())) + 2 if len(dt) else 2
    a = np.exp(-1.0 / tau)[:, None]  # one-day decay per object
    z = rng.standard_normal((len(tau), n_days))
    x = np.empty_like(z)
    x[:, 0] = z[:, 0]
    s = np.sqrt(1.0 - a[:, 0] ** 2)
    for j in range(1, n_days):
        x[:, j] = a[:, 0] * x[:, j - 1] + s * z[:, j]
    j0 = np.minimum(dt.astype(np.int64), n_days - 2)
    w = dt - j0
    latent = (1.0 - w) * x[obj, j0] + w * x[obj, j0 + 1]
    sigma = _mag_to_flux(peak) / 1.2  # (n_agn, 2)
    return sigma[obj, band] * latent


def _assemble(
    blocks, cls: np.ndarray, n: int, rng: np.random.Generator, params: dict, id_prefix: str
) -> LightCurves:
    glob = np.concatenate([g for g, *_ in blocks]) if blocks else np.zeros(0, np.int64)
    cat = {
        k: np.concatenate([b[k] for _, b, *_ in blocks])
        for k in ("mjd", "band", "flux", "flux_err", "detected")
    }
    order = np.argsort(glob, kind="stable")  # blocks are time-sorted per object already
    glob = glob[order]
    cat = {k: v[order] for k, v in cat.items()}
    present = np.zeros(n, bool)
    present[glob] = True
    # objects that never got a detection after all attempts are dropped (practically never happens)
    keep_obj = np.flatnonzero(present)
    remap = np.full(n, -1, np.int64)
    remap[keep_obj] = np.arange(len(keep_obj))
    oi = remap[glob]
    m = len(keep_obj)
    counts = np.bincount(oi, minlength=m)
    offsets = np.zeros(m + 1, np.int64)
    offsets[1:] = np.cumsum(counts)
    det = cat["detected"]

    # alerts: one per detection, ZTF-like candid
    cum = np.cumsum(det, dtype=np.int64)
    base = np.concatenate([[0], cum])[offsets[:-1]]
    k = cum - base[oi]
    candid = np.where(det, 1_000_000_000_000 + oi.astype(np.int64) * 64 + k, -1)
    a_obj = oi[det]
    a_mjd = cat["mjd"][det]
    first_det = np.full(m, np.nan)
    first_idx = np.flatnonzero(det & (k == 1))
    first_det[oi[first_idx]] = cat["mjd"][first_idx]
    ndet = np.bincount(a_obj, minlength=m)

    assumed = params["assumed"]
    labels = np.asarray(CLASSES, dtype=object)[cls[keep_obj]]
    xmatch = np.empty(m, dtype=object)
    for group, members in (
        ("AGN", ("AGN",)),
        ("CV", ("CV",)),
        ("SN", tuple(c for c in CLASSES if c not in ("AGN", "CV"))),
    ):
        sel = np.isin(labels, members)
        opts = assumed["cdsxmatch"][group]
        names = list(opts)
        p = np.array([opts[x] for x in names], float)
        xmatch[sel] = np.asarray(names, dtype=object)[
            rng.choice(len(names), size=int(sel.sum()), p=p / p.sum())
        ]
    sindec = rng.uniform(np.sin(np.radians(-30.0)), 1.0, size=m)
    a_drb = _from_quantiles(rng, params["drb_quantiles"], len(a_obj))
    a_classtar = rng.uniform(*assumed["classtar"]["value"], size=len(a_obj))
    a_candid = candid[det]
    alerts = pd.DataFrame(
        {
            "object_index": a_obj.astype(np.int64),
            "alert_id": a_candid.astype(str).astype(object),
            "mjd": a_mjd,
            "ndethist": k[det].astype(np.int64),
            "jdstarthist": first_det[a_obj] + JD_MJD_OFFSET,
            "drb": a_drb,
            "classtar": a_classtar,
            "cdsxmatch": xmatch[a_obj],
        }
    )
    last_alert = np.concatenate([[0], np.cumsum(ndet)])[1:] - 1
    objects = pd.DataFrame(
        {
            "object_id": [f"{id_prefix}{i:07d}" for i in range(m)],
            "ra": rng.uniform(0.0, 360.0, size=m),
            "dec": np.degrees(np.arcsin(sindec)),
            "cdsxmatch": xmatch,
            "ndethist": ndet.astype(np.int64),
            "jdstarthist": first_det + JD_MJD_OFFSET,
            "drb": a_drb[last_alert] if len(a_drb) else np.full(m, np.nan),
            "classtar": a_classtar[last_alert] if len(a_classtar) else np.full(m, np.nan),
            "label": labels,
        }
    )
    return LightCurves(
        objects=objects,
        offsets=offsets,
        mjd=cat["mjd"].astype(np.float64),
        band=cat["band"].astype(np.int8),
        flux=cat["flux"].astype(np.float64),
        flux_err=cat["flux_err"].astype(np.float64),
        detected=det.astype(bool),
        alert_id=candid.astype(np.int64),
        bands=BANDS,
        survey="ZTF",
        alerts=alerts,
    )
