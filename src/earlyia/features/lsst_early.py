"""The LSST early SN Ia features: early-epoch features on ugrizY, Rainbow where it fits, the alert's
host galaxy.

Why one extractor: the ELAsTiCC classifier of the README learns from these three blocks together,
and ``earlyia score`` rebuilds a model's features from its card alone, so all three must come from
one registered, configured object (locally and on Spark alike).

* :class:`~earlyia.features.early.EarlyFeatures` on the six bands, with the extra colours r - i, i -
  z, u - g: defined for every alert, even one point in one band.
* :class:`~earlyia.features.rainbow.RainbowFeatures` with Fink's ELAsTiCC cuts (flux >= -10 nJy,
  intraday averaging) and ``rainbow_min_points`` (Fink: 7). Where the fit fails, the fitted columns
  hold :data:`PLACEHOLDER` and ``rainbow_valid`` is 0, while the columns defined without a fit
  (``n_points``, ``n_bands``, ``peak_flux``, ``slope_sig``, ``rise_sig``, ``rise_sig_band``) keep
  their values: the row stays usable.
* Host galaxy as the alert's ``diaObject`` carries it (``host="z"``: photo-z, its error, Milky-Way
  E(B-V); ``"full"`` adds host r magnitude, ellipticity, size, separation and four host colours).
  Never the simulation's truth. PLAsTiCC metadata (``hostgal_photoz``) is mapped: a photo-z of
  exactly 0 (galactic) gets ELAsTiCC's no-host values; host magnitudes and shapes PLAsTiCC lacks are
  unknown (placeholder).

Host columns live on the objects, not in the photometry: :meth:`LsstEarlyFeatures.extract_lc` reads
them from the light-curve table, and the array-only :meth:`~LsstEarlyFeatures.extract` refuses a
host setting.
"""

from __future__ import annotations

import numpy as np

from earlyia.errors import ConfigError
from earlyia.features.base import FeatureExtractor, register_extractor
from earlyia.features.early import EarlyFeatures
from earlyia.features.rainbow import RainbowFeatures

PLACEHOLDER = -999.0
LSST_EARLY_BANDS = ("g", "r", "i", "z", "u", "Y")  # g - r is the main colour: g and r first
EXTRA_COLOURS = (("r", "i"), ("i", "z"), ("u", "g"))
HOST_Z = ("hostgal_zphot", "hostgal_zphot_err", "mwebv")
HOST_GALAXY = ("hostgal_mag_r", "hostgal_ellipticity", "hostgal_sqradius", "hostgal_snsep")
HOST_COLOURS = (("g", "r"), ("r", "i"), ("u", "g"), ("i", "z"))
#: ELAsTiCC's values when no host galaxy is matched
HOSTLESS = {
    "hostgal_zphot": -999.0,
    "hostgal_zphot_err": -999.0,
    "hostgal_ellipticity": -9999.0,
    "hostgal_sqradius": -9999.0,
    "hostgal_snsep": -9.0,
    **{f"hostgal_mag_{b}": 999.0 for b in "ugrizY"},
}
#: Rainbow columns defined without a fit (kept when the fit fails)
RAINBOW_ALWAYS = ("n_points", "n_bands", "peak_flux", "slope_sig", "rise_sig", "rise_sig_band")
HOST_SETTINGS = ("none", "z", "full")


