"""Numba kernels of the Rainbow fit: preprocessing and a batched, bounded Levenberg-Marquardt.

Model (Russeil et al. 2024; parametrisation of light-curve 0.13.3 ``RainbowFit(bolometric=
"sigmoid", temperature="sigmoid", with_baseline=False)``)::

    F(t, ν) = A · s_b(t) · g(ν, T(t)),      g(ν, T) = π B_ν(T) ν_ref / (σ_SB T⁴)
    s_b(t)  = 1 / (1 + exp(-(t - t0) / rise_time))
    T(t)    = T_mid · (1 + T_amp · (2 s_c(t) - 1)),   s_c(t) = 1 / (1 + exp((t - t0) / t_color))

so T runs from ``T_max = T_mid (1 + T_amp)`` (early) to ``T_min = T_mid (1 - T_amp)`` (late);
``ν_ref = c / mean(λ_eff of the configured bands)`` keeps g of order unity. The cost is
``χ² + (T_amp / σ_prior)²`` (the weak prior of light-curve 0.13.3; ``σ_prior <= 0`` disables it).

Everything runs per segment in one compiled loop: no Python object per light curve. The fit
works in scaled units (time shifted by the mean and divided by the standard deviation, flux
divided by the maximum, temperature in 10⁴ K) and never stores the Jacobian: each iteration
accumulates ``JᵀJ`` (6x6) and ``Jᵀr`` point by point, then solves a damped 6x6 system by
Cholesky. Box bounds are handled by freezing parameters that sit on a bound with the gradient
pointing outwards and clipping the step (projected LM).
"""

from __future__ import annotations

import math

import numba
import numpy as np

NPAR = 6
# fast math without the no-NaN/no-inf assumptions: the kernel relies on NaN and inf checks
FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}
# parameter order inside the kernel
P_T0, P_AMP, P_RISE, P_TMID, P_TAMP, P_TCOLOR = 0, 1, 2, 3, 4, 5

H_PLANCK = 6.62607015e-27  # erg s
K_BOLTZMANN = 1.380649e-16  # erg / K
SIGMA_SB = 5.6703744191844314e-05  # erg / (cm² s K⁴)
C_LIGHT = 2.99792458e10  # cm / s
T_UNIT = 1.0e4  # kernel temperature unit (K)
N_EXTEND = 0  # step extensions tried after an accepted step
SCREEN_ITER = 10  # iterations every start gets before successive halving keeps the better half
STALL_TOL = 0.01  # χ² gain over STALL_EVERY iterations below which a crawling fit is considered converged
EDM_RIDGE = 1e-4  # relative ridge of the EDM solve: a direction the data do not constrain cannot block convergence
STALL_EVERY = 5  # iterations between two stall checks
#: starts in order of usefulness (so that a small n_starts keeps the best ones): light-curve's start,
#: rising-only, early rise then cooling (peaked light curves), cooling, heating, hot
START_ORDER = (0, 1, 5, 3, 4, 2)

# status codes (the extractor turns them into reasons)
ST_OK = 0
ST_FEW_POINTS = 1
ST_NONPOSITIVE_MAX = 2
ST_NOT_CONVERGED = 3
ST_SINGULAR = 4
ST_FEW_BANDS = 5


@numba.njit(cache=True, inline="always", fastmath=FAST)
def _sigmoid_pair(z):
    """(1 / (1 + e^z), e^z / (1 + e^z)²) without overflow."""
    if z > 0.0:
        e = math.exp(-z)
        s = e / (1.0 + e)
        return s, s * (1.0 - s)
    e = math.exp(z)
    s = 1.0 / (1.0 + e)
    return s, s * (1.0 - s)


@numba.njit(cache=True, inline="always", fastmath=FAST)
def _g_and_dlng(nu, nu_ref, temp):
    """g(ν, T) = π B_ν ν_ref / (σ T⁴) and d ln g / dT (T in K)."""
    x = H_PLANCK * nu / (K_BOLTZMANN * temp)
    if x > 700.0:
        return 0.0, 0.0
    ex = math.exp(-x)
    em = 1.0 - ex if x > 0.1 else -math.expm1(-x)  # 1 - e^-x, accurate for small x
    t2 = temp * temp
    # π B_ν = 2π h ν³ / c² · e^-x / (1 - e^-x)
    g = (2.0 * math.pi * H_PLANCK / (C_LIGHT * C_LIGHT * SIGMA_SB)) * nu * nu * nu * nu_ref * ex / (em * t2 * t2)
    dlng = (x / em - 4.0) / temp
    return g, dlng


