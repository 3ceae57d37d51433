"""Magnitude <-> FLUXCAL conversions shared by every reader.

FLUXCAL is SNANA's calibrated flux with AB zero point 27.5, the unit of
:class:`~earlyia.io.table.LightCurves`: ``FLUXCAL = 10**(-0.4 m + 11)``. Its error follows from
first-order propagation of the magnitude error, ``FLUXCALERR = 0.4 ln(10) FLUXCAL sigma_m =
9.21034e10 exp(-0.921034 m) sigma_m`` (Fink's convention, so our fluxes equal Fink's to rounding).

Sign: ZTF ``magpsf`` is the magnitude of ``|difference flux|``; ``isdiffpos`` says whether the
difference was positive. Fink ignores it (a fading source below the reference becomes a positive
flux); we do not: a negative difference (``isdiffpos`` in ``'f', '0', False, 0, -1``) gives a
negative flux with the same error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: AB zero point of FLUXCAL.
FLUXCAL_ZEROPOINT = 27.5
_LN10_04 = 0.4 * np.log(10.0)  # 0.921034...
#: 5-sigma limiting magnitudes (ZTF ``diffmaglim``) -> 1-sigma noise.
LIMIT_SIGMA = 5.0

_NEGATIVE = {"f", "0", "false", "-1", "n", "no"}
_POSITIVE = {"t", "1", "true", "+1", "y", "yes", "", "none", "nan"}


def mag_to_fluxcal(mag, sigma, isdiffpos=None) -> tuple[np.ndarray, np.ndarray]:
    """Magnitudes and their errors -> ``(FLUXCAL, FLUXCALERR)`` arrays (NaN magnitude -> NaN flux).

    ``isdiffpos`` (scalar or array; optional): ZTF's sign of the difference image. ``'f'``, ``'0'``,
    ``False``, ``0`` or ``-1`` make the flux negative; ``'t'``, ``'1'``, ``True``, ``1``, None or
    NaN leave it positive.
    """
    m = np.asarray(mag, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        flux = 10.0 ** (-0.4 * m + 11.0)
        err = 9.21034e10 * np.exp(-0.921034 * m) * s
    if isdiffpos is not None:
        flux = np.where(diffpos_sign(isdiffpos) < 0, -flux, flux)
    return flux, err


def diffpos_sign(isdiffpos) -> np.ndarray:
    """+1 / -1 per element of a ZTF ``isdiffpos`` value or array (strings, booleans or numbers;
    unknown -> +1)."""
    arr = np.asarray(isdiffpos)
    if arr.dtype == bool:
        return np.where(arr, 1, -1).astype(np.int8)
    if arr.dtype.kind in "iuf":
        with np.errstate(invalid="ignore"):
            return np.where(np.asarray(arr, np.float64) <= 0, -1, 1).astype(np.int8)
    flat = arr.ravel()
    if flat.dtype != object:
        flat = flat.astype(object)
    # the sign of each distinct value (a few: 't', 'f', None), spread by code; equal values (1, 1.0,
    # True) share a sign
    codes, uniques = pd.factorize(flat, use_na_sentinel=True)
    signs = np.array([_value_sign(v) for v in uniques] + [1], np.int8)  # code -1 (None, NaN): +1
    return signs[codes].reshape(arr.shape)


def _value_sign(v) -> int:
    if isinstance(v, (bool, np.bool_)):
        return 1 if v else -1
    if isinstance(v, (int, float, np.integer, np.floating)):
        return -1 if (v == v and v <= 0) else 1
    if v is not None and str(v).strip().lower() in _NEGATIVE:
        return -1
    return 1


def limit_to_flux_err(diffmaglim) -> np.ndarray:
    """A 5-sigma limiting magnitude -> the 1-sigma FLUXCAL noise of that epoch (NaN stays NaN)."""
    lim = np.asarray(diffmaglim, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return 10.0 ** (-0.4 * lim + 11.0) / LIMIT_SIGMA


def fluxcal_to_mag(flux, flux_err=None):
    """FLUXCAL -> magnitude (and its error when ``flux_err`` is given); non-positive flux gives NaN.

    Returns ``mag`` alone, or ``(mag, sigma)`` with ``sigma = 2.5 / ln(10) * flux_err / flux``.
    """
    f = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = f > 0
        mag = np.where(pos, FLUXCAL_ZEROPOINT - 2.5 * np.log10(np.where(pos, f, 1.0)), np.nan)
        if flux_err is None:
            return mag
        e = np.asarray(flux_err, dtype=np.float64)
        sigma = np.where(pos, e / (_LN10_04 * np.where(pos, f, 1.0)), np.nan)
    return mag, sigma


def njy_to_fluxcal(flux_njy, zeropoint_njy: float = 31.4) -> np.ndarray:
    """Flux in nJy (ELAsTiCC/Rubin ``psFlux``, AB zero point 31.4) -> FLUXCAL (zero point 27.5)."""
    return np.asarray(flux_njy, dtype=np.float64) * 10.0 ** (
        -0.4 * (zeropoint_njy - FLUXCAL_ZEROPOINT)
    )


#: ZTF's marker of a missing forced-photometry flux.
ZTF_FORCED_MISSING = -99999.0
#: Signal to noise above which a forced measurement is a detection (ZTF's alert threshold).
DETECTION_SNR = 5.0


def ztf_forced_to_fluxcal(
    flux_dn, flux_unc_dn, magzpsci, procstatus=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ZTF forced photometry (``forcediffimflux`` and its uncertainty in DN, zero point
    ``magzpsci``) -> ``(FLUXCAL, FLUXCALERR, usable)``: ``flux = forcediffimflux * 10**(0.4 (27.5
    - magzpsci))``, signed (a measurement, not a detection or a limit). Unusable (NaN, ``usable``
    False): a missing flux (null or -99999), a non-positive or missing uncertainty or zero point,
    or a ``procstatus`` other than ``'0'`` (a processing warning)."""
    f = np.asarray(flux_dn, dtype=np.float64)
    e = np.asarray(flux_unc_dn, dtype=np.float64)
    zp = np.asarray(magzpsci, dtype=np.float64)
    ok = np.isfinite(f) & (f != ZTF_FORCED_MISSING) & np.isfinite(e) & (e > 0) & np.isfinite(zp)
    if procstatus is not None:
        status = np.asarray(procstatus, dtype=object)
        ok &= np.array(
            [s is None or str(s).strip() in ("0", "") for s in status.ravel()], bool
        ).reshape(status.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        scale = 10.0 ** (0.4 * (27.5 - zp))
    return np.where(ok, f * scale, np.nan), np.where(ok, e * scale, np.nan), ok
