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
# Only "nsz" of fast math: with reassociation, contraction (FMA), approximate functions or
# reciprocals the rounding depended on how a helper was compiled (inlined into the fit, or compiled
# on its own first when called directly), so two processes could fit the same light curve to
# slightly different end points (Spark vs local scores). Cost: ~15 % of the speed, fits unchanged
# (bench/bench_rainbow.py --against).
FAST = {"nsz"}
# parameter order inside the kernel
P_T0, P_AMP, P_RISE, P_TMID, P_TAMP, P_TCOLOR = 0, 1, 2, 3, 4, 5

H_PLANCK = 6.62607015e-27  # erg s
K_BOLTZMANN = 1.380649e-16  # erg / K
SIGMA_SB = 5.6703744191844314e-05  # erg / (cm² s K⁴)
C_LIGHT = 2.99792458e10  # cm / s
T_UNIT = 1.0e4  # kernel temperature unit (K)
SCREEN_ITER = 10  # iterations every start gets before successive halving keeps the better half
STALL_TOL = (
    0.01  # χ² gain over STALL_EVERY iterations below which a crawling fit is considered converged
)
# relative ridge of the EDM solve: a direction the data do not constrain cannot block convergence
EDM_RIDGE = 1e-4
#: variance (kernel units: scaled time, log scales) above which a parameter counts as unconstrained
#: (degenerate fit)
MAX_KERNEL_VAR = 1e12
STALL_EVERY = 5  # iterations between two stall checks
STALL_EDM = 0.02  # expected χ² gain left below which a stalled fit is considered converged
EDM_SKIP = 1e4  # the EDM is only computed once a step gains less than EDM_SKIP x its tolerance
LAM_INIT = (
    3.0  # initial Marquardt damping of every start (the starts are rough: cautious first steps)
)
#: starts in order of usefulness (so that a small n_starts keeps the best ones): light-curve's
#: start, rising-only, early rise then cooling, rise just before the peak then cooling from hot,
#: cooling, heating, sharp rise at the first point, rise before the data then long cooling, hot. The
#: three peaked-light-curve shapes (5, 6, 7, 8) are what most often finds the lowest minimum on
#: ELAsTiCC alerts, whose light curves are mostly past their peak.
START_ORDER = (0, 1, 5, 6, 3, 4, 7, 8, 2)

# status codes (the extractor turns them into reasons)
ST_OK = 0
ST_FEW_POINTS = 1
ST_NONPOSITIVE_MAX = 2
ST_NOT_CONVERGED = 3
ST_SINGULAR = 4
ST_FEW_BANDS = 5


@numba.njit(cache=True, inline="always", fastmath=FAST)
def _sigmoid_pair(z):
    """(1 / (1 + e^z), e^z / (1 + e^z)²) without overflow (one exp, one division, no branch)."""
    e = math.exp(-abs(z))
    d = 1.0 / (1.0 + e)
    return (e * d if z > 0.0 else d), e * d * d


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
    g = (
        (2.0 * math.pi * H_PLANCK / (C_LIGHT * C_LIGHT * SIGMA_SB))
        * nu
        * nu
        * nu
        * nu_ref
        * ex
        / (em * t2 * t2)
    )
    dlng = (x / em - 4.0) / temp
    return g, dlng


@numba.njit(cache=True, fastmath=FAST)
def model_flux(t, nu, params, nu_ref):
    """Model flux at times ``t`` (days) and frequencies ``nu`` (Hz) for physical ``params``
    ``[t0, amplitude, rise_time, T_mid (K), T_amp, t_color]``."""
    out = np.empty(t.shape[0])
    t0, amp, rise, tmid, tamp, tcol = (
        params[0],
        params[1],
        params[2],
        params[3],
        params[4],
        params[5],
    )
    for k in range(t.shape[0]):
        dt = t[k] - t0
        sb, _ = _sigmoid_pair(-dt / rise)
        sc, _ = _sigmoid_pair(dt / tcol)
        temp = tmid * (1.0 + tamp * (2.0 * sc - 1.0))
        g, _ = _g_and_dlng(nu[k], nu_ref, temp)
        out[k] = amp * sb * g
    return out