@numba.njit(cache=True, fastmath=FAST)
def model_flux(t, nu, params, nu_ref):
    """Model flux at times ``t`` (days) and frequencies ``nu`` (Hz) for physical ``params``
    ``[t0, amplitude, rise_time, T_mid (K), T_amp, t_color]``."""
    out = np.empty(t.shape[0])
    t0, amp, rise, tmid, tamp, tcol = params[0], params[1], params[2], params[3], params[4], params[5]
    for k in range(t.shape[0]):
        dt = t[k] - t0
        sb, _ = _sigmoid_pair(-dt / rise)
        sc, _ = _sigmoid_pair(dt / tcol)
        temp = tmid * (1.0 + tamp * (2.0 * sc - 1.0))
        g, _ = _g_and_dlng(nu[k], nu_ref, temp)
        out[k] = amp * sb * g
    return out


@numba.njit(cache=True, fastmath=FAST)
def preprocess(mjd, band, flux, flux_err, detected, starts, ends, nu_band, use_detected_only, min_flux, window):
    """Select usable points and average them per band within ``window`` days.

    Keeps points with finite flux and positive finite error, ``flux >= min_flux`` and (when
    ``use_detected_only``) ``detected``; bands with ``nu_band <= 0`` are ignored. Points of a
    band closer than ``window`` to the first point of the current group are averaged (mean time,
    mean flux, error of the mean). ``window <= 0`` keeps every point. Returns compacted arrays
    ``(t, nu, flux, err, band, new_starts, new_ends)``.
    """
    n_seg = starts.shape[0]
    n_bands = nu_band.shape[0]
    total = 0
    for i in range(n_seg):
        total += max(ends[i] - starts[i], 0)
    ot = np.empty(total)
    onu = np.empty(total)
    of = np.empty(total)
    oe = np.empty(total)
    ob = np.empty(total, np.int64)
    ns = np.empty(n_seg, np.int64)
    ne = np.empty(n_seg, np.int64)
    g_first = np.empty(n_bands)
    g_t = np.zeros(n_bands)
    g_f = np.zeros(n_bands)
    g_e2 = np.zeros(n_bands)
    g_n = np.zeros(n_bands, np.int64)
    pos = 0
    for i in range(n_seg):
        ns[i] = pos
        for b in range(n_bands):
            g_n[b] = 0
        for k in range(starts[i], ends[i]):
            b = band[k]
            if b < 0 or b >= n_bands or not (nu_band[b] > 0.0):
                continue
            f = flux[k]
            e = flux_err[k]
            if not (math.isfinite(f) and math.isfinite(e) and e > 0.0 and math.isfinite(mjd[k])):
                continue
            if use_detected_only and not detected[k]:
                continue
            if f < min_flux:
                continue
            if g_n[b] > 0 and (window <= 0.0 or mjd[k] - g_first[b] >= window):
                ot[pos] = g_t[b] / g_n[b]
                of[pos] = g_f[b] / g_n[b]
                oe[pos] = math.sqrt(g_e2[b]) / g_n[b]
                onu[pos] = nu_band[b]
                ob[pos] = b
                pos += 1
                g_n[b] = 0
            if g_n[b] == 0:
                g_first[b] = mjd[k]
                g_t[b] = 0.0
                g_f[b] = 0.0
                g_e2[b] = 0.0
            g_t[b] += mjd[k]
            g_f[b] += f
            g_e2[b] += e * e
            g_n[b] += 1
        for b in range(n_bands):
            if g_n[b] > 0:
                ot[pos] = g_t[b] / g_n[b]
                of[pos] = g_f[b] / g_n[b]
                oe[pos] = math.sqrt(g_e2[b]) / g_n[b]
                onu[pos] = nu_band[b]
                ob[pos] = b
                pos += 1
        ne[i] = pos
    return ot[:pos], onu[:pos], of[:pos], oe[:pos], ob[:pos], ns, ne


