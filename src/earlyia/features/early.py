"""Features for the first few detections: defined with one band and with 2-3 points.

The sigmoid fit needs several points per band; an alert with 3 detections has mostly
"placeholders". These features stay meaningful from the first detection on, and are built
from quantities that separate a young SN Ia from its contaminants (Leoni et al. 2022 discuss
colour and rise; Fink adds the last upper limit before the first detection):

* how fast it rises (mag/day, error-weighted per band, and between the last two points),
* whether it already peaked and declines (time since the brightest point, fading since),
* its colour g - r at matched times (within ``pair_days``), the latest colour and its evolution,
* the last non-detection before the first detection: time gap and depth (when the limit is known),
* how significant the brightening is, and how non-constant the flux is (flat or noisy-constant
  curves of variable stars have chi2/dof ~ 1),
* counts (detections per band, negative-difference detections) and apparent magnitudes.

Optionally the robust sigmoid features are appended (``sigmoid="robust"``) and the SN Ia
template-fit features (``template=True``, :mod:`earlyia.features.template`), so one extractor gives
the whole default feature vector.

Three options make the features hold on what the stream delivers rather than on one curated source
(the defaults keep the behaviour of earlier releases, so their models still score):

* ``limits=False``: upper limits are ignored. In the shared labelled ZTF set their presence is an
  artefact of how it was assembled (89 % of the SN Ia light curves carry non-detections, 36 % of the
  others), and detections-only sources carry none: a model that sees them learns the artefact;
* ``magnitudes=False``: no apparent brightness (magnitudes, the sigmoid amplitude and its signal to
  noise): the same supernova 1 mag further away must score the same;
* ``negatives="separate"``: the shape features come from the positive detections only; negative
  differences (``isdiffpos = 'f'``, a subtraction residual or a source fainter than its reference)
  are counted in ``early_frac_negative``, and a light curve without a positive detection is not
  scored.
"""

from __future__ import annotations

import numba
import numpy as np

from earlyia.errors import ConfigError, InputError
from earlyia.features.base import FeatureExtractor, get_extractor, register_extractor

ZP = 27.5
_PER_BAND = ("n_det", "rise_rate", "recent_rate", "fade")
_COLOUR = ("colour_mean", "colour_last", "colour_rate", "n_colour")
_GLOBAL = (
    "n_det",
    "frac_negative",
    "duration",
    "gap_nondet",
    "has_nondet",
    "depth_nondet",
    "has_depth",
    "mag_first",
    "mag_peak",
    "mag_last",
    "t_since_peak",
    "colour_mean",
    "colour_last",
    "colour_rate",
    "n_colour",
    "log_chi2_const",
    "brightening_sig",
)
#: Apparent-brightness features, left out with ``magnitudes=False`` (``early_`` and sigmoid names).
BRIGHTNESS_FEATURES = ("early_mag_first", "early_mag_peak", "early_mag_last")
BRIGHTNESS_SIGMOID = ("c", "c_err", "snratio")
NEGATIVES = ("keep", "separate")
#: The configuration of the default early model (``earlyia features`` and the ``early`` recipe):
#: every option that makes the features hold on what the stream delivers (module docstring). The
#: class defaults are the earlier releases' features, which their model files name.
STREAM_PARAMS = {"limits": False, "magnitudes": False, "negatives": "separate", "template": True}