@numba.njit(cache=True, fastmath=FAST)
def preprocess(
    mjd, band, flux, flux_err, detected, starts, ends, nu_band, use_detected_only, min_flux, window
):
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
def point_constants(nus, nu_ref, n, xk, ck):
    """Per-point constants of the spectral factor, so that a pass over the points needs no powers
    of ν: with T in kernel units, x = h ν / (k T) = ``xk / T`` and g = ``ck`` e^-x / ((1 - e^-x)
    T⁴)."""
    cg = 2.0 * math.pi * H_PLANCK / (C_LIGHT * C_LIGHT * SIGMA_SB) / T_UNIT**4
    for k in range(n):
        nu = nus[k]
        xk[k] = H_PLANCK * nu / (K_BOLTZMANN * T_UNIT)
        ck[k] = cg * nu * nu * nu * nu_ref


@numba.njit(cache=True, inline="always", fastmath=FAST)
def _spectral(xk, ck, temp):
    """g and d ln g / dT (kernel temperature units) from the per-point constants."""
    it = 1.0 / temp
    x = xk * it
    if x > 700.0:
        return 0.0, 0.0
    ex = math.exp(-x)
    iem = 1.0 / (1.0 - ex if x > 0.1 else -math.expm1(-x))
    it2 = it * it
    return ck * ex * iem * it2 * it2, (x * iem - 4.0) * it


@numba.njit(cache=True, fastmath=FAST)
def _evaluate(ts, xk, ck, n, p, buf):
    """The expensive part of a pass (three exponentials per point), stored per point in ``buf``
    (6, n): s_b, s_b (1 - s_b), 2 s_c - 1, s_c (1 - s_c), g and d ln g / dT. A cost pass fills it
    and, when the step is accepted, the normal equations at the same parameters reuse it."""
    t0, tmid, tamp = p[0], math.exp(p[3]), p[4]
    irise = math.exp(-p[2])
    itcol = math.exp(-p[5])
    for k in range(n):
        dt = ts[k] - t0
        sb, sb1 = _sigmoid_pair(-dt * irise)
        sc, sc1 = _sigmoid_pair(dt * itcol)
        two_sc = 2.0 * sc - 1.0
        gk, dlng = _spectral(xk[k], ck[k], tmid * (1.0 + tamp * two_sc))
        buf[0, k] = sb
        buf[1, k] = sb1
        buf[2, k] = two_sc
        buf[3, k] = sc1
        buf[4, k] = gk
        buf[5, k] = dlng


@numba.njit(cache=True, fastmath=FAST)
def _cost_from(fs, ws, n, p, prior_w, buf, profile, lo_amp, hi_amp):
    """Cost of the evaluated point; with ``profile``, first set ``p[1]`` (ln A) to the best
    amplitude.

    The model is linear in A, so its optimum is closed-form (clipped to the bounds): the fit then
    only searches the five nonlinear parameters (variable projection), and the long valley along
    which t0 and A trade off on rising-only light curves disappears."""
    if profile:
        shh = 0.0
        sfh = 0.0
        for k in range(n):
            h = buf[0, k] * buf[4, k] * ws[k]
            shh += h * h
            sfh += h * fs[k] * ws[k]
        la = math.log(sfh / shh) if (sfh > 0.0 and shh > 0.0) else lo_amp
        p[1] = min(max(la, lo_amp), hi_amp)
    amp = math.exp(p[1])
    cost = 0.0
    for k in range(n):
        r = (amp * buf[0, k] * buf[4, k] - fs[k]) * ws[k]
        cost += r * r
    if prior_w > 0.0:
        cost += (p[4] * prior_w) ** 2
    return cost


