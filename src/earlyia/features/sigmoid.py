"""Per-band sigmoid features of the rising part of a light curve, for many light curves at once.

Two modes of one extractor (:class:`SigmoidFeatures`):

* ``mode="fink"`` reproduces Fink's production early-SN-Ia features (actsnfink
  ``get_sigmoid_features_dev_fast(min_rising_points=2, min_data_points=4,
  rising_criteria='ewma')``): nightly averaging on integer JD, ``|flux|`` of detections (Fink
  derives flux from the magnitude only), >= 4 nights, every EWM(com=3) difference non-negative,
  unweighted fit of ``c / (1 + exp(-a (dt - b)))`` from Fink's starting point with the same
  trust-region algorithm and stopping rules as scipy's ``least_squares``; placeholders ``[0, 0, 0,
  0.1, 1e8, 0]`` for a failing band. Use it to score with Fink's model or to compare with Fink.
* ``mode="robust"`` (default) is our improvement: error-weighted bounded fit, a rising test that
  tolerates noise, 3 points per band are enough, parameter uncertainties, reduced chi2, span and a
  per-band ``ok`` flag. See ``docs/features.md`` for each change and why.

Both run one compiled batch kernel (:mod:`earlyia.features._sigmoid_kernels`) over all segments.
"""

from __future__ import annotations

import numpy as np

from earlyia.errors import ConfigError
from earlyia.features._sigmoid_kernels import RISE_EWM_ALL, fink_features
from earlyia.features._sigmoid_robust import robust_features
from earlyia.features.base import FeatureExtractor, register_extractor

#: Fink's per-band features, in production order.
FINK_BAND_FEATURES = ("a", "b", "c", "snratio", "mse", "nrise")
#: Fink's placeholder values of a band that failed a cut.
FINK_PLACEHOLDER = (0.0, 0.0, 0.0, 0.1, 1e8, 0.0)
#: Robust-mode per-band features, in order.
ROBUST_BAND_FEATURES = (
    "a",
    "b",
    "c",
    "snratio",
    "mse",
    "nrise",
    "a_err",
    "b_err",
    "c_err",
    "chi2_red",
    "npoints",
    "span",
    "slope_sig",
    "ok",
)
#: Robust-mode placeholders of a band that cannot be fitted (documented in docs/features.md):
#: rates/times/amplitudes 0, uncertainties and chi2 -1 (never produced by a fit), counts as
#: measured.
ROBUST_PLACEHOLDER = {
    "a": 0.0,
    "b": 0.0,
    "c": 0.0,
    "snratio": 0.0,
    "mse": -1.0,
    "nrise": 0.0,
    "a_err": -1.0,
    "b_err": -1.0,
    "c_err": -1.0,
    "chi2_red": -1.0,
    "npoints": 0.0,
    "span": 0.0,
    "slope_sig": 0.0,
    "ok": 0.0,
}


