"""What the real stream does to a light curve, as seeded transformations of a :class:`LightCurves`.

Why: labelled light curves come from one curated source (Fink's alert histories, with their upper
limits and full histories), while the stream delivers detections-only histories, ZTF's 30-day
``prv_candidates`` window, one band, a thinner cadence, fainter or brighter objects, other error
scales and negative differences. A model trained on the curated source alone learns its shortcuts
(the upper limits were one) and breaks elsewhere. The same transformations serve two purposes:

* **training augmentation** (:func:`augment`): several perturbed copies of each labelled light
  curve, replayed alert by alert, so the model sees every kind of alert the stream delivers;
* **stress tests** (``earlyia evaluate-early --stress``): one perturbation at a time on held-out
  objects, to measure what each costs.

Every transformation is a plain function ``f(lc, rng, **params) -> LightCurves`` acting on whole
objects (the same draw for every alert of an object, as a stream would deliver it), registered by
name in :data:`PERTURBATIONS`. Alerts are rebuilt afterwards by :func:`replay_segments`, which also
applies the alert-history window. Photometry follows the table's conventions: FLUXCAL fluxes, a
non-detection is a NaN flux with its 1-sigma noise as ``flux_err`` (NaN when unknown).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from earlyia.errors import ConfigError
from earlyia.io.table import LightCurves, _segment_rows
from earlyia.registry import Registry

#: Signal-to-noise ratio above which a ZTF difference image yields a detection (an alert).
DETECTION_SNR = 5.0
#: Nights split at this fraction of a day after 0h UTC (daytime in California and Chile).
NIGHT_SHIFT = 0.3
#: ZTF's alert packets carry this many days of history (``prv_candidates``).
ZTF_HISTORY_DAYS = 30.0


def _rng(random_state) -> np.random.Generator:
    return (
        random_state
        if isinstance(random_state, np.random.Generator)
        else np.random.default_rng(random_state)
    )


def _per_point(lc: LightCurves, values: np.ndarray) -> np.ndarray:
    """An object-level array broadcast to every photometry point."""
    return np.repeat(np.asarray(values), np.diff(lc.offsets))


def _with_photometry(
    lc: LightCurves, keep: np.ndarray | None = None, **arrays: np.ndarray
) -> LightCurves:
    """``lc`` with some photometry arrays replaced (full length) and then only the points in
    ``keep``."""
    out = LightCurves(
        **{
            **lc.__dict__,
            **arrays,
            "alerts": lc.alerts.iloc[0:0].copy(),
            "problems": list(lc.problems),
        }
    )
    if keep is None:
        return out
    return out._filter_points(np.asarray(keep, bool))


# ---------------------------------------------------------------------------- perturbations
def drop_limits(lc: LightCurves, rng: np.random.Generator) -> LightCurves:
    """Detections only: every upper limit removed (as detections-only sources deliver light
    curves)."""
    return _with_photometry(lc, keep=lc.detected.copy())


def single_band(lc: LightCurves, rng: np.random.Generator, band: str | None = None) -> LightCurves:
    """One band per object: ``band``, or one of the object's detected bands drawn at random."""
    obj = lc.object_of_point()
    if band is not None:
        code = lc.band_code(band)
        if code < 0:
            raise ConfigError(f"single_band: band {band!r} is not one of {list(lc.bands)}")
        return _with_photometry(lc, keep=lc.band == code)
    chosen = np.full(lc.n_objects, -1, np.int64)
    for i in range(lc.n_objects):
        s, e = lc.offsets[i], lc.offsets[i + 1]
        present = np.unique(lc.band[s:e][lc.detected[s:e]])
        if len(present) == 0:
            present = np.unique(lc.band[s:e])
        if len(present):
            chosen[i] = int(rng.choice(present))
    return _with_photometry(lc, keep=lc.band == chosen[obj])


