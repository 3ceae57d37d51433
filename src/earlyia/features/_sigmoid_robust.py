"""Compiled kernel of the robust sigmoid features (see ``docs/features.md`` for each choice and
why).

Per band: detections averaged per night with inverse-variance weights (signed fluxes: a negative
difference is a measurement, not an error), optionally the last upper limit before the first
detection as a zero-flux point, a weighted-slope rising test, and an error-weighted, bounded fit of
``c / (1 + exp(-a (dt - b)))`` from data-driven starting values (:func:`lm_fit`: c solved exactly
for each (a, b), Levenberg-Marquardt in (a, b)). Outputs the fit, its uncertainties (from ``(J^T W
J)^-1``), reduced chi2, counts, span, slope significance and ``ok``.
"""

from __future__ import annotations

import numba
import numpy as np

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


@numba.njit(cache=True, nogil=True, inline="always")
def _best_c(s_ss, s_sy, s_yy, fallback, lo_c, hi_c):
    """Variable projection of the amplitude: from ``sum w^2 s^2``, ``sum w^2 s y`` and ``sum w^2
    y^2``, the least-squares ``c`` clipped to [lo_c, hi_c] (``fallback`` when every s vanishes)
    and the chi2 it leaves."""
    c = s_sy / s_ss if s_ss > 0 else fallback
    c = min(max(c, lo_c), hi_c)
    return c, s_yy - 2.0 * c * s_sy + c * c * s_ss


@numba.njit(cache=True, nogil=True)
def _projected_chi2(y, w, n, e, k, lo_c, hi_c):
    """chi2 of the rise ``s_j = 1 / (1 + e_j k)`` (``e_j = exp(-a (t_j - t_0))``, ``k = exp(a (b
    - t_0))``: one exponential per point serves every b) with c at its best value, clipped to
    [lo_c, hi_c]; (chi2, c)."""
    sss = 0.0
    ssy = 0.0
    syy = 0.0
    for j in range(n):
        ww = w[j] * w[j]
        s = 1.0 / (1.0 + e[j] * k)
        sss += ww * s * s
        ssy += ww * s * y[j]
        syy += ww * y[j] * y[j]
    c, chi2 = _best_c(sss, ssy, syy, hi_c, lo_c, hi_c)
    return chi2, c


#: Levenberg-Marquardt settings of the robust fit: stop after two accepted steps in a row that each
#: lower the cost by less than FTOL (relative, with a gain ratio > 0.25) or move (a, b) by less than
#: XTOL (relative), when the projected gradient is below GTOL x sqrt(cost), or after MAX_ITER
#: evaluations; the damping starts at LAM0 (relative to the diagonal of the curvature) and follows
#: Nielsen's gain-ratio rule.
FTOL, XTOL, GTOL, MAX_ITER, LAM0 = 1e-6, 1e-6, 1e-10, 50, 1.0
#: fit outcomes of :func:`lm_fit`
LM_CONVERGED, LM_MAX_ITER, LM_BAD_START = 0, 1, -1


@numba.njit(cache=True, nogil=True)
def _normal3(t, y, w, n, x, lo_c, hi_c, H, g):
    """Cost 0.5 * sum(r^2) of ``r = w (y - c s(a (t - b)))`` with ``c`` set to its best value for
    (a, b) (linear least squares, clipped to [lo_c, hi_c]; written to ``x[2]``), ``H = J^T J``
    and ``g = J^T r`` (3x3 and 3) at that point; NaN cost when not finite. One pass: every entry
    is a c-free weighted sum times powers of c, so the sums are accumulated first and c is
    applied after."""
    a, b = x[0], x[1]
    s_ss = s_sy = s_yy = 0.0  # sum w^2 s s, w^2 s y, w^2 y y
    d_tt = d_t = d_1 = 0.0  # sum w^2 ds^2 dt^2, w^2 ds^2 dt, w^2 ds^2
    m_ts = m_s = m_ty = m_y = 0.0  # sum w^2 ds dt s, w^2 ds s, w^2 ds dt y, w^2 ds y
    for j in range(n):
        dt = t[j] - b
        u = a * dt
        e = np.exp(-abs(u))  # overflow-free logistic: e <= 1
        q = 1.0 / (1.0 + e)
        s = q if u >= 0 else e * q
        ds = e * q * q  # s (1 - s)
        ww = w[j] * w[j]
        yj = y[j]
        wd = ww * ds
        s_ss += ww * s * s
        s_sy += ww * s * yj
        s_yy += ww * yj * yj
        d_1 += wd * ds
        d_t += wd * ds * dt
        d_tt += wd * ds * dt * dt
        m_s += wd * s
        m_ts += wd * dt * s
        m_y += wd * yj
        m_ty += wd * dt * yj
    c, chi2 = _best_c(s_ss, s_sy, s_yy, x[2], lo_c, hi_c)
    x[2] = c
    # J columns: -w c ds dt, w c ds a, -w s
    H[0, 0] = c * c * d_tt
    H[0, 1] = H[1, 0] = -c * c * a * d_t
    H[1, 1] = c * c * a * a * d_1
    H[0, 2] = H[2, 0] = c * m_ts
    H[1, 2] = H[2, 1] = -c * a * m_s
    H[2, 2] = s_ss
    g[0] = -c * (m_ty - c * m_ts)
    g[1] = c * a * (m_y - c * m_s)
    g[2] = -(s_sy - c * s_ss)
    return 0.5 * chi2 if np.isfinite(chi2) else np.nan