@numba.njit(cache=True, fastmath=FAST)
def _normal_from(ts, fs, ws, n, p, prior_w, H, g, buf):
    """Fill H = JᵀJ, g = Jᵀr (r = (model - data) / err) from the evaluated point; return the cost.

    The 21 distinct entries of H are accumulated in scalars (registers), not in the matrix."""
    t0, amp, tmid, tamp = p[0], math.exp(p[1]), math.exp(p[3]), p[4]
    irise = math.exp(-p[2])
    itcol = math.exp(-p[5])
    h00 = h10 = h11 = h20 = h21 = h22 = h30 = h31 = h32 = h33 = 0.0
    h40 = h41 = h42 = h43 = h44 = h50 = h51 = h52 = h53 = h54 = h55 = 0.0
    g0 = g1 = g2 = g3 = g4 = g5 = 0.0
    cost = 0.0
    ttc = 2.0 * tmid * tamp * itcol
    for k in range(n):
        dt = ts[k] - t0
        two_sc = buf[2, k]
        w = ws[k]
        ag = amp * buf[4, k] * w
        m = ag * buf[0, k]
        r = m - fs[k] * w
        cost += r * r
        # derivatives with respect to (t0, ln A, ln rise, ln T_mid, T_amp, ln t_color)
        dmT = m * buf[5, k]
        q = dmT * ttc * buf[3, k]
        b = ag * buf[1, k] * irise
        j0 = q - b
        j1 = m
        j2 = -b * dt
        j4 = dmT * tmid * two_sc
        j3 = dmT * tmid + j4 * tamp  # dmT * T(t)
        j5 = q * dt
        g0 += j0 * r
        g1 += j1 * r
        g2 += j2 * r
        g3 += j3 * r
        g4 += j4 * r
        g5 += j5 * r
        h00 += j0 * j0
        h10 += j1 * j0
        h11 += j1 * j1
        h20 += j2 * j0
        h21 += j2 * j1
        h22 += j2 * j2
        h30 += j3 * j0
        h31 += j3 * j1
        h32 += j3 * j2
        h33 += j3 * j3
        h40 += j4 * j0
        h41 += j4 * j1
        h42 += j4 * j2
        h43 += j4 * j3
        h44 += j4 * j4
        h50 += j5 * j0
        h51 += j5 * j1
        h52 += j5 * j2
        h53 += j5 * j3
        h54 += j5 * j4
        h55 += j5 * j5
    if prior_w > 0.0:
        rp = tamp * prior_w
        cost += rp * rp
        h44 += prior_w * prior_w
        g4 += prior_w * rp
    g[0], g[1], g[2], g[3], g[4], g[5] = g0, g1, g2, g3, g4, g5
    H[0, 0] = h00
    H[1, 0] = H[0, 1] = h10
    H[1, 1] = h11
    H[2, 0] = H[0, 2] = h20
    H[2, 1] = H[1, 2] = h21
    H[2, 2] = h22
    H[3, 0] = H[0, 3] = h30
    H[3, 1] = H[1, 3] = h31
    H[3, 2] = H[2, 3] = h32
    H[3, 3] = h33
    H[4, 0] = H[0, 4] = h40
    H[4, 1] = H[1, 4] = h41
    H[4, 2] = H[2, 4] = h42
    H[4, 3] = H[3, 4] = h43
    H[4, 4] = h44
    H[5, 0] = H[0, 5] = h50
    H[5, 1] = H[1, 5] = h51
    H[5, 2] = H[2, 5] = h52
    H[5, 3] = H[3, 5] = h53
    H[5, 4] = H[4, 5] = h54
    H[5, 5] = h55
    return cost


@numba.njit(cache=True, fastmath=FAST)
def _normal_equations(ts, xk, ck, fs, ws, n, p, prior_w, H, g, buf):
    """Normal equations at ``p`` from scratch (evaluate, then assemble)."""
    _evaluate(ts, xk, ck, n, p, buf)
    return _normal_from(ts, fs, ws, n, p, prior_w, H, g, buf)


