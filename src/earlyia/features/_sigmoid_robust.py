"""Compiled kernel of the robust sigmoid features (see ``docs/features.md`` for each choice and why).

Per band: detections averaged per night with inverse-variance weights (signed fluxes: a negative
difference is a measurement, not an error), optionally the last upper limit before the first
detection as a zero-flux point, a weighted-slope rising test, and an error-weighted, bounded fit of
``c / (1 + exp(-a (dt - b)))`` from data-driven starting values. Outputs the fit, its
uncertainties (from ``(J^T W J)^-1``), reduced chi2, counts, span, slope significance and ``ok``.
"""

from __future__ import annotations

import numba
import numpy as np

from earlyia.features._sigmoid_kernels import FIT_BAD_START, trf_fit

# feature offsets inside a band block (ROBUST_BAND_FEATURES order)
A, B, C, SNR, MSE, NRISE, AERR, BERR, CERR, CHI2, NPTS, SPAN, SLOPE, OK = range(14)
NF = 14
#: Points of one band closer than a night are averaged; nights split at MJD fraction 0.7 (~17 UTC,
#: daytime at both ZTF (California) and Rubin/DES (Chile)): night = floor(mjd + NIGHT_SHIFT).
NIGHT_SHIFT = 0.3


@numba.njit(cache=True, nogil=True)
def _inv3_diag(M, out):
    """Diagonal of the inverse of a symmetric 3x3 matrix; False when singular."""
    a, b, c = M[0, 0], M[0, 1], M[0, 2]
    d, e = M[1, 1], M[1, 2]
    f = M[2, 2]
    c00 = d * f - e * e
    c11 = a * f - c * c
    c22 = a * d - b * b
    det = a * c00 - b * (b * f - c * e) + c * (b * e - c * d)
    if not (det > 0) or not np.isfinite(det):
        return False
    out[0] = c00 / det
    out[1] = c11 / det
    out[2] = c22 / det
    return True


@numba.njit(cache=True, nogil=True)
def _chi2(t, y, w, n, x):
    c2 = 0.0
    for j in range(n):
        r = w[j] * (y[j] - x[2] / (1.0 + np.exp(-x[0] * (t[j] - x[1]))))
        c2 += r * r
    return c2