@numba.njit(cache=True, nogil=True)
def _damped_step(H, g, c_free, lam, free, step, K):
    """Damped Gauss-Newton step in (a, b) for the cost with ``c`` re-optimised at every point
    (variable projection): while ``c`` is inside its bounds, the curvature is the Schur
    complement of ``c`` in ``J^T J`` (written to ``K`` as k00, k01, k11); solves ``(K + lam
    diag(K)) step = -g`` on the free parameters. False if not positive."""
    k00, k01, k11 = H[0, 0], H[0, 1], H[1, 1]
    if c_free and H[2, 2] > 0:
        k00 -= H[0, 2] * H[0, 2] / H[2, 2]
        k01 -= H[0, 2] * H[1, 2] / H[2, 2]
        k11 -= H[1, 2] * H[1, 2] / H[2, 2]
    K[0] = k00
    K[1] = k01
    K[2] = k11
    k00 += lam * max(k00, 1e-12)
    k11 += lam * max(k11, 1e-12)
    step[0] = 0.0
    step[1] = 0.0
    step[2] = 0.0
    if free[0] and free[1]:
        det = k00 * k11 - k01 * k01
        if not (det > 0 and k00 > 0):
            return False
        step[0] = -(k11 * g[0] - k01 * g[1]) / det
        step[1] = -(k00 * g[1] - k01 * g[0]) / det
    elif free[0]:
        if not k00 > 0:
            return False
        step[0] = -g[0] / k00
    elif free[1]:
        if not k11 > 0:
            return False
        step[1] = -g[1] / k11
    return True


@numba.njit(cache=True, nogil=True)
def lm_fit(t, y, w, n, x, lo, hi, H):
    """Bounded fit of ``c / (1 + exp(-a (t - b)))`` in place on ``x``; ``H`` receives ``J^T J`` at
    the end point (for the covariance). Returns (outcome, number of model evaluations).

    Why not the scipy-path trust region of the fink mode: the robust mode need not follow scipy's
    iterations. ``c`` enters linearly, so it is solved exactly at every (a, b) (variable projection)
    and Levenberg-Marquardt only searches the 2-D (a, b) plane; one pass per evaluation yields the
    cost, ``J^T J`` and ``J^T r`` together. Fewer and cheaper iterations than a 3-parameter trust
    region with an SVD of the n x 3 Jacobian. Bounds: a parameter on its bound whose gradient points
    outwards is frozen for the step, and trial points are clipped into the box (projected LM).
    """
    g = np.empty(3)
    Hn = np.empty((3, 3))
    gn = np.empty(3)
    xn = np.empty(3)
    step = np.empty(3)
    free = np.ones(3, np.bool_)
    for j in range(3):
        x[j] = min(max(x[j], lo[j]), hi[j])
    cost = _normal3(t, y, w, n, x, lo[2], hi[2], H, g)
    if not np.isfinite(cost):
        return LM_BAD_START, 1
    nfev = 1
    lam = LAM0
    nu = 2.0
    n_small = 0
    K = np.empty(3)
    while nfev < MAX_ITER:
        gmax = 0.0
        for j in range(2):
            free[j] = not ((x[j] <= lo[j] and g[j] > 0) or (x[j] >= hi[j] and g[j] < 0))
            if free[j]:
                gmax = max(gmax, abs(g[j]))
        if gmax <= GTOL * np.sqrt(max(cost, 1e-300)):
            return LM_CONVERGED, nfev
        c_free = lo[2] < x[2] < hi[2]
        if not _damped_step(H, g, c_free, lam, free, step, K):
            lam *= 10.0
            if lam > 1e12:
                return LM_CONVERGED, nfev
            continue
        snorm = 0.0
        xnorm = 0.0
        for j in range(2):
            xn[j] = min(max(x[j] + step[j], lo[j]), hi[j])
            snorm += (xn[j] - x[j]) ** 2
            xnorm += x[j] * x[j]
        xn[2] = x[2]
        cost_n = _normal3(t, y, w, n, xn, lo[2], hi[2], Hn, gn)
        nfev += 1
        small_x = np.sqrt(snorm) <= XTOL * (XTOL + np.sqrt(xnorm))
        if np.isfinite(cost_n) and cost_n <= cost:
            # gain ratio against the (undamped) quadratic model of the projected cost: Nielsen's
            # damping update
            d0 = xn[0] - x[0]
            d1 = xn[1] - x[1]
            predicted = -(g[0] * d0 + g[1] * d1) - 0.5 * (
                K[0] * d0 * d0 + 2.0 * K[1] * d0 * d1 + K[2] * d1 * d1
            )
            rho = (cost - cost_n) / predicted if predicted > 0 else 0.0
            small_f = cost - cost_n <= FTOL * cost and rho > 0.25
            for j in range(3):
                x[j] = xn[j]
                g[j] = gn[j]
                for k in range(3):
                    H[j, k] = Hn[j, k]
            cost = cost_n
            lam *= max(1.0 / 3.0, 1.0 - (2.0 * min(rho, 1.0) - 1.0) ** 3)
            lam = max(lam, 1e-9)
            nu = 2.0
            # converged after two small accepted steps in a row: one small gain can precede a long
            # step down a curved valley
            n_small = n_small + 1 if (small_f or small_x) else 0
            if n_small == 2:
                return LM_CONVERGED, nfev
        else:
            lam *= nu
            nu *= 2.0
            if lam > 1e12:
                return LM_CONVERGED, nfev
    return LM_MAX_ITER, nfev