@numba.njit(cache=True, fastmath=FAST)
def _normal_equations(ts, nus, fs, ws, n, p, nu_ref, prior_w, H, g):
    """Fill H = JᵀJ, g = Jᵀr (r = (model - data) / err) in scaled units; return the cost."""
    for a in range(NPAR):
        g[a] = 0.0
        for b in range(NPAR):
            H[a, b] = 0.0
    t0, amp, rise, tmid, tamp, tcol = p[0], math.exp(p[1]), math.exp(p[2]), math.exp(p[3]), p[4], math.exp(p[5])
    J = np.empty(NPAR)
    cost = 0.0
    for k in range(n):
        dt = ts[k] - t0
        sb, sb1 = _sigmoid_pair(-dt / rise)
        sc, sc1 = _sigmoid_pair(dt / tcol)
        two_sc = 2.0 * sc - 1.0
        tnorm = 1.0 + tamp * two_sc
        temp = tmid * tnorm
        gk, dlng = _g_and_dlng(nus[k], nu_ref, temp * T_UNIT)
        w = ws[k]
        m = amp * sb * gk
        r = (m - fs[k]) * w
        cost += r * r
        # d model / d T(t) in kernel temperature units
        dm_dT = m * dlng * T_UNIT
        # derivatives with respect to (t0, ln A, ln rise, ln T_mid, T_amp, ln t_color)
        J[0] = (-amp * gk * sb1 / rise + dm_dT * 2.0 * tmid * tamp * sc1 / tcol) * w
        J[1] = m * w
        J[2] = -amp * gk * sb1 * dt / rise * w
        J[3] = dm_dT * tnorm * tmid * w
        J[4] = dm_dT * tmid * two_sc * w
        J[5] = dm_dT * 2.0 * tmid * tamp * sc1 * dt / tcol * w
        for a in range(NPAR):
            g[a] += J[a] * r
            for b in range(a + 1):
                H[a, b] += J[a] * J[b]
    if prior_w > 0.0:
        rp = tamp * prior_w
        cost += rp * rp
        H[4, 4] += prior_w * prior_w
        g[4] += prior_w * rp
    for a in range(NPAR):
        for b in range(a):
            H[b, a] = H[a, b]
    return cost


@numba.njit(cache=True, fastmath=FAST)
def _cost_only(ts, nus, fs, ws, n, p, nu_ref, prior_w):
    t0, amp, rise, tmid, tamp, tcol = p[0], math.exp(p[1]), math.exp(p[2]), math.exp(p[3]), p[4], math.exp(p[5])
    cost = 0.0
    for k in range(n):
        dt = ts[k] - t0
        sb, _ = _sigmoid_pair(-dt / rise)
        sc, _ = _sigmoid_pair(dt / tcol)
        temp = tmid * (1.0 + tamp * (2.0 * sc - 1.0))
        gk, _ = _g_and_dlng(nus[k], nu_ref, temp * T_UNIT)
        r = (amp * sb * gk - fs[k]) * ws[k]
        cost += r * r
    if prior_w > 0.0:
        cost += (tamp * prior_w) ** 2
    return cost


@numba.njit(cache=True, fastmath=FAST)
def _cholesky_solve(A, b, x, free):
    """Solve A x = b on the free parameters (others: x = 0). False if A is not positive definite."""
    L = np.zeros((NPAR, NPAR))
    for i in range(NPAR):
        if not free[i]:
            continue
        for j in range(i + 1):
            if not free[j]:
                continue
            s = A[i, j]
            for k in range(j):
                if free[k]:
                    s -= L[i, k] * L[j, k]
            if i == j:
                if not (s > 0.0):
                    return False
                L[i, i] = math.sqrt(s)
            else:
                L[i, j] = s / L[j, j]
    y = np.zeros(NPAR)
    for i in range(NPAR):
        if not free[i]:
            continue
        s = b[i]
        for k in range(i):
            if free[k]:
                s -= L[i, k] * y[k]
        y[i] = s / L[i, i]
    for i in range(NPAR - 1, -1, -1):
        if not free[i]:
            x[i] = 0.0
            continue
        s = y[i]
        for k in range(i + 1, NPAR):
            if free[k]:
                s -= L[k, i] * x[k]
        x[i] = s / L[i, i]
    return True


@numba.njit(cache=True, fastmath=FAST)
def _invert_spd(A, out):
    """Inverse of a symmetric positive-definite 6x6 matrix (False when singular)."""
    free = np.ones(NPAR, np.bool_)
    e = np.zeros(NPAR)
    x = np.zeros(NPAR)
    for c in range(NPAR):
        for k in range(NPAR):
            e[k] = 0.0
        e[c] = 1.0
        if not _cholesky_solve(A, e, x, free):
            return False
        for k in range(NPAR):
            out[k, c] = x[k]
    return True