@numba.njit(cache=True, fastmath=FAST)
def _cost_only(ts, xk, ck, fs, ws, n, p, prior_w, buf):
    """χ² + prior at ``p`` (amplitude as given)."""
    _evaluate(ts, xk, ck, n, p, buf)
    return _cost_from(fs, ws, n, p, prior_w, buf, False, 0.0, 0.0)


@numba.njit(cache=True, fastmath=FAST)
def _cholesky_solve(A, b, x, free, L, y):
    """Solve A x = b on the free parameters (others: x = 0); ``L``, ``y``: work arrays.
    False if A is not positive definite."""
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
    """Inverse of a symmetric positive-definite 6x6 matrix (False when singular or when a variance
    exceeds :data:`MAX_KERNEL_VAR`, i.e. the data do not constrain a parameter at all)."""
    free = np.ones(NPAR, np.bool_)
    e = np.zeros(NPAR)
    x = np.zeros(NPAR)
    L = np.zeros((NPAR, NPAR))
    y = np.zeros(NPAR)
    for c in range(NPAR):
        for k in range(NPAR):
            e[k] = 0.0
        e[c] = 1.0
        if not _cholesky_solve(A, e, x, free, L, y):
            return False
        if not (x[c] < MAX_KERNEL_VAR):
            return False
        for k in range(NPAR):
            out[k, c] = x[k]
    return True