def thin_cadence(lc: LightCurves, rng: np.random.Generator, keep_every: int = 2) -> LightCurves:
    """Every ``keep_every``-th night of each object (cadence divided by ``keep_every``), from a
    random first night."""
    if keep_every < 1:
        raise ConfigError(f"thin_cadence: keep_every must be >= 1, got {keep_every}")
    obj = lc.object_of_point()
    night = np.floor(lc.mjd + NIGHT_SHIFT).astype(np.int64)
    first = np.zeros(lc.n_objects, np.int64)
    nonempty = np.diff(lc.offsets) > 0
    first[nonempty] = night[lc.offsets[:-1][nonempty]]
    phase = rng.integers(0, keep_every, lc.n_objects)
    # rank of each point's night among the object's distinct nights
    new_night = np.ones(len(night), bool)
    new_night[1:] = (night[1:] != night[:-1]) | (obj[1:] != obj[:-1])
    rank = np.cumsum(new_night) - 1
    base = np.zeros(lc.n_objects, np.int64)
    base[nonempty] = rank[lc.offsets[:-1][nonempty]]
    rank = rank - base[obj]
    return _with_photometry(lc, keep=(rank + phase[obj]) % keep_every == 0)


def shift_magnitude(
    lc: LightCurves, rng: np.random.Generator, delta: float | Sequence[float] = (-1.0, 1.0)
) -> LightCurves:
    """The same object ``delta`` magnitudes fainter (> 0) or brighter (< 0), seen with the same sky
    noise.

    ``delta``: one value, or ``(low, high)`` to draw one per object uniformly. Fainter: the flux is
    scaled and noise added so the total matches the quoted (sky-dominated) error; points below
    :data:`DETECTION_SNR` become non-detections with their measured noise as the limit. Brighter:
    the flux and its error scale together (the noise cannot be removed). Limits are unchanged (same
    sky). Points that were detected above :data:`DETECTION_SNR` and fall below it become
    non-detections.
    """
    lo, hi = (
        (float(delta), float(delta)) if np.isscalar(delta) else (float(delta[0]), float(delta[1]))
    )
    d = rng.uniform(lo, hi, lc.n_objects) if hi > lo else np.full(lc.n_objects, lo)
    scale = _per_point(lc, 10.0 ** (-0.4 * d))
    det = lc.detected.copy()
    flux = lc.flux.copy()
    err = lc.flux_err.copy()
    f = det & np.isfinite(flux)
    fainter = f & (scale < 1)
    brighter = f & (scale >= 1)
    extra = np.sqrt(np.clip(1.0 - scale[fainter] ** 2, 0.0, None)) * err[fainter]
    flux[fainter] = flux[fainter] * scale[fainter] + extra * rng.standard_normal(int(fainter.sum()))
    flux[brighter] = flux[brighter] * scale[brighter]
    err[brighter] = err[brighter] * scale[brighter]
    lost = fainter & _crossed_below(lc.flux, lc.flux_err, flux, err)
    det[lost] = False
    flux[lost] = np.nan
    return _with_photometry(lc, flux=flux, flux_err=err, detected=det)