@numba.njit(cache=True, fastmath=FAST)
def _edm(H, grad, p, lo, hi, free, A, rhs, step):
    """Expected χ² decrease of an undamped Gauss-Newton step on the free parameters (Migrad's EDM)."""
    for a in range(NPAR):
        at_lo = p[a] <= lo[a] and grad[a] > 0.0
        at_hi = p[a] >= hi[a] and grad[a] < 0.0
        free[a] = not (at_lo or at_hi)
        for b in range(NPAR):
            A[a, b] = H[a, b]
        A[a, a] = H[a, a] * (1.0 + EDM_RIDGE) + 1e-12
        rhs[a] = grad[a]
    if not _cholesky_solve(A, rhs, step, free):
        return np.inf
    edm = 0.0
    for a in range(NPAR):
        edm += grad[a] * step[a]
    return edm


@numba.njit(cache=True, fastmath=FAST, inline="always")
def _chi2_scale(cost, n):
    """Tolerances are in units of the reduced χ² when the model fits worse than the errors say:
    a parameter's error then scales with sqrt(χ²/dof), and so does a meaningful χ² change."""
    return max(1.0, cost / max(n - NPAR, 1))


@numba.njit(cache=True, fastmath=FAST)
def _lm(ts, nus, fs, ws, n, p, lo, hi, nu_ref, prior_w, max_iter, edm_tol, H, grad):
    """Projected Levenberg-Marquardt from ``p`` (modified in place). Returns (cost, converged)."""
    free = np.ones(NPAR, np.bool_)
    step = np.zeros(NPAR)
    trial = np.zeros(NPAR)
    A = np.zeros((NPAR, NPAR))
    rhs = np.zeros(NPAR)
    cost = _normal_equations(ts, nus, fs, ws, n, p, nu_ref, prior_w, H, grad)
    lam = 1e-3
    converged = False
    stall_ref = cost
    for it in range(max_iter):
        # stalled: χ² improved by less than 10 x edm_tol over the last 10 iterations (statistically nothing)
        if it > 0 and it % STALL_EVERY == 0:
            if stall_ref - cost < STALL_TOL * _chi2_scale(cost, n):
                converged = True
                break
            stall_ref = cost
        span_ok = False
        for a in range(NPAR):
            at_lo = p[a] <= lo[a] and grad[a] > 0.0
            at_hi = p[a] >= hi[a] and grad[a] < 0.0
            free[a] = not (at_lo or at_hi)
            span_ok = span_ok or free[a]
        if not span_ok:
            converged = True
            break
        accepted = False
        while lam < 1e12:
            for a in range(NPAR):
                for b in range(NPAR):
                    A[a, b] = H[a, b]
                A[a, a] = H[a, a] * (1.0 + lam) + 1e-12
                rhs[a] = -grad[a]
            if not _cholesky_solve(A, rhs, step, free):
                lam *= 10.0
                continue
            for a in range(NPAR):
                v = p[a] + step[a]
                if v < lo[a]:
                    v = lo[a]
                elif v > hi[a]:
                    v = hi[a]
                trial[a] = v
            new_cost = _cost_only(ts, nus, fs, ws, n, trial, nu_ref, prior_w)
            if new_cost < cost:
                # crawl along narrow valleys faster: extend the accepted step while it keeps paying
                for _ext in range(N_EXTEND):
                    for a in range(NPAR):
                        v = p[a] + 2.0 * (trial[a] - p[a])
                        rhs[a] = min(max(v, lo[a]), hi[a])
                    ext_cost = _cost_only(ts, nus, fs, ws, n, rhs, nu_ref, prior_w)
                    if not (ext_cost < new_cost):
                        break
                    new_cost = ext_cost
                    for a in range(NPAR):
                        trial[a] = rhs[a]
                dmax = 0.0
                for a in range(NPAR):
                    dmax = max(dmax, abs(trial[a] - p[a]) / (abs(p[a]) + 1e-8))
                    p[a] = trial[a]
                old = cost
                cost = _normal_equations(ts, nus, fs, ws, n, p, nu_ref, prior_w, H, grad)
                lam = max(lam / 5.0, 1e-9)
                accepted = True
                tol = edm_tol * _chi2_scale(cost, n)
                if old - cost <= 1e-12 * (old + 1e-300) or dmax < 1e-10 or _edm(H, grad, p, lo, hi, free, A, rhs, step) < tol:
                    converged = True
                break
            lam *= 4.0
        if converged:
            break
        if not accepted:
            # no descent step even with huge damping: a (constrained) minimum
            converged = True
            break
    return cost, converged and math.isfinite(cost)


