"""Fink's ELAsTiCC per-band sigmoid features (u g r i z Y), on the sigmoid module's compiled fitter.

Fink's LSST/ELAsTiCC early-SN-Ia module used per-filter sigmoids with rules looser than its ZTF ones
(``docs/lsst.md``): a band is skipped when its maximum flux is <= 100 nJy; points below -0.1 x that
maximum are dropped; 3 points are enough; only the last point has to be rising (ZTF: every point).
Everything else is the ZTF "fink" mode of :mod:`earlyia.features.sigmoid`, run by the same compiled
kernel (:func:`earlyia.features._sigmoid_kernels.fink_features`, given the ELAsTiCC rules): nightly
averaging, the unweighted fit of ``c / (1 + exp(-a (dt - b)))`` (residual ``|flux - f|``) from
Fink's starting point with the same trust-region algorithm, and the six features ``a, b, c, snratio,
mse, nrise`` per band with the placeholders ``[0, 0, 0, 0.1, 1e8, 0]`` for a band that fails.

Nights: LSST nights straddle 0 h UTC, so points are grouped by ``rint(MJD)`` (which changes at noon
UTC), not by ``rint(JD)`` as for ZTF.
"""

from __future__ import annotations

import numpy as np

from earlyia.errors import ConfigError
from earlyia.features._sigmoid_kernels import (
    RISE_LAST,
    ST_FAILED,
    ST_FAINT,
    ST_FEW,
    ST_NOT_RISING,
    ST_OK,
    fink_features,
)
from earlyia.features.base import FeatureExtractor, register_extractor
from earlyia.features.sigmoid import FINK_BAND_FEATURES, FINK_PLACEHOLDER

#: nJy -> FLUXCAL (zero points 31.4 and 27.5); Fink's thresholds are in nJy.
NJY_TO_FLUXCAL = 10.0 ** (-0.4 * (31.4 - 27.5))

__all__ = [
    "NJY_TO_FLUXCAL",
    "ST_FAILED",
    "ST_FAINT",
    "ST_FEW",
    "ST_NOT_RISING",
    "ST_OK",
    "ElasticcSigmoidFeatures",
]


class ElasticcSigmoidFeatures(FeatureExtractor):
    """Fink's ELAsTiCC per-band sigmoid features (extractor name ``"sigmoid_lsst"``).

    Args:
        bands: bands in feature order (default LSST ``u g r i z Y``).
        min_points: nightly points per band after the cuts (Fink: 3).
        min_max_flux_njy: a band whose maximum flux is not above this (nJy) is skipped (Fink: 100).
        low_fraction: points below ``low_fraction * max flux`` are dropped (Fink: -0.1).
        night_offset: added to MJD before rounding to a night (0: nights change at noon UTC, right
            for Chile; 2400000.5 reproduces rounding on JD).
        min_ok_bands: a light curve is ``valid`` when at least this many bands were fitted.
    """

    name = "sigmoid_lsst"

    def __init__(
        self,
        bands: tuple[str, ...] | list[str] = ("u", "g", "r", "i", "z", "Y"),
        min_points: int = 3,
        min_max_flux_njy: float = 100.0,
        low_fraction: float = -0.1,
        night_offset: float = 0.0,
        min_ok_bands: int = 1,
    ):
        self.bands = bands
        self.min_points = min_points
        self.min_max_flux_njy = min_max_flux_njy
        self.low_fraction = low_fraction
        self.night_offset = night_offset
        self.min_ok_bands = min_ok_bands

    @property
    def names(self) -> list[str]:
        if not self.bands:
            raise ConfigError("sigmoid_lsst: bands must not be empty")
        return [f"{f}_{b}" for b in self.bands for f in FINK_BAND_FEATURES]

    def extract(self, mjd, band, flux, flux_err, detected, starts, ends, *, bands, survey):
        if int(self.min_points) < 3:
            raise ConfigError(
                f"sigmoid_lsst: min_points must be >= 3 (3 parameters), got {self.min_points}"
            )
        names = self.names
        n = len(starts)
        nb = len(self.bands)
        codes = np.array([list(bands).index(b) if b in bands else -1 for b in self.bands], np.int8)
        X = np.tile(np.asarray(FINK_PLACEHOLDER, np.float64), nb)[None, :].repeat(n, axis=0)
        status = np.full((n, nb), ST_FAINT, np.int8)
        npts = np.zeros((n, nb), np.int64)
        if n:
            fink_features(
                np.ascontiguousarray(mjd, np.float64),
                np.ascontiguousarray(band, np.int8),
                np.ascontiguousarray(flux, np.float64),
                np.ascontiguousarray(flux_err, np.float64),
                np.ascontiguousarray(detected, np.bool_),
                np.ascontiguousarray(starts, np.int64),
                np.ascontiguousarray(ends, np.int64),
                codes,
                int(self.min_points),
                float(self.night_offset),
                False,  # nights average the signed flux
                True,  # drop non-finite errors, reject non-finite fits
                True,  # skip faint bands
                float(self.min_max_flux_njy) * NJY_TO_FLUXCAL,
                float(self.low_fraction),
                True,  # lower bound relative to the maximum
                RISE_LAST,
                True,  # Fink's |residual| with finite differences
                X,
                status,
                npts,
            )
        assert X.shape == (n, len(names))
        fitted = (status == ST_OK).sum(axis=1)
        ok = fitted >= int(self.min_ok_bands)
        reason = np.full(n, "", dtype=object)
        words = {
            ST_FEW: "points < {m}",
            ST_NOT_RISING: "last point not rising",
            ST_FAILED: "fit failed",
            ST_FAINT: "max flux <= {f:g} nJy",
        }
        for i in np.flatnonzero(~ok):
            parts = []
            for k, b in enumerate(self.bands):
                if codes[k] < 0:
                    parts.append(f"band {b}: not in this survey")
                elif status[i, k] != ST_OK:
                    parts.append(
                        f"band {b}: "
                        + words[int(status[i, k])].format(
                            m=self.min_points, f=self.min_max_flux_njy
                        )
                    )
            reason[i] = f"{fitted[i]} band(s) fitted < {self.min_ok_bands}: " + "; ".join(parts)
        return X, ok, reason


register_extractor("sigmoid_lsst", ElasticcSigmoidFeatures)