def _crossed_below(flux0, err0, flux1, err1) -> np.ndarray:
    """Points whose signal to noise fell below :data:`DETECTION_SNR` (points already below it
    stay as the pipeline delivered them)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.abs(flux0) >= DETECTION_SNR * err0) & (np.abs(flux1) < DETECTION_SNR * err1)


def resample_noise(
    lc: LightCurves,
    rng: np.random.Generator,
    extra: float | Sequence[float] = (0.0, 0.7),
    error_scale: float | Sequence[float] = (0.7, 1.5),
) -> LightCurves:
    """Another photometry pipeline: more scatter and another error scale.

    Per object, detections get Gaussian noise of ``extra`` times their error added, and the quoted
    errors (of detections and limits) are multiplied by ``error_scale`` (each a value or a range
    drawn per object). Detections that fall from above :data:`DETECTION_SNR` to below it become
    non-detections.
    """

    def draw(v):
        lo, hi = (float(v), float(v)) if np.isscalar(v) else (float(v[0]), float(v[1]))
        return rng.uniform(lo, hi, lc.n_objects) if hi > lo else np.full(lc.n_objects, lo)

    a, s = _per_point(lc, draw(extra)), _per_point(lc, draw(error_scale))
    det = lc.detected.copy()
    flux = lc.flux.copy()
    f = det & np.isfinite(flux)
    flux[f] = flux[f] + a[f] * lc.flux_err[f] * rng.standard_normal(int(f.sum()))
    err = lc.flux_err * s
    lost = f & _crossed_below(lc.flux, lc.flux_err, flux, err)
    det[lost] = False
    flux[lost] = np.nan
    return _with_photometry(lc, flux=flux, flux_err=err, detected=det)


def negative_difference(
    lc: LightCurves, rng: np.random.Generator, fraction: float = 1.0
) -> LightCurves:
    """A negative-difference detection added to ``fraction`` of the objects (a subtraction
    residual).

    It sits on one of the object's epochs (a random point), in the same band, with the absolute flux
    of a random detection of the object and its error: the kind of point real histories carry
    (``isdiffpos = 'f'``) and Fink turns into a positive flux.
    """
    obj_pts = np.diff(lc.offsets)
    chosen = rng.random(lc.n_objects) < fraction
    rows = []
    for i in np.flatnonzero(chosen & (obj_pts > 0)):
        s, e = lc.offsets[i], lc.offsets[i + 1]
        dets = np.flatnonzero(lc.detected[s:e] & np.isfinite(lc.flux[s:e])) + s
        if len(dets) == 0:
            continue
        at = int(rng.integers(s, e))
        src = int(rng.choice(dets))
        rows.append((i, lc.mjd[at] - 0.01, lc.band[at], -abs(lc.flux[src]), lc.flux_err[src]))
    if not rows:
        return _with_photometry(lc)
    add = np.array([r[0] for r in rows], np.int64)
    mjd = np.array([r[1] for r in rows])
    band = np.array([r[2] for r in rows], np.int8)
    flux = np.array([r[3] for r in rows])
    err = np.array([r[4] for r in rows])
    return _insert_points(lc, add, mjd, band, flux, err, np.ones(len(rows), bool))


def flip_sign(lc: LightCurves, rng: np.random.Generator) -> LightCurves:
    """Every detection a negative difference (the source faded below its reference: never a young
    supernova)."""
    flux = lc.flux.copy()
    f = lc.detected & np.isfinite(flux)
    flux[f] = -np.abs(flux[f])
    return _with_photometry(lc, flux=flux)


def _insert_points(lc, obj, mjd, band, flux, err, det) -> LightCurves:
    """``lc`` with extra points (object indices ``obj``), each object's points re-sorted by time."""
    o_all = np.concatenate([lc.object_of_point(), obj])
    t_all = np.concatenate([lc.mjd, mjd])
    order = np.lexsort((t_all, o_all))
    counts = np.bincount(o_all, minlength=lc.n_objects)
    offsets = np.zeros(lc.n_objects + 1, np.int64)
    offsets[1:] = np.cumsum(counts)
    return LightCurves(
        **{
            **lc.__dict__,
            "offsets": offsets,
            "mjd": t_all[order],
            "band": np.concatenate([lc.band, band]).astype(np.int8)[order],
            "flux": np.concatenate([lc.flux, flux])[order],
            "flux_err": np.concatenate([lc.flux_err, err])[order],
            "detected": np.concatenate([lc.detected, det])[order],
            "alert_id": np.concatenate([lc.alert_id, np.full(len(obj), -1, np.int64)])[order],
            "alerts": lc.alerts.iloc[0:0].copy(),
            "problems": list(lc.problems),
        }
    )


#: Perturbations by name: ``f(lc, rng, **params) -> LightCurves``.
PERTURBATIONS: Registry[Callable[..., LightCurves]] = Registry("perturbation")
for _f in (
    drop_limits,
    single_band,
    thin_cadence,
    shift_magnitude,
    resample_noise,
    negative_difference,
    flip_sign,
):
    PERTURBATIONS.register(_f.__name__, _f)
del _f


def perturb(
    lc: LightCurves, steps: Sequence[tuple[str, Mapping[str, Any]]], random_state=None
) -> LightCurves:
    """Apply the named perturbations in order (``[(name, params), ...]``), with one seeded
    generator."""
    rng = _rng(random_state)
    for name, params in steps:
        lc = PERTURBATIONS.get(name)(lc, rng, **dict(params))
    return lc