@numba.njit(cache=True, fastmath=FAST)
def _edm(H, grad, p, lo, hi, free, A, rhs, step, L, y):
    """Expected χ² decrease of an undamped Gauss-Newton step on the free parameters (Migrad's
    EDM)."""
    for a in range(NPAR):
        at_lo = p[a] <= lo[a] and grad[a] > 0.0
        at_hi = p[a] >= hi[a] and grad[a] < 0.0
        free[a] = not (at_lo or at_hi)
        for b in range(NPAR):
            A[a, b] = H[a, b]
        A[a, a] = H[a, a] * (1.0 + EDM_RIDGE) + 1e-12
        rhs[a] = grad[a]
    if not _cholesky_solve(A, rhs, step, free, L, y):
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
def _lm(
    ts,
    xk,
    ck,
    fs,
    ws,
    n,
    p,
    lo,
    hi,
    prior_w,
    max_iter,
    edm_tol,
    H,
    grad,
    profile,
    buf,
    counter,
    lam0,
    wm,
    wv,
    free,
    resume,
    cost0,
):
    """Projected Levenberg-Marquardt from ``p`` (modified in place). Returns (cost, converged,
    damping).

    ``profile``: the amplitude is not searched but set to its optimum after every step (variable
    projection; the damping then acts on the five nonlinear parameters only). ``lam0``: initial
    damping (e.g. where the previous round of this start stopped); ``resume``: ``H``, ``grad``
    and ``cost0`` already hold the normal equations and cost at ``p`` (saves one evaluation per
    round). ``counter[0]`` counts model evaluations (passes computing the exponentials of every
    point). ``wm`` (2, 6, 6), ``wv`` (4, 6), ``free``: work arrays."""
    A = wm[0]
    L = wm[1]
    step = wv[0]
    trial = wv[1]
    rhs = wv[2]
    y = wv[3]
    if resume:
        cost = cost0  # H and grad hold the normal equations at p from the previous round
    else:
        _evaluate(ts, xk, ck, n, p, buf)
        counter[0] += 1
        if profile:
            _cost_from(fs, ws, n, p, prior_w, buf, True, lo[P_AMP], hi[P_AMP])
        cost = _normal_from(ts, fs, ws, n, p, prior_w, H, grad, buf)
    lam = lam0
    nu_d = 2.0
    converged = False
    stall_ref = cost
    for it in range(max_iter):
        # stalled: χ² improved by less than STALL_TOL over the last STALL_EVERY iterations
        # (statistically nothing), unless the Gauss-Newton model still expects more than STALL_EDM:
        # a slow crawl towards a minimum that is still a sizeable fraction of Δχ² = 1 away is not a
        # minimum
        if it > 0 and it % STALL_EVERY == 0:
            scale = _chi2_scale(cost, n)
            if (
                stall_ref - cost < STALL_TOL * scale
                and _edm(H, grad, p, lo, hi, free, A, rhs, step, L, y) < STALL_EDM * scale
            ):
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
                A[a, a] = H[a, a] * (1.0 + (0.0 if profile and a == P_AMP else lam)) + 1e-12
                rhs[a] = -grad[a]
            if not _cholesky_solve(A, rhs, step, free, L, y):
                lam *= 10.0
                continue
            for a in range(NPAR):
                v = p[a] + step[a]
                if v < lo[a]:
                    v = lo[a]
                elif v > hi[a]:
                    v = hi[a]
                trial[a] = v
            _evaluate(ts, xk, ck, n, trial, buf)
            counter[0] += 1
            new_cost = _cost_from(fs, ws, n, trial, prior_w, buf, profile, lo[P_AMP], hi[P_AMP])
            if new_cost < cost:
                # Nielsen's damping update from the gain ratio rho = actual / predicted decrease
                # (quadratic model: -(2 gᵀd + dᵀHd)): shrink a lot after a step the model predicted
                # well
                pred = 0.0
                for a in range(NPAR):
                    da = trial[a] - p[a]
                    hd = 0.0
                    for b in range(NPAR):
                        hd += H[a, b] * (trial[b] - p[b])
                    pred -= da * (2.0 * grad[a] + hd)
                rho = (cost - new_cost) / pred if pred > 0.0 else 1.0
                lam = max(lam * max(1.0 / 3.0, min(1.0 - (2.0 * rho - 1.0) ** 3, 1.0)), 1e-9)
                nu_d = 2.0
                dmax = 0.0
                for a in range(NPAR):
                    dmax = max(dmax, abs(trial[a] - p[a]) / (abs(p[a]) + 1e-8))
                    p[a] = trial[a]
                old = cost
                cost = _normal_from(ts, fs, ws, n, p, prior_w, H, grad, buf)  # buf holds this point
                accepted = True
                tol = edm_tol * _chi2_scale(cost, n)
                # (the EDM solve is skipped while steps still gain much more than the tolerance)
                if (
                    old - cost <= 1e-12 * (old + 1e-300)
                    or dmax < 1e-10
                    or (
                        old - cost < EDM_SKIP * tol
                        and _edm(H, grad, p, lo, hi, free, A, rhs, step, L, y) < tol
                    )
                ):
                    converged = True
                break
            lam *= nu_d
            nu_d *= 2.0
        if converged:
            break
        if not accepted:
            # no descent step even with huge damping: a (constrained) minimum
            converged = True
            break
    return cost, converged and math.isfinite(cost), lam


