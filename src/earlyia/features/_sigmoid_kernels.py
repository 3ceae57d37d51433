"""Compiled kernels of the sigmoid features: batch trust-region fits of ``c / (1 + exp(-a (t -
b)))``.

One call fits every (light curve, band) problem of a batch: no Python object and no scipy call per
fit. The optimiser is a 3-parameter trust-region reflective method written for this model (the
algorithm of More 1983 as used by ``scipy.optimize.least_squares(method='trf')`` without bounds:
SVD of the Jacobian, Levenberg-Marquardt parameter found by Newton iterations on the step norm,
trust radius updated from the actual / predicted reduction, and the same ``ftol/xtol/gtol`` and
``max_nfev = 100 * n_params`` stopping rules). Using the same algorithm from the same start is what
makes the "fink" mode land on the same minimum as Fink's scipy call, including on the sloppy fits
(a linear rise has no well-defined plateau, so the end point depends on when the optimiser stops).

The 3-column SVD is a one-sided Jacobi (Hestenes) decomposition: closed-form plane rotations, high
relative accuracy for small singular values, no LAPACK call and no allocation per iteration.
(Calling LAPACK's gesdd, as scipy does, was tried: 2.7x slower and no closer to scipy's end points,
because the remaining differences come from numpy's vectorised ``exp`` rounding differently from
libm's in the finite-difference Jacobian, which ill-conditioned fits amplify.)

Residual options: weights ``w`` (1 for Fink, ``1/err`` for the robust mode); ``fd_abs`` reproduces
Fink's residual ``|y - f|`` differentiated by scipy's 2-point finite differences; otherwise the
Jacobian is analytic. Box bounds (robust mode) are enforced by projecting each trial point.
"""

from __future__ import annotations

import numba
import numpy as np

EPS = np.finfo(np.float64).eps
SQRT_EPS = np.sqrt(EPS)

# fit status codes (scipy's): 0 = max_nfev reached, 1 = gtol, 2 = ftol, 3 = xtol, 4 = ftol and xtol,
# -1 = non-finite residuals at the start
FIT_MAXFEV = 0
FIT_BAD_START = -1


@numba.njit(cache=True, nogil=True)
def _residuals(x, t, y, w, m, absres, out, den):
    """Residuals ``w (y - f)`` (absolute values when ``absres``); ``den`` receives ``1 + exp(-a
    (t - b))``."""
    a, b, c = x[0], x[1], x[2]
    ok = True
    for i in range(m):
        e = np.exp(-a * (t[i] - b))
        den[i] = 1.0 + e
        r = w[i] * (y[i] - c / den[i])
        if absres:
            r = abs(r)
        out[i] = r
        if not np.isfinite(r):
            ok = False
    return ok


@numba.njit(cache=True, nogil=True)
def _jacobian(x, t, y, w, m, f, fd_abs, J, tmp, den, dtmp):
    if fd_abs:
        # scipy's '2-point' scheme: h = sqrt(eps) * sign(x) * max(1, |x|), on |residual|
        for j in range(3):
            xj = x[j]
            sgn = 1.0 if xj >= 0 else -1.0
            h = SQRT_EPS * sgn * max(1.0, abs(xj))
            x[j] = xj + h
            dx = x[j] - xj
            if j < 2:
                _residuals(x, t, y, w, m, True, tmp, dtmp)
            else:  # moving c leaves 1 + exp(-a (t - b)) unchanged: the same numbers without an exp
                for i in range(m):
                    tmp[i] = abs(w[i] * (y[i] - x[2] / den[i]))
            x[j] = xj
            for i in range(m):
                J[i, j] = (tmp[i] - f[i]) / dx
        return
    a, b, c = x[0], x[1], x[2]
    for i in range(m):
        e = np.exp(-a * (t[i] - b))
        s = 1.0 / (1.0 + e)
        sp = 0.0 if e > 1e300 else e * s * s  # s (1 - s)
        J[i, 0] = -w[i] * c * sp * (t[i] - b)
        J[i, 1] = w[i] * c * sp * a
        J[i, 2] = -w[i] * s