# ---------------------------------------------------------------------------- alerts of perturbed
# curves
@dataclass
class Segments:
    """Alert views of a light-curve table: segment ``i`` is ``starts[i]:ends[i]`` of the
    photometry, the history alert ``i`` carries, with its object and number of detections so far
    (``ndethist``)."""

    lc: LightCurves
    starts: np.ndarray
    ends: np.ndarray
    object_index: np.ndarray
    ndethist: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def replay_segments(
    lc: LightCurves,
    min_detections: int = 1,
    max_detections: int = 20,
    window_days: float | None = None,
) -> Segments:
    """One alert per detection ``k`` (``min_detections <= k <= max_detections``) of each object,
    seeing the history up to that detection; with ``window_days``, only the last ``window_days`` of
    it (ZTF's ``prv_candidates`` window), while ``ndethist`` keeps counting every detection since
    the first.
    """
    obj = lc.object_of_point()
    cum = np.cumsum(lc.detected, dtype=np.int64)
    base = np.concatenate([[0], cum])[lc.offsets[:-1]]
    k = cum - base[obj]
    sel = np.flatnonzero(lc.detected & (k >= min_detections) & (k <= max_detections))
    ends = sel + 1
    # a point at the very same time in another band belongs to the same alert history
    while True:
        nxt = ends < lc.offsets[obj[sel] + 1]
        same = np.zeros(len(ends), bool)
        same[nxt] = lc.mjd[ends[nxt]] <= lc.mjd[sel[nxt]] + 1e-5
        if not same.any():
            break
        ends = ends + same
    starts = lc.offsets[obj[sel]].astype(np.int64)
    if window_days is not None:
        t0 = lc.mjd[sel] - float(window_days)
        starts = np.array(
            [
                s + np.searchsorted(lc.mjd[s:e], t, side="left")
                for s, e, t in zip(starts, ends, t0, strict=True)
            ],
            np.int64,
        )
    return Segments(
        lc, starts, ends.astype(np.int64), obj[sel].astype(np.int64), k[sel].astype(np.int64)
    )


def mix_objects(a: LightCurves, b: LightCurves, use_b: np.ndarray) -> LightCurves:
    """Object ``i`` from ``b`` where ``use_b[i]``, else from ``a`` (same objects in the same
    order)."""
    use_b = np.asarray(use_b, bool)
    if a.n_objects != b.n_objects or len(use_b) != a.n_objects:
        raise ConfigError(
            "mix_objects needs two tables of the same objects and one flag per object"
        )
    if not use_b.any():
        return a
    if use_b.all():
        return b
    la, lb = np.diff(a.offsets), np.diff(b.offsets)
    lengths = np.where(use_b, lb, la)
    offsets = np.zeros(a.n_objects + 1, np.int64)
    offsets[1:] = np.cumsum(lengths)
    ra = _segment_rows(a.offsets[:-1][~use_b], a.offsets[1:][~use_b])
    rb = _segment_rows(b.offsets[:-1][use_b], b.offsets[1:][use_b])
    # destination rows of each source row, objects kept in order
    da = _segment_rows(offsets[:-1][~use_b], offsets[1:][~use_b])
    db = _segment_rows(offsets[:-1][use_b], offsets[1:][use_b])
    out = {}
    for name, dtype in (
        ("mjd", np.float64),
        ("band", np.int8),
        ("flux", np.float64),
        ("flux_err", np.float64),
        ("detected", bool),
        ("alert_id", np.int64),
    ):
        arr = np.empty(int(offsets[-1]), dtype)
        arr[da] = getattr(a, name)[ra]
        arr[db] = getattr(b, name)[rb]
        out[name] = arr
    return LightCurves(
        **{
            **a.__dict__,
            **out,
            "offsets": offsets,
            "alerts": a.alerts.iloc[0:0].copy(),
            "problems": list(a.problems),
        }
    )


@dataclass(frozen=True)
class Step:
    """One perturbation of an augmentation: applied to each object with ``probability``."""

    name: str
    probability: float
    params: Mapping[str, Any] = field(default_factory=dict)