@numba.njit(cache=True, fastmath=FAST)
def fit_batch(t, nu, flux, err, band, starts, ends, nu_ref, prior_sigma, min_points, min_bands, max_iter, edm_tol, n_starts, n_bands, init):
    """Fit every segment (``init`` (n, 6): physical starting parameters, a NaN row = none).

    Returns ``(params (n, 6), cov (n, 6, 6), chi2 (n,), n_pts, n_bnd,
    peak_flux, t_last, status)`` with params/cov in physical units (days, flux units, K)."""
    n_seg = starts.shape[0]
    params = np.full((n_seg, NPAR), np.nan)
    cov = np.full((n_seg, NPAR, NPAR), np.nan)
    chi2 = np.full(n_seg, np.nan)
    n_pts = np.zeros(n_seg, np.int64)
    n_bnd = np.zeros(n_seg, np.int64)
    peak = np.full(n_seg, np.nan)
    t_last = np.full(n_seg, np.nan)
    status = np.zeros(n_seg, np.int64)
    prior_w = 1.0 / prior_sigma if prior_sigma > 0.0 else 0.0
    max_n = 0
    for i in range(n_seg):
        max_n = max(max_n, ends[i] - starts[i])
    ts = np.empty(max_n)
    fs = np.empty(max_n)
    ws = np.empty(max_n)
    nus = np.empty(max_n)
    seen = np.zeros(n_bands, np.bool_)
    H = np.zeros((NPAR, NPAR))
    grad = np.zeros(NPAR)
    Hinv = np.zeros((NPAR, NPAR))
    p = np.zeros(NPAR)
    best = np.zeros(NPAR)
    lo = np.zeros(NPAR)
    hi = np.zeros(NPAR)
    deriv = np.zeros(NPAR)
    n_max_starts = n_starts + 1
    P = np.zeros((n_max_starts, NPAR))
    C = np.zeros(n_max_starts)
    CONV = np.zeros(n_max_starts, np.bool_)
    order = np.zeros(n_max_starts, np.int64)
    for i in range(n_seg):
        s0 = starts[i]
        n = ends[i] - s0
        n_pts[i] = n
        for b in range(n_bands):
            seen[b] = False
        nb = 0
        fmax = -np.inf
        tmin_ = np.inf
        tmax_ = -np.inf
        tmean = 0.0
        for k in range(n):
            bb = band[s0 + k]
            if not seen[bb]:
                seen[bb] = True
                nb += 1
            fmax = max(fmax, flux[s0 + k])
            tmin_ = min(tmin_, t[s0 + k])
            tmax_ = max(tmax_, t[s0 + k])
            tmean += t[s0 + k]
        n_bnd[i] = nb
        if n > 0:
            peak[i] = fmax
            t_last[i] = tmax_
        if n < min_points or n <= NPAR:
            status[i] = ST_FEW_POINTS
            continue
        if nb < min_bands:
            status[i] = ST_FEW_BANDS
            continue
        if not (fmax > 0.0):
            status[i] = ST_NONPOSITIVE_MAX
            continue
        tmean /= n
        tvar = 0.0
        for k in range(n):
            tvar += (t[s0 + k] - tmean) ** 2
        tscale = math.sqrt(tvar / n)
        if not (tscale > 0.0):
            tscale = 1.0
        fscale = fmax
        for k in range(n):
            ts[k] = (t[s0 + k] - tmean) / tscale
            fs[k] = flux[s0 + k] / fscale
            ws[k] = fscale / err[s0 + k]
            nus[k] = nu[s0 + k]
        # initial guesses and bounds (scaled units), as light-curve 0.13.3 sets them
        fmin_s = np.inf
        fmax_s = -np.inf
        kmax = 0
        for k in range(n):
            if fs[k] > fmax_s:
                fmax_s = fs[k]
                kmax = k
            fmin_s = min(fmin_s, fs[k])
        ptp_f = fmax_s - fmin_s
        ptp_t = (tmax_ - tmin_) / tscale
        # weighted centroid width of the points above the median
        med = np.median(fs[:n])
        num0 = 0.0
        den0 = 0.0
        for k in range(n):
            if fs[k] > med:
                num0 += ts[k] * fs[k] * ws[k]
                den0 += fs[k] * ws[k]
        tc0 = num0 / den0 if den0 != 0.0 else 0.0
        num1 = 0.0
        den1 = 0.0
        for k in range(n):
            if fs[k] > med:
                num1 += (ts[k] - tc0) ** 2 * (fs[k] - fmin_s) * ws[k]
                den1 += (fs[k] - fmin_s) * ws[k]
        width = math.sqrt(num1 / den1) if den1 > 0.0 else 0.0
        if not (width > 0.0) or not math.isfinite(width):
            width = 0.1 * max(ptp_t, 1e-3)
        tlo = (tmin_ - tmean) / tscale
        thi = (tmax_ - tmean) / tscale
        # kernel parameters: (t0, ln A, ln rise, ln T_mid, T_amp, ln t_color), scaled units
        lo[0] = tlo - 10.0 * ptp_t
        hi[0] = thi + 10.0 * ptp_t
        amp_hi = 20.0 * max(ptp_f, 1e-6)
        lo[1] = math.log(amp_hi * 1e-8)
        hi[1] = math.log(amp_hi)
        lo[2] = math.log(width / 100.0)
        hi[2] = math.log(max(10.0 * ptp_t, width / 50.0))
        lo[3] = math.log(1e3 / T_UNIT)
        hi[3] = math.log(2e6 / T_UNIT)
        lo[4] = -0.99
        hi[4] = 0.99
        lo[5] = math.log(width / 3.0)
        hi[5] = math.log(max(10.0 * ptp_t, width / 1.5))
        # several starts, successive halving: all run a few iterations, the better half goes on,
        # and the best one is iterated to convergence (a converged start is never re-run)
        has_init = True
        for a in range(NPAR):
            has_init = has_init and math.isfinite(init[i, a])
        has_init = has_init and init[i, 1] > 0 and init[i, 2] > 0 and init[i, 3] > 0 and init[i, 5] > 0
        n_s = 0
        if has_init:
            # a given start (e.g. the previous alert's solution), in kernel units
            P[0, 0] = (init[i, 0] - tmean) / tscale
            P[0, 1] = math.log(init[i, 1] / fscale)
            P[0, 2] = math.log(init[i, 2] / tscale)
            P[0, 3] = math.log(init[i, 3] / T_UNIT)
            P[0, 4] = init[i, 4]
            P[0, 5] = math.log(init[i, 5] / tscale)
            n_s = 1
        for j_start in range(n_starts):
            start = START_ORDER[j_start] if j_start < len(START_ORDER) else j_start
            P[n_s, 0] = ts[kmax]
            rise0 = 1.0
            temp0 = 1.0
            tamp0 = 0.0
            tcol0 = 2.0 * width
            if start == 1:
                # a rising-only start: midpoint before the last point, faster rise
                P[n_s, 0] = thi - 0.5 * ptp_t
                rise0 = 0.3
            elif start == 2:
                temp0 = 2.0
            elif start == 3:
                tamp0 = 0.5
            elif start == 4:
                tamp0 = -0.5
            elif start == 5:
                # an early, fast rise followed by slow cooling (peaked, declining light curves)
                P[n_s, 0] = tlo + 0.1 * ptp_t
                rise0 = 0.05
                tamp0 = 0.5
                tcol0 = max(ptp_t, 2.0 * width)
            elif start >= 6:
                P[n_s, 0] = tlo + ptp_t * ((start - 5) / 4.0)
            P[n_s, 1] = math.log(max(ptp_f, 1e-6))
            P[n_s, 2] = math.log(rise0)
            P[n_s, 3] = math.log(temp0)
            P[n_s, 4] = tamp0
            P[n_s, 5] = math.log(tcol0)
            n_s += 1
        for k in range(n_s):
            for a in range(NPAR):
                P[k, a] = min(max(P[k, a], lo[a]), hi[a])
            C[k] = np.inf
            CONV[k] = False
            order[k] = k
        alive = n_s
        budget = SCREEN_ITER if n_s > 1 else max_iter
        while alive > 0:
            for j in range(alive):
                k = order[j]
                if CONV[k]:
                    continue
                for a in range(NPAR):
                    p[a] = P[k, a]
                C[k], CONV[k] = _lm(ts, nus, fs, ws, n, p, lo, hi, nu_ref, prior_w, budget, edm_tol, H, grad)
                for a in range(NPAR):
                    P[k, a] = p[a]
            # sort the alive starts by cost (insertion sort, a handful of entries)
            for j in range(1, alive):
                k = order[j]
                m = j
                while m > 0 and C[order[m - 1]] > C[k]:
                    order[m] = order[m - 1]
                    m -= 1
                order[m] = k
            if alive == 1 or budget >= max_iter:
                break
            alive = max(1, alive // 2)
            budget = max_iter if alive == 1 else min(max_iter, 2 * budget)
        kb = order[0]
        best_cost = C[kb]
        any_conv = CONV[kb]
        for a in range(NPAR):
            best[a] = P[kb, a]
        for a in range(NPAR):
            p[a] = best[a]
        # final normal equations for the covariance and the data-only chi2
        _normal_equations(ts, nus, fs, ws, n, p, nu_ref, prior_w, H, grad)
        chi2[i] = best_cost - ((p[4] * prior_w) ** 2 if prior_w > 0.0 else 0.0)
        # physical values and d(physical)/d(kernel parameter)
        params[i, 0] = p[0] * tscale + tmean
        params[i, 1] = math.exp(p[1]) * fscale
        params[i, 2] = math.exp(p[2]) * tscale
        params[i, 3] = math.exp(p[3]) * T_UNIT
        params[i, 4] = p[4]
        params[i, 5] = math.exp(p[5]) * tscale
        deriv[0] = tscale
        deriv[1] = params[i, 1]
        deriv[2] = params[i, 2]
        deriv[3] = params[i, 3]
        deriv[4] = 1.0
        deriv[5] = params[i, 5]
        if _invert_spd(H, Hinv):
            for a in range(NPAR):
                for b in range(NPAR):
                    cov[i, a, b] = Hinv[a, b] * deriv[a] * deriv[b]
            status[i] = ST_OK if any_conv else ST_NOT_CONVERGED
        else:
            status[i] = ST_SINGULAR if any_conv else ST_NOT_CONVERGED
    return params, cov, chi2, n_pts, n_bnd, peak, t_last, status


@numba.njit(cache=True)
def slope_significance(t, flux, err, starts, ends, until_max):
    """Error-weighted linear slope of flux vs time divided by its standard error, per segment.

    ``until_max``: only the points up to the brightest one (the rise of a light curve that has
    peaked). The error is inflated by the reduced χ² of the line when above 1. A rising transient has a large
    positive value; flat, noisy-constant and fading light curves do not, whatever a 6-parameter fit
    makes of them (NaN with fewer than 3 points).
    """
    n_seg = starts.shape[0]
    out = np.full(n_seg, np.nan)
    for i in range(n_seg):
        if ends[i] - starts[i] < 3:
            continue
        t0 = t[starts[i]]
        t_end = np.inf
        if until_max:
            kmax = starts[i]
            for k in range(starts[i], ends[i]):
                if flux[k] > flux[kmax]:
                    kmax = k
            t_end = t[kmax]
        m = 0
        s = 0.0
        sx = 0.0
        sy = 0.0
        sxx = 0.0
        sxy = 0.0
        for k in range(starts[i], ends[i]):
            if t[k] > t_end:
                continue
            m += 1
            w = 1.0 / (err[k] * err[k])
            x = t[k] - t0
            s += w
            sx += w * x
            sy += w * flux[k]
            sxx += w * x * x
            sxy += w * x * flux[k]
        det = s * sxx - sx * sx
        if m < 3 or not (det > 0.0):
            continue
        slope = (s * sxy - sx * sy) / det
        icpt = (sy - slope * sx) / s
        chi2 = 0.0
        for k in range(starts[i], ends[i]):
            if t[k] <= t_end:
                r = (flux[k] - icpt - slope * (t[k] - t0)) / err[k]
                chi2 += r * r
        # scatter beyond the quoted errors (underestimated noise, variability) widens the slope error
        inflate = max(1.0, chi2 / (m - 2))
        out[i] = slope / math.sqrt(s / det * inflate)
    return out