@numba.njit(cache=True, nogil=True)
def _svd3(J, m, f, s, V, uf, A, free):
    """Thin SVD of the (m, 3) matrix J (columns with free[j] False taken as 0) by one-sided Jacobi:
    s descending, V (3, 3), uf = U^T f."""
    for i in range(m):
        for j in range(3):
            A[i, j] = J[i, j] if free[j] else 0.0
    for p in range(3):
        for q in range(3):
            V[p, q] = 1.0 if p == q else 0.0
    for _sweep in range(60):
        rotated = False
        for p in range(2):
            for q in range(p + 1, 3):
                alpha = 0.0
                beta = 0.0
                gamma = 0.0
                for i in range(m):
                    alpha += A[i, p] * A[i, p]
                    beta += A[i, q] * A[i, q]
                    gamma += A[i, p] * A[i, q]
                if gamma == 0.0 or abs(gamma) <= EPS * np.sqrt(alpha * beta):
                    continue
                rotated = True
                zeta = (beta - alpha) / (2.0 * gamma)
                if (
                    abs(zeta) > 1e150
                ):  # zeta**2 would overflow: tan = 1 / (2 zeta) to full precision
                    tt = 0.5 / zeta
                else:
                    tt = (1.0 if zeta >= 0 else -1.0) / (abs(zeta) + np.sqrt(1.0 + zeta * zeta))
                cs = 1.0 / np.sqrt(1.0 + tt * tt)
                sn = cs * tt
                for i in range(m):
                    ap = A[i, p]
                    aq = A[i, q]
                    A[i, p] = cs * ap - sn * aq
                    A[i, q] = sn * ap + cs * aq
                for i in range(3):
                    vp = V[i, p]
                    vq = V[i, q]
                    V[i, p] = cs * vp - sn * vq
                    V[i, q] = sn * vp + cs * vq
        if not rotated:
            break
    # singular values = column norms; sort the 3 columns by decreasing norm without allocating
    n0 = 0.0
    n1 = 0.0
    n2 = 0.0
    d0 = 0.0
    d1 = 0.0
    d2 = 0.0
    for i in range(m):
        n0 += A[i, 0] * A[i, 0]
        n1 += A[i, 1] * A[i, 1]
        n2 += A[i, 2] * A[i, 2]
        d0 += A[i, 0] * f[i]
        d1 += A[i, 1] * f[i]
        d2 += A[i, 2] * f[i]
    n0 = np.sqrt(n0)
    n1 = np.sqrt(n1)
    n2 = np.sqrt(n2)
    o0, o1, o2 = 0, 1, 2
    if n1 > n0 and n1 >= n2:
        o0, o1, o2 = 1, 0, 2
    elif n2 > n0 and n2 > n1:
        o0, o1, o2 = 2, 0, 1
    # o0 holds the largest; order the remaining two
    nn = (n0, n1, n2)
    if nn[o2] > nn[o1]:
        o1, o2 = o2, o1
    dd = (d0, d1, d2)
    s[0] = nn[o0]
    s[1] = nn[o1]
    s[2] = nn[o2]
    uf[0] = dd[o0] / nn[o0] if nn[o0] > 0 else 0.0
    uf[1] = dd[o1] / nn[o1] if nn[o1] > 0 else 0.0
    uf[2] = dd[o2] / nn[o2] if nn[o2] > 0 else 0.0
    for i in range(3):
        v0 = V[i, o0]
        v1 = V[i, o1]
        v2 = V[i, o2]
        V[i, 0] = v0
        V[i, 1] = v1
        V[i, 2] = v2


@numba.njit(cache=True, nogil=True)
def _phi(alpha, uf, s, Delta):
    pn = 0.0
    d3 = 0.0
    for k in range(3):
        sk = s[k] * uf[k]
        den = s[k] * s[k] + alpha
        pn += (sk / den) ** 2
        d3 += sk * sk / den**3
    pn = np.sqrt(pn)
    return pn - Delta, -d3 / pn