@numba.njit(cache=True, nogil=True)
def robust_features(
    mjd,
    band,
    flux,
    err,
    detected,
    starts,
    ends,
    codes,
    min_points,
    max_rate,
    c_max_factor,
    b_margin,
    rise_sigma,
    use_limit,
    X,
    status,
    npts,
):
    """Robust per-band features of every segment; X (n, 14 * nb) pre-filled with placeholders.

    status[i, k]: 0 fitted, 1 too few detection nights, 2 not rising, 3 fit failed, 4 no positive
    flux.
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
    M = np.empty((3, 3))
    ek = np.empty(maxlen)
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
                day = np.floor(
                    mjd[r] + NIGHT_SHIFT
                )  # nights split at ~17 UTC: daytime in Chile and California
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
            # add the last upper limit before the first detection as a zero-flux point (start of the
            # rise)
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
                        b0 = t[j - 1] + (t[j] - t[j - 1]) * (0.5 * ymax - y[j - 1]) / (
                            y[j] - y[j - 1]
                        )
                    break
            # fit in units of the band's maximum flux (c ~ 1): the 3 parameters get comparable
            # scales, which the trust region needs to converge fast; residuals (and chi2) are
            # unchanged
            for j in range(n):
                y[j] /= ymax
                w[j] *= ymax
            lo[0] = 1e-3
            hi[0] = max_rate
            lo[1] = t[0] - b_margin
            hi[1] = tlast + b_margin
            lo[2] = 1e-3
            hi[2] = c_max_factor
            # start from the best of a few candidate rises (chi2 with the best c for each: one pass
            # each); one start at the half-maximum crossing can sit in a local minimum with the rise
            # between the wrong points
            best_start = np.inf
            a_slow = min(
                max(4.0 / max(tlast - t[0], 1.0), 0.05), max_rate
            )  # a rise over the whole light curve
            x[0] = a_slow  # used if no candidate can be scored
            x[1] = b0
            x[2] = 1.0
            for ka in range(2):
                a_try = a_slow if ka == 0 else min(1.0, max_rate)
                if a_try * (tlast - t[0]) > 300.0:
                    # e_j k would over/underflow; the light curve is long enough for the other rate
                    continue
                for j in range(n):
                    ek[j] = np.exp(-a_try * (t[j] - t[0]))
                for kb2 in range(4):  # every b_try lies in [t_0, t_last]: k <= exp(300)
                    if kb2 == 0:
                        b_try = b0
                    elif kb2 == 1:
                        b_try = t[0]
                    elif kb2 == 2:
                        b_try = 0.5 * (t[0] + tlast)
                    else:
                        b_try = tlast
                    c2, c_try = _projected_chi2(
                        y, w, n, ek, np.exp(a_try * (b_try - t[0])), lo[2], hi[2]
                    )
                    if c2 < best_start:
                        best_start = c2
                        x[0] = a_try
                        x[1] = b_try
                        x[2] = c_try
            outcome, _nf = lm_fit(t, y, w, n, x, lo, hi, M)
            if outcome == LM_BAD_START or not (
                np.isfinite(x[0]) and np.isfinite(x[1]) and np.isfinite(x[2])
            ):
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
            if _inv3_diag(M, dg) and dg[0] >= 0 and dg[1] >= 0 and dg[2] >= 0:
                # an uncertainty wider than the parameter's allowed range means "unconstrained": cap
                # it there (keeps features finite and float32-safe for any model)
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