@numba.njit(cache=True, fastmath=FAST)
def fit_batch(
    t,
    nu,
    flux,
    err,
    band,
    starts,
    ends,
    nu_ref,
    prior_sigma,
    min_points,
    min_bands,
    max_iter,
    edm_tol,
    n_starts,
    n_bands,
    init,
    profile=True,
    screen_iter=SCREEN_ITER,
):
    """Fit every segment (``init`` (n, 6): physical starting parameters, a NaN row = none).

    Returns ``(params (n, 6), cov (n, 6, 6), chi2 (n,), n_pts, n_bnd,
    peak_flux, t_last, status, n_passes)`` with params/cov in physical units (days, flux units, K);
    ``n_passes`` counts the passes over the points (the cost of a fit)."""
    n_seg = starts.shape[0]
    params = np.full((n_seg, NPAR), np.nan)
    cov = np.full((n_seg, NPAR, NPAR), np.nan)
    chi2 = np.full(n_seg, np.nan)
    n_pts = np.zeros(n_seg, np.int64)
    n_bnd = np.zeros(n_seg, np.int64)
    peak = np.full(n_seg, np.nan)
    t_last = np.full(n_seg, np.nan)
    status = np.zeros(n_seg, np.int64)
    passes = np.zeros(n_seg, np.int64)
    counter = np.zeros(1, np.int64)
    prior_w = 1.0 / prior_sigma if prior_sigma > 0.0 else 0.0
    max_n = 0
    for i in range(n_seg):
        max_n = max(max_n, ends[i] - starts[i])
    ts = np.empty(max_n)
    fs = np.empty(max_n)
    ws = np.empty(max_n)
    nus = np.empty(max_n)
    xk = np.empty(max_n)
    ck = np.empty(max_n)
    buf = np.empty((6, max_n))
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
    LAM = np.zeros(n_max_starts)
    HS = np.zeros(
        (n_max_starts, NPAR, NPAR)
    )  # normal equations where each start stands (resumed next round)
    GS = np.zeros((n_max_starts, NPAR))
    wm = np.zeros((2, NPAR, NPAR))
    wv = np.zeros((4, NPAR))
    free = np.ones(NPAR, np.bool_)
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
        point_constants(nus, nu_ref, n, xk, ck)
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
        has_init = (
            has_init and init[i, 1] > 0 and init[i, 2] > 0 and init[i, 3] > 0 and init[i, 5] > 0
        )
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
            elif start == 6:
                # rose before the brightest point, hot and cooling over the span (peaked light
                # curves)
                P[n_s, 0] = ts[kmax] - width
                rise0 = 0.1 * width
                tamp0 = 0.8
                tcol0 = ptp_t
            elif start == 7:
                P[n_s, 0] = tlo
                rise0 = 0.02
                tamp0 = 0.3
                tcol0 = 0.5 * ptp_t
            elif start == 8:
                # rose before the data, long cooling
                P[n_s, 0] = tlo - 0.2 * ptp_t
                rise0 = 0.05
                tamp0 = 0.9
                tcol0 = 0.3 * ptp_t
            elif start >= 9:
                P[n_s, 0] = tlo + ptp_t * ((start - 8) / 4.0)
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
            LAM[k] = LAM_INIT
            order[k] = k
        if n_s == 0:
            # no start at all (n_starts = 0 and no init row): nothing was fitted
            status[i] = ST_NOT_CONVERGED
            continue
        alive = n_s
        counter[0] = 0
        budget = screen_iter if n_s > 1 else max_iter
        first_round = True
        while alive > 0:
            for j in range(alive):
                k = order[j]
                if CONV[k]:
                    continue
                for a in range(NPAR):
                    p[a] = P[k, a]
                C[k], CONV[k], LAM[k] = _lm(
                    ts,
                    xk,
                    ck,
                    fs,
                    ws,
                    n,
                    p,
                    lo,
                    hi,
                    prior_w,
                    budget,
                    edm_tol,
                    HS[k],
                    GS[k],
                    profile,
                    buf,
                    counter,
                    LAM[k],
                    wm,
                    wv,
                    free,
                    not first_round,
                    C[k],
                )
                for a in range(NPAR):
                    P[k, a] = p[a]
            first_round = False
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
        _normal_equations(ts, xk, ck, fs, ws, n, p, prior_w, H, grad, buf)
        passes[i] = counter[0] + 1
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
    return params, cov, chi2, n_pts, n_bnd, peak, t_last, status, passes


@numba.njit(cache=True)
def _time_of_max(t, flux, start, end):
    """Time of the brightest point of ``start:end`` (the first one on ties)."""
    kmax = start
    for k in range(start, end):
        if flux[k] > flux[kmax]:
            kmax = k
    return t[kmax]