@numba.njit(cache=True, nogil=True)
def _solve_tr(m, uf, s, V, Delta, initial_alpha, p):
    """Step p of norm <= Delta minimising |J p + f| (More's method on the SVD); returns alpha."""
    full_rank = False
    if m >= 3:
        full_rank = s[2] > EPS * m * s[0]
    if full_rank:
        pn = 0.0
        for i in range(3):
            v = 0.0
            for k in range(3):
                v -= V[i, k] * uf[k] / s[k]
            p[i] = v
            pn += v * v
        if np.sqrt(pn) <= Delta:
            return 0.0
    alpha_upper = np.sqrt((s[0] * uf[0]) ** 2 + (s[1] * uf[1]) ** 2 + (s[2] * uf[2]) ** 2) / Delta
    if full_rank:
        phi, dphi = _phi(0.0, uf, s, Delta)
        alpha_lower = -phi / dphi
    else:
        alpha_lower = 0.0
    if (not full_rank) and initial_alpha == 0.0:
        alpha = max(0.001 * alpha_upper, np.sqrt(alpha_lower * alpha_upper))
    else:
        alpha = initial_alpha
    for _it in range(10):
        if alpha < alpha_lower or alpha > alpha_upper:
            alpha = max(0.001 * alpha_upper, np.sqrt(alpha_lower * alpha_upper))
        phi, dphi = _phi(alpha, uf, s, Delta)
        if phi < 0:
            alpha_upper = alpha
        ratio = phi / dphi
        alpha_lower = max(alpha_lower, alpha - ratio)
        alpha -= (phi + Delta) * ratio / Delta
        if abs(phi) < 0.01 * Delta:
            break
    pn = 0.0
    for i in range(3):
        v = 0.0
        for k in range(3):
            v -= V[i, k] * (s[k] * uf[k]) / (s[k] * s[k] + alpha)
        p[i] = v
        pn += v * v
    pn = np.sqrt(pn)
    for i in range(3):
        p[i] *= Delta / pn
    return alpha


@numba.njit(cache=True, nogil=True)
def trf_fit(t, y, w, m, x, fd_abs, ftol, xtol, gtol, max_nfev, lo, hi, bounded, J):
    """Fit in place ``x = [a, b, c]``; returns (status, nfev). ``J`` (m, 3) holds the final
    Jacobian."""
    f = np.empty(m)
    fn = np.empty(m)
    tmp = np.empty(m)
    den = np.empty(m)
    dnew = np.empty(m)
    dtmp = np.empty(m)
    A = np.empty((m, 3))
    s = np.empty(3)
    V = np.empty((3, 3))
    uf = np.empty(3)
    step = np.empty(3)
    xn = np.empty(3)
    g = np.empty(3)
    free = np.ones(3, np.bool_)
    if bounded:
        for j in range(3):
            x[j] = min(max(x[j], lo[j]), hi[j])
    if not _residuals(x, t, y, w, m, fd_abs, f, den):
        return FIT_BAD_START, 1
    nfev = 1
    _jacobian(x, t, y, w, m, f, fd_abs, J, tmp, den, dtmp)
    cost = 0.0
    for i in range(m):
        cost += f[i] * f[i]
    cost *= 0.5
    for j in range(3):
        v = 0.0
        for i in range(m):
            v += J[i, j] * f[i]
        g[j] = v
    Delta = np.sqrt(x[0] ** 2 + x[1] ** 2 + x[2] ** 2)
    if Delta == 0:
        Delta = 1.0
    alpha = 0.0
    status = -2
    while True:
        if bounded:
            # active set: a parameter on its bound whose descent direction points outside is frozen
            # for this step (projected gradient), so the trust region is not wasted on steps the
            # bound would cut
            for j in range(3):
                free[j] = not ((x[j] <= lo[j] and g[j] > 0) or (x[j] >= hi[j] and g[j] < 0))
        gnorm = 0.0
        for j in range(3):
            if free[j]:
                gnorm = max(gnorm, abs(g[j]))
        if gnorm < gtol:
            status = 1
        if status != -2 or nfev == max_nfev:
            break
        _svd3(J, m, f, s, V, uf, A, free)
        actual = -1.0
        cost_new = cost
        while actual <= 0 and nfev < max_nfev:
            alpha = _solve_tr(m, uf, s, V, Delta, alpha, step)
            if bounded:
                for j in range(3):
                    xn[j] = min(max(x[j] + step[j], lo[j]), hi[j])
                    step[j] = xn[j] - x[j]
            else:
                for j in range(3):
                    xn[j] = x[j] + step[j]
            if bounded:
                for j in range(3):
                    if not free[j]:
                        step[j] = 0.0
                        xn[j] = x[j]
            q = 0.0
            for i in range(m):
                v = J[i, 0] * step[0] + J[i, 1] * step[1] + J[i, 2] * step[2]
                q += v * v
            predicted = -(0.5 * q + step[0] * g[0] + step[1] * g[1] + step[2] * g[2])
            ok = _residuals(xn, t, y, w, m, fd_abs, fn, dnew)
            nfev += 1
            step_norm = np.sqrt(step[0] ** 2 + step[1] ** 2 + step[2] ** 2)
            if not ok:
                Delta = 0.25 * step_norm
                continue
            cost_new = 0.0
            for i in range(m):
                cost_new += fn[i] * fn[i]
            cost_new *= 0.5
            actual = cost - cost_new
            if predicted > 0:
                ratio = actual / predicted
            elif predicted == 0 and actual == 0:
                ratio = 1.0
            else:
                ratio = 0.0
            Delta_new = Delta
            if ratio < 0.25:
                Delta_new = 0.25 * step_norm
            elif ratio > 0.75 and step_norm > 0.95 * Delta:
                Delta_new = 2.0 * Delta
            ftol_ok = actual < ftol * cost and ratio > 0.25
            xnorm = np.sqrt(x[0] ** 2 + x[1] ** 2 + x[2] ** 2)
            xtol_ok = step_norm < xtol * (xtol + xnorm)
            if ftol_ok and xtol_ok:
                status = 4
            elif ftol_ok:
                status = 2
            elif xtol_ok:
                status = 3
            if status != -2:
                break
            if Delta_new == 0.0:  # degenerate step; scipy would divide by zero here
                Delta_new = Delta
            alpha *= Delta / Delta_new
            Delta = Delta_new
        if actual > 0:
            for j in range(3):
                x[j] = xn[j]
            for i in range(m):
                f[i] = fn[i]
                den[i] = dnew[i]
            cost = cost_new
            _jacobian(x, t, y, w, m, f, fd_abs, J, tmp, den, dtmp)
            for j in range(3):
                v = 0.0
                for i in range(m):
                    v += J[i, j] * f[i]
                g[j] = v
    if status == -2:
        status = FIT_MAXFEV
    if fd_abs:  # leave the analytic Jacobian for covariance estimates
        _jacobian(x, t, y, w, m, f, False, J, tmp, den, dtmp)
    return status, nfev