class LsstEarlyFeatures(FeatureExtractor):
    """Early + Rainbow + host-galaxy features of LSST alerts (extractor name ``"lsst_early"``).

    Args:
        rainbow_min_points: points (after Rainbow's cuts) a fit needs; Fink uses 7.
        forced: fit the forced photometry the alerts carry too (else detections only).
        host: ``"none"``, ``"z"`` or ``"full"`` (see the module docstring).
        bands, extra_colours: of the early features.
    """

    name = "lsst_early"

    def __init__(
        self,
        rainbow_min_points: int = 3,
        forced: bool = True,
        host: str = "full",
        bands: tuple[str, ...] = LSST_EARLY_BANDS,
        extra_colours: tuple[tuple[str, str], ...] = EXTRA_COLOURS,
    ):
        self.rainbow_min_points = rainbow_min_points
        self.forced = forced
        self.host = host
        self.bands = bands
        self.extra_colours = extra_colours

    # ----------------------------------------------------------------- parts
    def _early(self) -> EarlyFeatures:
        return EarlyFeatures(
            bands=tuple(self.bands),
            sigmoid=None,
            extra_colours=tuple(tuple(p) for p in self.extra_colours),
        )

    def _rainbow(self) -> RainbowFeatures:
        return RainbowFeatures.fink(
            survey="LSST", min_points=int(self.rainbow_min_points), detections_only=not self.forced
        )

    def _host_names(self) -> list[str]:
        if self.host not in HOST_SETTINGS:
            raise ConfigError(f"lsst_early: host must be one of {HOST_SETTINGS}, got {self.host!r}")
        if self.host == "none":
            return []
        names = list(HOST_Z)
        if self.host == "full":
            names += [*HOST_GALAXY, *[f"hostgal_{a}-{b}" for a, b in HOST_COLOURS]]
        return names

    @property
    def names(self) -> list[str]:
        return [
            *self._early().names,
            *[f"rainbow_{n}" for n in self._rainbow().names],
            "rainbow_valid",
            *self._host_names(),
        ]

    # ----------------------------------------------------------------- computation
    def extract(self, mjd, band, flux, flux_err, detected, starts, ends, *, bands, survey):
        """Photometry-only features; only possible with ``host="none"`` (host columns are object
        columns)."""
        if self._host_names():
            raise ConfigError(
                f"lsst_early with host={self.host!r} reads the objects' host-galaxy columns: "
                "call extract_lc or "
                "transform on a light-curve table, or use host='none'"
            )
        X, ok, reason = self._photometry(
            mjd, band, flux, flux_err, detected, starts, ends, bands=bands, survey=survey
        )
        return _finite(X), ok, reason

    def _photometry(self, mjd, band, flux, flux_err, detected, starts, ends, *, bands, survey):
        early, rainbow = self._early(), self._rainbow()
        args = (mjd, band, flux, flux_err, detected, starts, ends)
        XE, ok, reason = early.extract(*args, bands=bands, survey=survey)
        XR, fitted, _why = rainbow.extract(*args, bands=bands, survey=survey)
        keep = [rainbow.names.index(c) for c in RAINBOW_ALWAYS]
        XR_used = np.where(fitted[:, None], XR, PLACEHOLDER)
        XR_used[:, keep] = XR[:, keep]
        return np.hstack([XE, XR_used, fitted[:, None].astype(np.float64)]), ok, reason

    def extract_lc(self, lc, starts=None, ends=None, object_index=None):
        """:meth:`extract` on ``lc`` plus the host columns of each segment's object."""
        if starts is None:
            starts, ends, object_index = lc.starts, lc.ends, np.arange(lc.n_objects)
        starts = np.asarray(starts, np.int64)
        ends = np.asarray(ends, np.int64)
        X, ok, reason = self._photometry(
            lc.mjd,
            lc.band,
            lc.flux,
            lc.flux_err,
            lc.detected,
            starts,
            ends,
            bands=tuple(lc.bands),
            survey=lc.survey,
        )
        host = self._host_names()
        if host:
            if object_index is None:
                # a segment is a prefix of its object's rows: the object whose rows start at or
                # before it
                object_index = np.searchsorted(np.asarray(lc.offsets), starts, side="right") - 1
            X = np.hstack(
                [X, host_columns(lc.objects, self.host)[np.asarray(object_index, np.int64)]]
            )
        return _finite(X), ok, reason


def _finite(X: np.ndarray) -> np.ndarray:
    """Undefined features (NaN) become the placeholder, infinities a large finite value: forests
    need numbers."""
    return np.nan_to_num(X, nan=PLACEHOLDER, posinf=1e6, neginf=-1e6)


def host_columns(objects, host: str) -> np.ndarray:
    """``(n_objects, k)`` host-galaxy columns (``host`` = ``"z"`` or ``"full"``), in
    :class:`LsstEarlyFeatures` order."""
    o = objects
    n = len(o)

    def col(c: str) -> np.ndarray:
        return o[c].to_numpy(np.float64) if c in o.columns else np.full(n, np.nan)

    get = {c: col(c) for c in (*HOST_Z, *HOST_GALAXY, *HOSTLESS)}
    if "hostgal_zphot" not in o.columns and "hostgal_photoz" in o.columns:  # PLAsTiCC metadata
        photoz = col("hostgal_photoz")
        hostless = ~(photoz > 0)
        get["hostgal_zphot"] = photoz
        get["hostgal_zphot_err"] = col("hostgal_photoz_err")
        for c, v in HOSTLESS.items():
            get[c] = np.where(hostless, v, get[c])
    cols = [get[c] for c in HOST_Z]
    if host == "full":
        cols += [get[c] for c in HOST_GALAXY]
        cols += [get[f"hostgal_mag_{a}"] - get[f"hostgal_mag_{b}"] for a, b in HOST_COLOURS]
    return np.column_stack(cols) if cols else np.zeros((n, 0))


register_extractor("lsst_early", LsstEarlyFeatures)