@numba.njit(cache=True)
def slope_significance(t, flux, err, starts, ends, until_max):
    """Error-weighted linear slope of flux vs time divided by its standard error, per segment.

    ``until_max``: only the points up to the brightest one (the rise of a light curve that has
    peaked). The error is inflated by the reduced χ² of the line when above 1. A rising transient
    has a large positive value; flat, noisy-constant and fading light curves do not, whatever a
    6-parameter fit makes of them (NaN with fewer than 3 points).
    """
    n_seg = starts.shape[0]
    out = np.full(n_seg, np.nan)
    for i in range(n_seg):
        if ends[i] - starts[i] < 3:
            continue
        t0 = t[starts[i]]
        t_end = _time_of_max(t, flux, starts[i], ends[i]) if until_max else np.inf
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
        # scatter beyond the quoted errors (underestimated noise, variability) widens the slope
        # error
        inflate = max(1.0, chi2 / (m - 2))
        out[i] = slope / math.sqrt(s / det * inflate)
    return out


@numba.njit(cache=True)
def banded_rise_significance(t, flux, err, band, starts, ends, n_bands, min_dof):
    """Significance of the rise up to the brightest point with one intercept per band, per segment.

    The same question as ``slope_significance(..., until_max=True)``, asked so that colour cannot
    hide a rise: points up to the brightest one are fitted by ``flux = a_band + slope * t`` (one
    offset per band, one common slope), so a supernova observed in a bright and a faint band rises
    significantly even when the pooled points scatter by the colour. Bands with one point up to
    the peak carry no slope and are left out. The error is inflated by the reduced χ² when above 1;
    NaN when fewer than ``min_dof`` degrees of freedom remain to measure that scatter (the
    protection against noise whose errors are underestimated).
    """
    n_seg = starts.shape[0]
    out = np.full(n_seg, np.nan)
    sw = np.zeros(n_bands)
    swx = np.zeros(n_bands)
    swf = np.zeros(n_bands)
    cnt = np.zeros(n_bands, np.int64)
    for i in range(n_seg):
        if ends[i] - starts[i] < 3:
            continue
        t0 = t[starts[i]]
        t_end = _time_of_max(t, flux, starts[i], ends[i])
        for b in range(n_bands):
            sw[b] = 0.0
            swx[b] = 0.0
            swf[b] = 0.0
            cnt[b] = 0
        for k in range(starts[i], ends[i]):
            if t[k] <= t_end:
                w = 1.0 / (err[k] * err[k])
                sw[band[k]] += w
                swx[band[k]] += w * (t[k] - t0)
                swf[band[k]] += w * flux[k]
                cnt[band[k]] += 1
        m = 0
        n_used = 0
        for b in range(n_bands):
            if cnt[b] >= 2:
                m += cnt[b]
                n_used += 1
                swx[b] /= sw[b]  # band means (second pass: no cancellation)
                swf[b] /= sw[b]
        dof = m - n_used - 1
        if n_used == 0 or dof < min_dof:
            continue
        sxx = 0.0
        sxy = 0.0
        for k in range(starts[i], ends[i]):
            b = band[k]
            if t[k] <= t_end and cnt[b] >= 2:
                w = 1.0 / (err[k] * err[k])
                dx = t[k] - t0 - swx[b]
                sxx += w * dx * dx
                sxy += w * dx * (flux[k] - swf[b])
        if not (sxx > 0.0):
            continue
        slope = sxy / sxx
        chi2 = 0.0
        for k in range(starts[i], ends[i]):
            b = band[k]
            if t[k] <= t_end and cnt[b] >= 2:
                r = (flux[k] - swf[b] - slope * (t[k] - t0 - swx[b])) / err[k]
                chi2 += r * r
        out[i] = slope / math.sqrt(max(1.0, chi2 / dof) / sxx)
    return out