#: What the stream does to ZTF light curves, and how often a training copy sees it (see
#: :class:`Augmentation`).
ZTF_STEPS = (
    Step("drop_limits", 0.5),
    Step("single_band", 0.15),
    Step("thin_cadence", 0.25, {"keep_every": 2}),
    Step("shift_magnitude", 0.7, {"delta": (-1.0, 1.0)}),
    Step("resample_noise", 0.5, {"extra": (0.0, 0.7), "error_scale": (0.7, 1.5)}),
    Step("negative_difference", 0.1),
)


@dataclass(frozen=True)
class Augmentation:
    """Perturbed copies of labelled light curves, replayed alert by alert.

    View 0 is the light curves as given; each of the ``copies`` further views applies every step to
    each object with the step's probability (in the order given), then replays detections
    ``min_detections`` to ``max_detections``, each alert seeing only the last ``window_days`` of
    history with probability ``window_probability`` per object (ZTF's ``prv_candidates`` window).
    """

    copies: int = 2
    steps: tuple[Step, ...] = ZTF_STEPS
    window_days: float | None = ZTF_HISTORY_DAYS
    window_probability: float = 0.5
    min_detections: int = 1
    max_detections: int = 20

    def check(self) -> None:
        if int(self.copies) < 0:
            raise ConfigError(f"augmentation copies must be >= 0, got {self.copies}")
        if not 1 <= int(self.min_detections) <= int(self.max_detections):
            raise ConfigError(
                "augmentation needs 1 <= min_detections <= max_detections, got "
                f"{self.min_detections}, {self.max_detections}"
            )
        for st in self.steps:
            PERTURBATIONS.get(st.name)  # ConfigError naming the known perturbations
            if not 0.0 <= float(st.probability) <= 1.0:
                raise ConfigError(
                    f"perturbation {st.name!r}: probability must be in [0, 1], got {st.probability}"
                )
        if not 0.0 <= float(self.window_probability) <= 1.0:
            raise ConfigError(
                f"window_probability must be in [0, 1], got {self.window_probability}"
            )

    def to_card(self) -> dict[str, Any]:
        return {
            "copies": int(self.copies),
            "steps": [
                {"name": s.name, "probability": float(s.probability), "params": _plain(s.params)}
                for s in self.steps
            ],
            "window_days": None if self.window_days is None else float(self.window_days),
            "window_probability": float(self.window_probability),
            "min_detections": int(self.min_detections),
            "max_detections": int(self.max_detections),
        }

    @classmethod
    def from_card(cls, entry: Mapping[str, Any]) -> Augmentation:
        try:
            steps = tuple(
                Step(str(s["name"]), float(s["probability"]), dict(s.get("params") or {}))
                for s in entry.get("steps", [])
            )
            aug = cls(
                copies=int(entry.get("copies", 0)),
                steps=steps,
                window_days=None
                if entry.get("window_days") is None
                else float(entry["window_days"]),
                window_probability=float(entry.get("window_probability", 0.0)),
                min_detections=int(entry.get("min_detections", 1)),
                max_detections=int(entry.get("max_detections", 20)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed augmentation entry {entry!r} ({exc})") from exc
        aug.check()
        return aug

    def views(self, lc: LightCurves, random_state=None):
        """``(view, Segments)`` for view 0 (as given) and every augmented copy, from one seeded
        generator."""
        self.check()
        rng = _rng(random_state)
        yield 0, replay_segments(lc, self.min_detections, self.max_detections)
        for v in range(1, int(self.copies) + 1):
            cur = lc
            for st in self.steps:
                chosen = rng.random(lc.n_objects) < float(st.probability)
                if not chosen.any():
                    continue
                cur = mix_objects(
                    cur, PERTURBATIONS.get(st.name)(cur, rng, **dict(st.params)), chosen
                )
            seg = replay_segments(cur, self.min_detections, self.max_detections)
            if self.window_days is not None and self.window_probability > 0:
                windowed = rng.random(cur.n_objects) < float(self.window_probability)
                win = replay_segments(
                    cur, self.min_detections, self.max_detections, window_days=self.window_days
                )
                use = windowed[seg.object_index]
                seg = Segments(
                    cur,
                    np.where(use, win.starts, seg.starts),
                    seg.ends,
                    seg.object_index,
                    seg.ndethist,
                )
            yield v, seg


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(params).items()}