class EarlyFeatures(FeatureExtractor):
    """Early-epoch features (see the module docstring); ``sigmoid`` appends the sigmoid features.

    Args:
        bands: the bands of the per-band features; the colour is ``bands[0] - bands[1]``. pair_days:
        two points of different bands closer than this make a colour measurement. sigmoid: None, or
        the mode of :class:`~earlyia.features.sigmoid.SigmoidFeatures` to append. extra_colours:
        more colours ``(blue, red)`` (e.g. ``(("r", "i"), ("i", "z"))`` for LSST), each with
            the four colour features (``early_colour_mean_r_i``...), placed after the per-band
            features.
        limits: use upper limits (True) or ignore every non-detection (False). magnitudes: keep the
        apparent-brightness features (True) or leave them out (False). negatives: ``"keep"``
        (negative detections enter every feature) or ``"separate"`` (module docstring). template:
        append the SN Ia template-fit features of
        :class:`~earlyia.features.template.IaTemplateFeatures`.
    """

    name = "early"

    def __init__(
        self,
        bands: tuple[str, ...] = ("g", "r"),
        pair_days: float = 1.0,
        sigmoid: str | None = "robust",
        extra_colours: tuple[tuple[str, str], ...] = (),
        limits: bool = True,
        magnitudes: bool = True,
        negatives: str = "keep",
        template: bool = False,
    ):
        self.bands = bands
        self.pair_days = pair_days
        self.sigmoid = sigmoid
        self.extra_colours = extra_colours
        self.limits = limits
        self.magnitudes = magnitudes
        self.negatives = negatives
        self.template = template

    def _extra_pairs(self) -> list[tuple[str, str]]:
        pairs = [tuple(p) for p in (self.extra_colours or ())]
        bad = [p for p in pairs if len(p) != 2]
        if bad:
            raise InputError(f"extra_colours must be (blue, red) band pairs, got {bad!r}")
        return pairs

    def _sigmoid(self):
        if self.sigmoid is None:
            return None
        return get_extractor("sigmoid", mode=self.sigmoid, bands=tuple(self.bands))

    def _template(self):
        if not self.template:
            return None
        return get_extractor("ia_template", bands=tuple(self.bands[:2]))

    def _check(self) -> None:
        if self.negatives not in NEGATIVES:
            raise ConfigError(
                f"EarlyFeatures: negatives must be one of {NEGATIVES}, got {self.negatives!r}"
            )
        for name in ("limits", "magnitudes", "template"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(
                    f"EarlyFeatures: {name} must be True or False, got {getattr(self, name)!r}"
                )

    def _all_names(self) -> list[str]:
        own = [f"early_{n}" for n in _GLOBAL]
        for b in self.bands:
            own += [f"early_{n}_{b}" for n in _PER_BAND]
        for blue, red in self._extra_pairs():
            own += [f"early_{n}_{blue}_{red}" for n in _COLOUR]
        sig = self._sigmoid()
        tmpl = self._template()
        return (
            own
            + (list(sig.names) if sig is not None else [])
            + (list(tmpl.names) if tmpl is not None else [])
        )

    def _kept(self, names: list[str]) -> list[bool]:
        if self.magnitudes:
            return [True] * len(names)
        drop = set(BRIGHTNESS_FEATURES) | {
            f"{n}_{b}" for n in BRIGHTNESS_SIGMOID for b in self.bands
        }
        return [n not in drop for n in names]

    @property
    def names(self) -> list[str]:
        self._check()
        names = self._all_names()
        return [n for n, k in zip(names, self._kept(names), strict=True) if k]

    def extract(self, mjd, band, flux, flux_err, detected, starts, ends, *, bands, survey):
        self._check()
        if len(self.bands) < 2:
            raise InputError(
                f"EarlyFeatures needs at least two bands for the colour, got bands={self.bands!r}"
            )
        mjd = np.asarray(mjd, np.float64)
        flux = np.asarray(flux, np.float64)
        detected = np.asarray(detected, np.bool_)
        starts = np.asarray(starts, np.int64)
        ends = np.asarray(ends, np.int64)
        frac_negative = None
        keep = None
        if self.negatives == "separate":
            negative = detected & ~(flux > 0)
            cum_det = np.concatenate([[0], np.cumsum(detected, dtype=np.int64)])
            cum_neg = np.concatenate([[0], np.cumsum(negative, dtype=np.int64)])
            n_all = cum_det[ends] - cum_det[starts]
            with np.errstate(invalid="ignore", divide="ignore"):
                frac_negative = np.where(
                    n_all > 0, (cum_neg[ends] - cum_neg[starts]) / np.maximum(n_all, 1), 0.0
                )
            keep = ~negative
        if not self.limits:
            keep = detected if keep is None else keep & detected
        if keep is not None:  # the same segments over the points kept
            cum = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
            starts, ends = cum[starts], cum[ends]
            mjd, band, flux, flux_err, detected = (
                np.asarray(a)[keep] for a in (mjd, band, flux, flux_err, detected)
            )
        codes = np.array([bands.index(b) if b in bands else -1 for b in self.bands], np.int64)
        xcodes = np.array(
            [[bands.index(b) if b in bands else -1 for b in p] for p in self._extra_pairs()],
            np.int64,
        ).reshape(-1, 2)
        X, n_det = _early_kernel(
            np.asarray(mjd, np.float64),
            np.asarray(band, np.int64),
            np.asarray(flux, np.float64),
            np.asarray(flux_err, np.float64),
            np.asarray(detected, np.bool_),
            np.asarray(starts, np.int64),
            np.asarray(ends, np.int64),
            codes,
            float(self.pair_days),
            xcodes,
        )
        ok = n_det > 0
        empty = "no positive detection" if self.negatives == "separate" else "no detection"
        reason = np.where(ok, "", empty).astype(object)
        if frac_negative is not None:
            X[:, _GLOBAL.index("frac_negative")] = frac_negative
        parts = [X]
        for extra in (self._sigmoid(), self._template()):
            if extra is not None:
                Xe, _ok_e, _reason_e = extra.extract(
                    mjd, band, flux, flux_err, detected, starts, ends, bands=bands, survey=survey
                )
                parts.append(Xe)
        X = np.hstack(parts) if len(parts) > 1 else X
        if not self.magnitudes:
            X = X[:, np.flatnonzero(self._kept(self._all_names()))]
        return X, ok, reason


@numba.njit(cache=True)
def _wslope(t, m, w, n):
    """Weighted least-squares slope of m(t); 0 when undefined."""
    if n < 2:
        return 0.0
    sw = 0.0
    st = 0.0
    sm = 0.0
    for i in range(n):
        sw += w[i]
        st += w[i] * t[i]
        sm += w[i] * m[i]
    if not sw > 0:
        return 0.0
    tb = st / sw
    mb = sm / sw
    num = 0.0
    den = 0.0
    for i in range(n):
        num += w[i] * (t[i] - tb) * (m[i] - mb)
        den += w[i] * (t[i] - tb) ** 2
    if den <= 1e-12:
        return 0.0
    return num / den


@numba.njit(cache=True)
def _colour(mjd, band, flux, det, a, e, c0, c1, pair_days, tb, mb, wb, row, col):
    """Colour c0 - c1 of positive detections paired within ``pair_days``: mean, latest, rate,
    count -> row[col:col+4]."""
    n_col = 0
    col_sum = 0.0
    col_last = 0.0
    t_col_last = -np.inf
    for i in range(a, e):
        if not (det[i] and flux[i] > 0 and band[i] == c0):
            continue
        best = -1
        bdt = pair_days
        for j in range(a, e):
            if det[j] and flux[j] > 0 and band[j] == c1:
                d = abs(mjd[j] - mjd[i])
                if d <= bdt:
                    bdt = d
                    best = j
        if best >= 0:
            c = -2.5 * np.log10(flux[i] / flux[best])
            tb[n_col] = 0.5 * (mjd[i] + mjd[best])
            mb[n_col] = c
            wb[n_col] = 1.0
            col_sum += c
            n_col += 1
            if tb[n_col - 1] >= t_col_last:
                t_col_last = tb[n_col - 1]
                col_last = c
    if n_col > 0:
        row[col] = col_sum / n_col
        row[col + 1] = col_last
        row[col + 2] = _wslope(tb, mb, wb, n_col)
    row[col + 3] = n_col


@numba.njit(cache=True)
def _early_kernel(mjd, band, flux, err, det, starts, ends, codes, pair_days, xcodes):
    n_seg = starts.shape[0]
    nb = codes.shape[0]
    n_extra = xcodes.shape[0]
    n_glob = 17
    k = n_glob + 4 * nb + 4 * n_extra
    X = np.zeros((n_seg, k))
    n_det_out = np.zeros(n_seg, np.int64)
    maxlen = 1
    for s in range(n_seg):
        if ends[s] - starts[s] > maxlen:
            maxlen = ends[s] - starts[s]
    tb = np.empty(maxlen)
    mb = np.empty(maxlen)
    wb = np.empty(maxlen)
    fb = np.empty(maxlen)
    eb = np.empty(maxlen)
    for s in range(n_seg):
        a = starts[s]
        e = ends[s]
        # ---- detections and the last non-detection before the first detection
        first = -1
        last = -1
        n_det = 0
        n_neg = 0
        for i in range(a, e):
            if det[i]:
                if first < 0:
                    first = i
                last = i
                n_det += 1
                if flux[i] <= 0:
                    n_neg += 1
        n_det_out[s] = n_det
        row = X[s]
        row[0] = n_det
        if n_det == 0:
            row[3] = -1.0
            row[6] = 0.0
            continue
        row[1] = n_neg / n_det
        row[2] = mjd[last] - mjd[first]
        nd = -1
        for i in range(a, first):
            if not det[i]:
                nd = i
        if nd >= 0:
            row[3] = mjd[first] - mjd[nd]
            row[4] = 1.0
            if np.isfinite(err[nd]) and err[nd] > 0 and flux[first] > 0:
                lim = ZP - 2.5 * np.log10(5.0 * err[nd])
                row[5] = lim - (ZP - 2.5 * np.log10(flux[first]))
                row[6] = 1.0
        else:
            row[3] = -1.0
        # ---- magnitudes of positive detections
        mag_first = np.nan
        mag_last = np.nan
        mag_peak = np.inf
        t_peak = 0.0
        t_last = mjd[last]
        for i in range(a, e):
            if det[i] and flux[i] > 0:
                m = ZP - 2.5 * np.log10(flux[i])
                if np.isnan(mag_first):
                    mag_first = m
                mag_last = m
                if m < mag_peak:
                    mag_peak = m
                    t_peak = mjd[i]
        if np.isnan(mag_first):
            mag_first = 0.0
            mag_last = 0.0
            mag_peak = 0.0
            t_peak = t_last
        row[7] = mag_first
        row[8] = mag_peak
        row[9] = mag_last
        row[10] = t_last - t_peak
        # ---- colour bands[0] - bands[1] at matched times (and the extra colours, after the
        # per-band block)
        _colour(mjd, band, flux, det, a, e, codes[0], codes[1], pair_days, tb, mb, wb, row, 11)
        for xi in range(n_extra):
            _colour(
                mjd,
                band,
                flux,
                det,
                a,
                e,
                xcodes[xi, 0],
                xcodes[xi, 1],
                pair_days,
                tb,
                mb,
                wb,
                row,
                n_glob + 4 * nb + 4 * xi,
            )
        # ---- non-constancy and brightening significance over all detections
        sw = 0.0
        sf = 0.0
        for i in range(a, e):
            if det[i]:
                w = 1.0 / (err[i] * err[i])
                sw += w
                sf += w * flux[i]
        mu = sf / sw
        chi2 = 0.0
        for i in range(a, e):
            if det[i]:
                chi2 += ((flux[i] - mu) / err[i]) ** 2
        row[15] = np.log10(1.0 + chi2 / max(n_det - 1, 1))
        best_sig = 0.0
        # ---- per band
        for bi in range(nb):
            n = 0
            for i in range(a, e):
                if det[i] and flux[i] > 0 and band[i] == codes[bi]:
                    tb[n] = mjd[i]
                    fb[n] = flux[i]
                    eb[n] = err[i]
                    mb[n] = ZP - 2.5 * np.log10(flux[i])
                    sm = 1.0857362 * err[i] / flux[i]
                    wb[n] = 1.0 / (sm * sm + 1e-4)
                    n += 1
            base = n_glob + 4 * bi
            row[base] = n
            if n == 0:
                continue
            row[base + 1] = _wslope(tb, mb, wb, n)
            if n >= 2 and tb[n - 1] - tb[n - 2] > 0.1:
                row[base + 2] = (mb[n - 1] - mb[n - 2]) / (tb[n - 1] - tb[n - 2])
            mmin = mb[0]
            for i in range(n):
                if mb[i] < mmin:
                    mmin = mb[i]
            row[base + 3] = mb[n - 1] - mmin
            if n >= 2:
                sig = (fb[n - 1] - fb[0]) / np.sqrt(eb[n - 1] ** 2 + eb[0] ** 2)
                if abs(sig) > abs(best_sig):
                    best_sig = sig
        row[16] = best_sig
    return X, n_det_out


register_extractor("early", EarlyFeatures)
