"""How well an SN Ia template describes a light curve: features that need no training and travel
across surveys.

Why: a forest learns the shape of an SN Ia rise from a few hundred labelled objects; a template fit
brings that shape from physics. The SN Ia spectral template of Hsiao et al. (2007) seen through the
ZTF g and r passbands (``ia_template_ztf.json``, built by ``scripts/make_ia_template.py``) is fitted
to the positive detections of each segment, with free time of maximum, a time stretch, and one free
non-negative amplitude per band (so the distance and the host's reddening do not matter, and an
object 1 mag fainter gives the same features). The fit is a grid search (stretch x time of maximum,
coarse then fine) with the amplitudes solved exactly at every grid point, compiled with numba.

Features (``tmpl_`` prefix):

* ``ok``: 1 when the fit ran (at least ``min_points`` positive detections in the template's bands);
* ``chi2dof``: log10(1 + chi2 / dof) of the best fit, errors with a ``sys_floor`` fraction of the
  flux added in quadrature (photometry pipelines quote different error scales);
* ``gain_const``, ``gain_linear``: log10 of the chi2 of a constant (resp. linear) flux per band over
  the template's chi2: how much better an SN Ia describes the points than no evolution or a straight
  line;
* ``stretch``: the time stretch (SN Ia: ~0.8-1.2; faster or slower transients go to the grid's
  ends);
* ``phase_first``, ``phase_last``: the first and the latest point, in stretched days from maximum;
* ``colour_excess``: the fitted g - r minus the template's (0 when a band has no point): SN Ia
  ~0-0.3.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numba
import numpy as np

from earlyia.errors import ConfigError
from earlyia.features.base import FeatureExtractor, register_extractor

_NAMES = (
    "ok",
    "chi2dof",
    "gain_const",
    "gain_linear",
    "stretch",
    "phase_first",
    "phase_last",
    "colour_excess",
)
#: The grid of time stretches searched.
STRETCHES = np.array([0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.45, 1.7])


@lru_cache(maxsize=1)
def load_template() -> dict:
    """The SN Ia template (see ``scripts/make_ia_template.py``): phase grid and relative flux per
    band."""
    doc = json.loads(
        resources.files("earlyia.features").joinpath("ia_template_ztf.json").read_text()
    )
    return doc


def _template_arrays(bands: tuple[str, str]) -> tuple[np.ndarray, float, float]:
    doc = load_template()
    missing = [b for b in bands if b not in doc["bands"]]
    if missing:
        raise ConfigError(
            f"the SN Ia template has no band(s) {missing}; it has {sorted(doc['bands'])}"
        )
    flux = np.array([doc["bands"][b] for b in bands], np.float64)
    return flux, float(doc["phase_start"]), float(doc["phase_step"])


@numba.njit(cache=True, nogil=True)
def _interp(phase, p0, dp, vals):
    x = (phase - p0) / dp
    if x < 0.0 or x > vals.shape[0] - 1:
        return 0.0
    i = int(x)
    if i >= vals.shape[0] - 1:
        return vals[vals.shape[0] - 1]
    f = x - i
    return vals[i] * (1.0 - f) + vals[i + 1] * f


@numba.njit(cache=True, nogil=True)
def _chi2_at(t, f, w, b, n, tmpl, p0, dp, t0, s, amp):
    """chi2 of the template (time of maximum ``t0``, stretch ``s``) with the best non-negative
    amplitude per band."""
    sft0 = 0.0
    stt0 = 0.0
    sff0 = 0.0
    sft1 = 0.0
    stt1 = 0.0
    sff1 = 0.0
    for i in range(n):
        T = _interp((t[i] - t0) / s, p0, dp, tmpl[b[i]])
        if b[i] == 0:
            sft0 += w[i] * f[i] * T
            stt0 += w[i] * T * T
            sff0 += w[i] * f[i] * f[i]
        else:
            sft1 += w[i] * f[i] * T
            stt1 += w[i] * T * T
            sff1 += w[i] * f[i] * f[i]
    a0 = max(sft0 / stt0, 0.0) if stt0 > 0.0 else 0.0
    a1 = max(sft1 / stt1, 0.0) if stt1 > 0.0 else 0.0
    amp[0] = a0
    amp[1] = a1
    return (sff0 - 2.0 * a0 * sft0 + a0 * a0 * stt0) + (sff1 - 2.0 * a1 * sft1 + a1 * a1 * stt1)


@numba.njit(cache=True, nogil=True)
def _poly_chi2(t, f, w, b, n, degree):
    """chi2 of a per-band constant (degree 0) or straight line (degree 1) in flux, weighted."""
    total = 0.0
    for band in range(2):
        sw = 0.0
        st = 0.0
        sf = 0.0
        for i in range(n):
            if b[i] == band:
                sw += w[i]
                st += w[i] * t[i]
                sf += w[i] * f[i]
        if sw <= 0.0:
            continue
        tm = st / sw
        fm = sf / sw
        stt = 0.0
        stf = 0.0
        for i in range(n):
            if b[i] == band:
                stt += w[i] * (t[i] - tm) ** 2
                stf += w[i] * (t[i] - tm) * (f[i] - fm)
        slope = stf / stt if (degree == 1 and stt > 0.0) else 0.0
        for i in range(n):
            if b[i] == band:
                r = f[i] - fm - slope * (t[i] - tm)
                total += w[i] * r * r
    return total


@numba.njit(cache=True, nogil=True)
def template_kernel(
    mjd,
    band,
    flux,
    err,
    det,
    starts,
    ends,
    codes,
    tmpl,
    p0,
    dp,
    stretches,
    sys_floor,
    min_points,
    out,
):
    """Fill ``out[s]`` with the features of segment ``s`` (see the module docstring for the
    order)."""
    maxlen = 1
    for s in range(starts.shape[0]):
        maxlen = max(maxlen, ends[s] - starts[s])
    t = np.empty(maxlen)
    f = np.empty(maxlen)
    w = np.empty(maxlen)
    b = np.empty(maxlen, np.int64)
    amp = np.zeros(2)
    ns = stretches.shape[0]
    for s in range(starts.shape[0]):
        row = out[s]
        row[:] = 0.0
        n = 0
        nb0 = 0
        nb1 = 0
        for i in range(starts[s], ends[s]):
            if not det[i] or not (flux[i] > 0.0) or not (err[i] > 0.0) or not np.isfinite(mjd[i]):
                continue
            if band[i] == codes[0]:
                b[n] = 0
                nb0 += 1
            elif band[i] == codes[1]:
                b[n] = 1
                nb1 += 1
            else:
                continue
            t[n] = mjd[i]
            f[n] = flux[i]
            e2 = err[i] * err[i] + (sys_floor * flux[i]) ** 2
            w[n] = 1.0 / e2
            n += 1
        if n < min_points:
            continue
        tmin = t[0]
        tmax = t[0]
        for i in range(n):
            tmin = min(tmin, t[i])
            tmax = max(tmax, t[i])
        # coarse grid: every stretch, time of maximum in 1-day steps from 15 stretched days before
        # the first point (a rise seen from its start) to 20 after the last (a decline seen from its
        # start)
        best = np.inf
        bsi = 0
        bt0 = tmin
        for si in range(ns):
            sc = stretches[si]
            t0 = tmin - 15.0 * sc
            while t0 <= tmax + 20.0 * sc:
                c = _chi2_at(t, f, w, b, n, tmpl, p0, dp, t0, sc, amp)
                if c < best:
                    best = c
                    bsi = si
                    bt0 = t0
                t0 += 1.0
        # fine grid around the best: neighbouring stretches, +-1 day in 0.1-day steps
        fs = stretches[bsi]
        for si in range(max(bsi - 1, 0), min(bsi + 2, ns)):
            sc = stretches[si]
            for k in range(-10, 11):
                t0 = bt0 + 0.1 * k
                c = _chi2_at(t, f, w, b, n, tmpl, p0, dp, t0, sc, amp)
                if c < best:
                    best = c
                    fs = sc
                    bt0 = t0
        _chi2_at(t, f, w, b, n, tmpl, p0, dp, bt0, fs, amp)
        n_par = 2 + (1 if nb0 > 0 else 0) + (1 if nb1 > 0 else 0)
        dof = max(n - n_par, 1)
        row[0] = 1.0
        row[1] = np.log10(1.0 + best / dof)
        row[2] = np.log10((1.0 + _poly_chi2(t, f, w, b, n, 0)) / (1.0 + best))
        row[3] = np.log10((1.0 + _poly_chi2(t, f, w, b, n, 1)) / (1.0 + best))
        row[4] = fs
        row[5] = (tmin - bt0) / fs
        row[6] = (tmax - bt0) / fs
        if amp[0] > 0.0 and amp[1] > 0.0:
            row[7] = -2.5 * np.log10(amp[0] / amp[1])


class IaTemplateFeatures(FeatureExtractor):
    """SN Ia template-fit features of each segment (see the module docstring).

    Args:
        bands: the (blue, red) bands fitted; both must be in the template (ZTF g and r).
        sys_floor: fraction of the flux added in quadrature to every error.
        min_points: positive detections in those bands needed for a fit.
    """

    name = "ia_template"

    def __init__(
        self, bands: tuple[str, str] = ("g", "r"), sys_floor: float = 0.03, min_points: int = 3
    ):
        self.bands = bands
        self.sys_floor = sys_floor
        self.min_points = min_points

    def _check(self) -> None:
        if len(tuple(self.bands)) != 2:
            raise ConfigError(f"IaTemplateFeatures: bands must be (blue, red), got {self.bands!r}")
        if not (0.0 <= float(self.sys_floor) < 1.0):
            raise ConfigError(
                f"IaTemplateFeatures: sys_floor must be in [0, 1), got {self.sys_floor!r}"
            )
        if int(self.min_points) < 2:
            raise ConfigError(
                f"IaTemplateFeatures: min_points must be >= 2, got {self.min_points!r}"
            )

    @property
    def names(self) -> list[str]:
        self._check()
        return [f"tmpl_{n}" for n in _NAMES]

    def extract(self, mjd, band, flux, flux_err, detected, starts, ends, *, bands, survey):
        self._check()
        tmpl, p0, dp = _template_arrays(tuple(self.bands))
        codes = np.array([bands.index(b) if b in bands else -1 for b in self.bands], np.int64)
        out = np.zeros((len(starts), len(_NAMES)))
        template_kernel(
            np.asarray(mjd, np.float64),
            np.asarray(band, np.int64),
            np.asarray(flux, np.float64),
            np.asarray(flux_err, np.float64),
            np.asarray(detected, np.bool_),
            np.asarray(starts, np.int64),
            np.asarray(ends, np.int64),
            codes,
            tmpl,
            p0,
            dp,
            STRETCHES,
            float(self.sys_floor),
            int(self.min_points),
            out,
        )
        # a light curve too short to fit is a valid row with tmpl_ok = 0; one without any point is
        # not a light curve
        ok = np.asarray(ends, np.int64) > np.asarray(starts, np.int64)
        return out, ok, np.where(ok, "", "no points").astype(object)


register_extractor("ia_template", IaTemplateFeatures)