class SigmoidFeatures(FeatureExtractor):
    """Sigmoid fit of each band's rising light curve (see the module docstring for the two modes).

    Parameters:
        mode: ``"robust"`` (default) or ``"fink"``.
        bands: bands to fit, in feature order.
        min_points: minimum points per band (nights in fink mode); default 4 (fink), 3 (robust).
        max_rate: robust mode: upper bound of the rise rate ``a`` (1/day).
        c_max_factor: robust mode: ``c <= c_max_factor * max(flux)`` of the band.
        b_margin: robust mode: ``b`` within the data span +- this many days.
        rise_sigma: robust mode: a band is "not rising" when its weighted flux-vs-time slope is
            below ``-rise_sigma`` standard errors.
        use_limit: robust mode: add the last upper limit before the first detection as a zero-flux
        point.
    """

    name = "sigmoid"

    def __init__(
        self,
        mode: str = "robust",
        bands: tuple[str, ...] | list[str] = ("g", "r"),
        min_points: int | None = None,
        max_rate: float = 5.0,
        c_max_factor: float = 10.0,
        b_margin: float = 30.0,
        rise_sigma: float = 2.0,
        use_limit: bool = True,
    ):
        self.mode = mode
        self.bands = bands
        self.min_points = min_points
        self.max_rate = max_rate
        self.c_max_factor = c_max_factor
        self.b_margin = b_margin
        self.rise_sigma = rise_sigma
        self.use_limit = use_limit

    # --------------------------------------------------------------------------- configuration
    def _check(self) -> None:
        if self.mode not in ("fink", "robust"):
            raise ConfigError(
                f"SigmoidFeatures: mode must be 'fink' or 'robust', got {self.mode!r}"
            )
        if not self.bands:
            raise ConfigError("SigmoidFeatures: bands must not be empty")
        if self.min_points is not None and int(self.min_points) < 3:
            raise ConfigError(
                f"SigmoidFeatures: min_points must be >= 3 (3 parameters), got {self.min_points}"
            )

    @property
    def n_min(self) -> int:
        if self.min_points is not None:
            return int(self.min_points)
        return 4 if self.mode == "fink" else 3

    @property
    def band_features(self) -> tuple[str, ...]:
        return FINK_BAND_FEATURES if self.mode == "fink" else ROBUST_BAND_FEATURES

    @property
    def names(self) -> list[str]:
        self._check()
        return [f"{f}_{b}" for b in self.bands for f in self.band_features]

    def placeholder(self) -> np.ndarray:
        """Feature values of a band that failed (per band, in :attr:`band_features` order)."""
        if self.mode == "fink":
            return np.asarray(FINK_PLACEHOLDER)
        return np.asarray([ROBUST_PLACEHOLDER[f] for f in ROBUST_BAND_FEATURES])

    # --------------------------------------------------------------------------- computation
    def extract(self, mjd, band, flux, flux_err, detected, starts, ends, *, bands, survey):
        self._check()
        starts = np.ascontiguousarray(starts, np.int64)
        ends = np.ascontiguousarray(ends, np.int64)
        n = len(starts)
        codes = np.array([list(bands).index(b) if b in bands else -1 for b in self.bands], np.int8)
        X = (
            np.tile(self.placeholder(), len(self.bands))[None, :]
            .repeat(n, axis=0)
            .astype(np.float64)
        )
        status = np.zeros((n, len(self.bands)), np.int8)
        npts = np.zeros((n, len(self.bands)), np.int64)
        args = (
            np.ascontiguousarray(mjd, np.float64),
            np.ascontiguousarray(band, np.int8),
            np.ascontiguousarray(flux, np.float64),
            np.ascontiguousarray(flux_err, np.float64),
            np.ascontiguousarray(detected, np.bool_),
            starts,
            ends,
            codes,
        )
        if n:
            if self.mode == "fink":
                # Fink's ZTF rules: nights on JD, |flux|, flux >= -10, every EWM difference rising,
                # no faint check
                fink_features(
                    *args,
                    self.n_min,
                    2400000.5,
                    True,
                    False,
                    False,
                    -np.inf,
                    -10.0,
                    False,
                    RISE_EWM_ALL,
                    True,
                    X,
                    status,
                    npts,
                )
            else:
                robust_features(
                    *args,
                    self.n_min,
                    float(self.max_rate),
                    float(self.c_max_factor),
                    float(self.b_margin),
                    float(self.rise_sigma),
                    bool(self.use_limit),
                    X,
                    status,
                    npts,
                )
        return X, *self._verdict(status, npts, codes)

    def _verdict(self, status: np.ndarray, npts: np.ndarray, codes: np.ndarray):
        """(ok, reason) per segment; reason names the failing bands.

        Fink mode: ok when every band was fitted (Fink forces the score to 0 otherwise). Robust
        mode: ok when at least one band was fitted (each band carries its own ``ok_<band>``
        feature).
        """
        n = status.shape[0]
        ok = (status == 0).all(axis=1) if self.mode == "fink" else (status == 0).any(axis=1)
        reason = np.full(n, "", dtype=object)
        unit = "nights" if self.mode == "fink" else "points"
        idx = np.flatnonzero(~ok)
        out = np.full(len(idx), "", dtype=object)
        # column by column (a few distinct messages per band), not a Python loop over light curves
        for k, b in enumerate(self.bands):
            st = status[idx, k]
            part = np.full(len(idx), "", dtype=object)
            if codes[k] < 0:
                part[:] = f"band {b}: not in this survey"
            else:
                for code, text in ((2, "not rising"), (3, "fit failed"), (4, "no positive flux")):
                    part[st == code] = f"band {b}: {text}"
                few = st == 1
                if few.any():
                    counts, inv = np.unique(npts[idx[few], k], return_inverse=True)
                    part[few] = np.array(
                        [f"band {b}: {c} {unit} < {self.n_min}" for c in counts], dtype=object
                    )[inv]
            sep = np.full(len(idx), "", dtype=object)
            sep[(out != "") & (part != "")] = "; "
            out = out + sep + part
        reason[idx] = out
        return ok, reason


register_extractor("sigmoid", SigmoidFeatures)