@numba.njit(cache=True, nogil=True)
def robust_features(
    mjd, band, flux, err, detected, starts, ends, codes, min_points, max_rate, c_max_factor, b_margin, rise_sigma, use_limit,
    X, status, npts,
):
    """Robust per-band features of every segment; X (n, 14 * nb) pre-filled with placeholders.

    status[i, k]: 0 fitted, 1 too few detection nights, 2 not rising, 3 fit failed, 4 no positive flux.
    """
    nseg = starts.shape[0]
    nb = codes.shape[0]
    maxlen = 2
    for i in range(nseg):
        maxlen = max(maxlen, ends[i] - starts[i] + 1)
    t = np.empty(maxlen)
    y = np.empty(maxlen)
    sw = np.empty(maxlen)
    w = np.empty(maxlen)
    x = np.empty(3)
    lo = np.empty(3)
    hi = np.empty(3)
    J = np.empty((maxlen, 3))
    x2 = np.empty(3)
    M = np.empty((3, 3))
    dg = np.empty(3)
    for i in range(nseg):
        # common time origin of all bands: the first detection of the segment (any band)
        tref = np.nan
        for r in range(starts[i], ends[i]):
            if detected[r] and np.isfinite(flux[r]):
                tref = mjd[r]
                break
        for kb in range(nb):
            o = NF * kb
            code = codes[kb]
            # last upper limit before the first detection of this band
            lim_t = np.nan
            lim_e = np.nan
            m = 0
            last_day = np.nan
            for r in range(starts[i], ends[i]):
                if band[r] != code:
                    continue
                if not detected[r]:
                    if m == 0 and np.isfinite(err[r]) and err[r] > 0:
                        lim_t = mjd[r]
                        lim_e = err[r]
                    continue
                if not (np.isfinite(flux[r]) and np.isfinite(err[r]) and err[r] > 0):
                    continue
                day = np.floor(mjd[r] + NIGHT_SHIFT)  # nights split at ~17 UTC: daytime in Chile and California
                iv = 1.0 / (err[r] * err[r])
                if m > 0 and day == last_day:
                    y[m - 1] += flux[r] * iv
                    t[m - 1] += mjd[r] * iv
                    sw[m - 1] += iv
                else:
                    y[m] = flux[r] * iv
                    t[m] = mjd[r] * iv
                    sw[m] = iv
                    last_day = day
                    m += 1
            ymax = -np.inf
            snr = 0.0
            for j in range(m):
                y[j] /= sw[j]
                t[j] /= sw[j]
                w[j] = np.sqrt(sw[j])  # 1 / err of the nightly mean
                snr += y[j] * w[j]
                ymax = max(ymax, y[j])
            npts[i, kb] = m
            X[i, o + NPTS] = m
            if m == 0:
                status[i, kb] = 1
                continue
            X[i, o + SNR] = snr / m
            X[i, o + SPAN] = t[m - 1] - t[0]
            if m < min_points:
                status[i, kb] = 1
                continue
            if not ymax > 0:
                status[i, kb] = 4
                continue
            # weighted least-squares slope of flux vs time, and its significance
            s0 = 0.0
            st = 0.0
            sy = 0.0
            for j in range(m):
                ww = w[j] * w[j]
                s0 += ww
                st += ww * t[j]
                sy += ww * y[j]
            tm = st / s0
            ym = sy / s0
            stt = 0.0
            sty = 0.0
            for j in range(m):
                ww = w[j] * w[j]
                stt += ww * (t[j] - tm) ** 2
                sty += ww * (t[j] - tm) * (y[j] - ym)
            z = (sty / stt) * np.sqrt(stt) if stt > 0 else 0.0  # slope / its standard error
            X[i, o + SLOPE] = z
            if z < -rise_sigma:
                status[i, kb] = 2
                continue
            # add the last upper limit before the first detection as a zero-flux point (start of the rise)
            n = m
            t0 = t[0]
            if use_limit and np.isfinite(lim_t) and lim_t < t0 - 0.5 and t0 - lim_t < b_margin:
                for j in range(m, 0, -1):
                    t[j] = t[j - 1]
                    y[j] = y[j - 1]
                    w[j] = w[j - 1]
                t[0] = lim_t
                y[0] = 0.0
                w[0] = 1.0 / lim_e
                n = m + 1
            for j in range(n):
                t[j] -= tref
            tlast = t[n - 1]
            # data-driven start: c at the brightest point, b where the flux first reaches half of it
            b0 = tlast
            for j in range(n):
                if y[j] >= 0.5 * ymax:
                    b0 = t[j]
                    if j > 0 and y[j] > y[j - 1]:  # interpolate the half-maximum crossing
                        b0 = t[j - 1] + (t[j] - t[j - 1]) * (0.5 * ymax - y[j - 1]) / (y[j] - y[j - 1])
                    break
            # fit in units of the band's maximum flux (c ~ 1): the 3 parameters get comparable scales, which
            # the trust region needs to converge fast; residuals (and chi2) are unchanged
            for j in range(n):
                y[j] /= ymax
                w[j] *= ymax
            lo[0] = 1e-3
            hi[0] = max_rate
            lo[1] = t[0] - b_margin
            hi[1] = tlast + b_margin
            lo[2] = 1e-3
            hi[2] = c_max_factor
            # start from the best of a few candidate rises (chi2 of the start only: cheap); one start at the
            # half-maximum crossing can sit in a local minimum with the rise between the wrong points
            best_start = np.inf
            for ka in range(2):
                a_try = min(max(4.0 / max(tlast - t[0], 1.0), 0.05), max_rate) if ka == 0 else min(1.0, max_rate)
                for kb2 in range(4):
                    if kb2 == 0:
                        b_try = b0
                    elif kb2 == 1:
                        b_try = t[0]
                    elif kb2 == 2:
                        b_try = 0.5 * (t[0] + tlast)
                    else:
                        b_try = tlast
                    x2[0] = a_try
                    x2[1] = b_try
                    x2[2] = 1.2 if kb2 == 0 else 1.05
                    c2 = _chi2(t, y, w, n, x2)
                    if c2 < best_start:
                        best_start = c2
                        x[0] = x2[0]
                        x[1] = x2[1]
                        x[2] = x2[2]
            stt_, _nf = trf_fit(t, y, w, n, x, False, 1e-6, 1e-6, 1e-8, 50, lo, hi, True, J)
            if stt_ == FIT_BAD_START or not (np.isfinite(x[0]) and np.isfinite(x[1]) and np.isfinite(x[2])):
                status[i, kb] = 3
                continue
            a, b, c = x[0], x[1], x[2]
            chi2 = 0.0
            sp = 0.0
            syy = 0.0
            for j in range(n):
                p = c / (1.0 + np.exp(-a * (t[j] - b)))
                chi2 += (w[j] * (y[j] - p)) ** 2
                sp += p
                syy += y[j]
            mse = 0.0
            if sp != 0 and syy != 0:
                for j in range(n):
                    p = c / (1.0 + np.exp(-a * (t[j] - b)))
                    mse += (y[j] / syy - p / sp) ** 2
                mse /= n
            for p_ in range(3):
                for q in range(3):
                    v = 0.0
                    for j in range(n):
                        v += J[j, p_] * J[j, q]
                    M[p_, q] = v
            if _inv3_diag(M, dg) and dg[0] >= 0 and dg[1] >= 0 and dg[2] >= 0:
                # an uncertainty wider than the parameter's allowed range means "unconstrained": cap it there
                # (keeps features finite and float32-safe for any model)
                X[i, o + AERR] = min(np.sqrt(dg[0]), hi[0] - lo[0])
                X[i, o + BERR] = min(np.sqrt(dg[1]), hi[1] - lo[1])
                X[i, o + CERR] = min(np.sqrt(dg[2]), hi[2] - lo[2]) * ymax
            c *= ymax
            status[i, kb] = 0
            X[i, o + A] = a
            X[i, o + B] = b
            X[i, o + C] = c
            X[i, o + MSE] = mse
            X[i, o + NRISE] = m
            X[i, o + CHI2] = chi2 / max(n - 3, 1)
            X[i, o + NPTS] = n
            X[i, o + OK] = 1.0