# ----------------------------------------------------------------------------------------- fink
# mode
@numba.njit(cache=True, nogil=True)
def _ewm_all_rising(y, n, com):
    """pandas ``Series(y).ewm(com).mean().diff()``: True when no difference is negative."""
    alpha = 1.0 / (1.0 + com)
    fac = 1.0 - alpha
    weighted = y[0]
    old_wt = 1.0
    prev = weighted
    for i in range(1, n):
        cur = y[i]
        old_wt *= fac
        if weighted != cur:
            weighted = (old_wt * weighted + cur) / (old_wt + 1.0)
        old_wt += 1.0
        if weighted - prev < 0:
            return False
        prev = weighted
    return True


@numba.njit(cache=True, nogil=True)
def _nightly(mjd, flux, err, idx, n, jd_offset, use_abs, tn, yn, en):
    """Fink's intraday averaging of points idx[:n] (time-sorted): returns the number of nights."""
    k = -1
    cnt = 0
    last = np.nan
    for j in range(n):
        i = idx[j]
        day = np.rint(mjd[i] + jd_offset)
        fl = abs(flux[i]) if use_abs else flux[i]
        if k < 0 or day != last:
            if k >= 0:
                yn[k] /= cnt
                en[k] /= cnt
            k += 1
            tn[k] = day
            yn[k] = fl
            en[k] = err[i]
            cnt = 1
            last = day
        else:
            yn[k] += fl
            en[k] += err[i]
            cnt += 1
    if k >= 0:
        yn[k] /= cnt
        en[k] /= cnt
    return k + 1


# Fink's per-band rules (ZTF production and ELAsTiCC), one kernel parametrised by them.
# band status codes: meaningful for both rule sets (ST_FAINT only when the faint check is on)
ST_OK, ST_FEW, ST_NOT_RISING, ST_FAILED, ST_FAINT = 0, 1, 2, 3, 4
#: rising rules: every difference of the EWM(com=3) mean >= 0 (ZTF), or only the last point
#: (ELAsTiCC)
RISE_EWM_ALL, RISE_LAST = 0, 1


@numba.njit(cache=True, nogil=True)
def fink_features(
    mjd,
    band,
    flux,
    err,
    detected,
    starts,
    ends,
    codes,
    min_points,
    night_offset,
    abs_flux,
    finite_only,
    faint_check,
    min_max_flux,
    low_bound,
    low_relative,
    rising_rule,
    fd_abs,
    X,
    status,
    npts,
):
    """Fink's per-band sigmoid features for every segment; X (n, 6 * nb) must be pre-filled with
    placeholders.

    Rules: nights are ``rint(mjd + night_offset)`` (ZTF: 2400000.5, i.e. JD; LSST: 0) and averaged
    (on ``|flux|`` when ``abs_flux``, as Fink's ZTF code); ``finite_only`` drops points with a
    non-finite error and rejects fits ending at non-finite parameters; with ``faint_check`` a band
    whose maximum nightly flux is not above ``min_max_flux`` is skipped; nights below ``low_bound``
    (times the maximum nightly flux when ``low_relative``) are dropped; ``rising_rule`` is
    :data:`RISE_EWM_ALL` or :data:`RISE_LAST`.

    status[i, k]: ST_OK = fitted, ST_FEW = too few nightly points (npts holds the count),
    ST_NOT_RISING, ST_FAILED = fit failed, ST_FAINT = skipped by the faint check.
    """
    nseg = starts.shape[0]
    nb = codes.shape[0]
    maxlen = 1
    for i in range(nseg):
        maxlen = max(maxlen, ends[i] - starts[i])
    idx = np.empty(maxlen, np.int64)
    tn = np.empty(maxlen)
    yn = np.empty(maxlen)
    en = np.empty(maxlen)
    ty = np.empty(maxlen)
    yy = np.empty(maxlen)
    ee = np.empty(maxlen)
    w = np.ones(maxlen)
    x = np.empty(3)
    lo = np.empty(3)
    J = np.empty((maxlen, 3))
    for i in range(nseg):
        for kb in range(nb):
            code = codes[kb]
            n = 0
            for r in range(starts[i], ends[i]):
                if (
                    band[r] == code
                    and detected[r]
                    and np.isfinite(flux[r])
                    and (not finite_only or np.isfinite(err[r]))
                ):
                    idx[n] = r
                    n += 1
            nn = (
                _nightly(mjd, flux, err, idx, n, night_offset, abs_flux, tn, yn, en) if n > 0 else 0
            )
            fmax = -np.inf
            for j in range(nn):
                fmax = max(fmax, yn[j])
            if faint_check and (nn == 0 or not (fmax > min_max_flux)):
                status[i, kb] = ST_FAINT
                continue
            bound = low_bound * fmax if low_relative else low_bound
            m = 0
            for j in range(nn):
                if yn[j] >= bound:
                    ty[m] = tn[j]
                    yy[m] = yn[j]
                    ee[m] = en[j]
                    m += 1
            npts[i, kb] = m
            if m < min_points:
                status[i, kb] = ST_FEW
                continue
            if rising_rule == RISE_LAST:
                rising = not (yy[m - 1] < yy[m - 2])
            else:
                rising = _ewm_all_rising(yy, m, 3.0)
            if not rising:
                status[i, kb] = ST_NOT_RISING
                continue
            t0 = ty[0]
            snr = 0.0
            imax = 0
            imin = 0
            for j in range(m):
                ty[j] = ty[j] - t0
                snr += yy[j] / ee[j]
                if yy[j] > yy[imax]:
                    imax = j
                if yy[j] < yy[imin]:
                    imin = j
            snr /= m
            # Fink's starting point; the guards only differ from Fink's where its guess divides by
            # zero
            cg = yy[imax]
            ag = (
                (imax - imin) / (ty[imax] - ty[imin])
                if ty[imax] > 0 and ty[imax] != ty[imin]
                else 1.0
            )
            f0 = yy[0]
            bg = np.log(cg / f0 - 1.0) / ag if f0 > 0 and cg / f0 > 1.0 else 1.0
            x[0] = ag
            x[1] = bg
            x[2] = cg
            st, _nf = trf_fit(ty, yy, w, m, x, fd_abs, 1e-8, 1e-8, 1e-8, 300, lo, lo, False, J)
            if st == FIT_BAD_START or (
                finite_only and not (np.isfinite(x[0]) and np.isfinite(x[1]) and np.isfinite(x[2]))
            ):
                status[i, kb] = ST_FAILED
                continue
            status[i, kb] = ST_OK
            a, b, c = x[0], x[1], x[2]
            # mse of the normalised light curve vs the prediction rounded to 4 decimals (0 -> 1e-5)
            sy = 0.0
            sp = 0.0
            for j in range(m):
                p = np.rint(c / (1.0 + np.exp(-a * (ty[j] - b))) * 1e4) / 1e4
                if p == 0.0:
                    p = 1e-5
                ee[j] = p
                sy += yy[j]
                sp += p
            mse = 0.0
            for j in range(m):
                d = yy[j] / sy - ee[j] / sp
                mse += d * d
            mse /= m
            o = 6 * kb
            X[i, o] = a
            X[i, o + 1] = b
            X[i, o + 2] = c
            X[i, o + 3] = snr
            X[i, o + 4] = mse
            X[i, o + 5] = m
